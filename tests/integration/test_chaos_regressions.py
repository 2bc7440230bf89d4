"""Faults the chaos harness (tests/chaos) found, pinned down one by one.

The nodes here run on a broker of this module's own, which the tests freeze (SIGSTOP)
to hold a write between "sent to Kafka" and "acknowledged by Kafka"."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.brokers import Broker, own_broker
from tools import topic as load
from tools.procs import Node, wait_ready

# One worker runs this module: its broker (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_chaos_regressions")

WRITE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with own_broker("it-chaos") as b:
        yield b


@pytest.fixture
def node(broker: Broker, artifacts: Path) -> Iterator[Node]:
    tag = uuid.uuid4().hex[:10]
    n = Node(bootstrap=broker.bootstrap, topic=f"t-{tag}", group=f"g-{tag}", log_dir=artifacts,
             extra={"KSTATE_WRITE_TIMEOUT": str(WRITE_TIMEOUT)})
    n.start()
    try:
        yield n
    finally:
        n.stop_now()


async def test_if_match_after_a_timed_out_write_sees_it(broker, node, client):
    """Chaos (cluster mode, broker kills, conditional writes) found a lost update in the
    topic: a write answered 503 write_timeout was still being produced; the writer had
    already let the key go, so the next ``If-Match: <old version>`` write was checked
    against a state without it, passed, and both landed: the second one over a version
    it never saw. The key must stay held until the first write's fate is known."""
    await wait_ready(client, node, timeout=60)
    url = f"{node.base}/users/cas@example.com"
    r = await client.put(url, json={"name": "v0"})
    assert r.status_code == 201, r.text
    v0 = r.headers["etag"]
    answers: dict[str, httpx.Response] = {}

    async def put(name: str) -> None:
        answers[name] = await client.put(url, json={"name": name}, headers={"If-Match": v0},
                                         timeout=30)

    broker.freeze(True)
    try:
        t0 = time.monotonic()
        await put("A")  # held by the frozen broker: "may or may not apply"
        assert answers["A"].status_code == 503, answers["A"].text
        assert answers["A"].headers["retry-after"]
        assert time.monotonic() - t0 < WRITE_TIMEOUT + 3
        async with trio.open_nursery() as nursery:
            nursery.start_soon(put, "B")  # same base version: only one of A, B may win
            await trio.sleep(0.5)
            broker.freeze(False)
    finally:
        broker.freeze(False)
    assert answers["B"].status_code in (412, 503), answers["B"].text

    with trio.fail_after(30):
        while True:
            r = await client.get(url)
            if r.status_code == 200:
                break
            await trio.sleep(0.2)
    records = await load.read_all(broker.bootstrap, node.topic, within=60)
    mine = [(rec.offset, rec.value) for recs in records.values() for rec in recs
            if rec.key == b"cas@example.com"]
    names = [load.user_bytes("cas@example.com", n) for n in ("v0", "A", "B")]
    assert mine[0][1] == names[0], mine
    # every record after v0 was written If-Match v0: there can be at most one
    assert len(mine) <= 2, f"two writes landed on the same base version: {mine}"
    if answers["B"].status_code == 412:
        assert [v for _, v in mine] == names[:2], mine  # A landed; B saw it
    assert r.content == mine[-1][1]
