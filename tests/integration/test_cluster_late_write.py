"""A write decided under the owner's read lease whose record lands only after the group
gave its partition to another node: acknowledged, it would promise a read-your-write
that the new owner, caught up to a target read before the record landed, breaks.

Owner A takes a PUT while its producer process is frozen (the record waits there), then
A freezes too, past its session timeout. B gets A's partitions and serves them; B's
producer process is frozen just before, so B's claim marker waits and A's record, let go
now, lands before it: it applies everywhere. B is frozen for a moment (within its own
lease) while A wakes up and answers the PUT; a read sent to B then is answered as B
wakes, before its next fetch (Kafka holds a fetch up to 20 ms for more bytes) brings the
record. So an acknowledged PUT would be followed by a read of the old value.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import trio

from tests.support.owners import PARTITIONS, create_all, keys_of
from tools.procs import Node, wait_ready, wait_stable

SESSION = 6.0  # tools/procs.Node's session timeout
# A's writes wait this long for Kafka: longer than A is frozen, so the PUT is answered
# from what became of its record, not by the write deadline.
A_WRITE_TIMEOUT = "40"


def producer_of(node: Node) -> int:
    """The pid of ``node``'s producer process (kstate.bridge.producer_process)."""
    for pid in node.children():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"producer_process" in cmdline:
            return pid
    raise AssertionError(f"no producer process under {node.url}: {node.children()}")


def freeze(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def thaw(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:  # replaced meanwhile (its node kills a frozen one)
        pass


async def producing(client: httpx.AsyncClient, node: Node) -> bool:
    """Whether ``node``'s writer has a write in flight (past its checks, producing)."""
    try:
        doc = (await client.get(f"{node.base}/readyz", timeout=1)).json()
    except (httpx.HTTPError, ValueError):
        return False
    return bool(doc["writer"]["inflight"])


async def serving(client: httpx.AsyncClient, node: Node, partitions: set[int]) -> bool:
    try:
        parts = (await client.get(f"{node.base}/readyz", timeout=1)).json()["partitions"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return all(parts.get(str(p), {}).get("caught_up") for p in partitions)


async def test_a_write_applied_after_the_lease_ran_out_is_not_acknowledged(
        make_node, client, names) -> None:
    a = make_node(KSTATE_WRITE_TIMEOUT=A_WRITE_TIMEOUT)
    await wait_ready(client, a)  # A creates the topic
    b = make_node()
    table = await wait_stable(client, [a, b], PARTITIONS)
    theirs = {int(k.rsplit("-", 1)[1]) for k, url in table.items() if url == a.url}
    key = keys_of(a.url, table, 1, prefix="late")[0]
    v1 = (await create_all(client, a, [key], "v1"))[key][0]

    frozen: list[int] = []
    put: list[httpx.Response | BaseException] = []
    got: list[httpx.Response] = []

    async def late_put() -> None:
        try:
            put.append(await client.put(f"{a.base}/users/{key}", json={"name": "v2"},
                                        timeout=60))
        except httpx.HTTPError as exc:
            put.append(exc)

    async def read_b() -> None:
        got.append(await client.get(f"{b.base}/users/{key}", timeout=10))

    async def until(done: list, seconds: float) -> None:
        with trio.fail_after(seconds):
            while not done:
                await trio.sleep(0.01)

    try:
        async with trio.open_nursery() as nursery:
            a_producer = producer_of(a)
            freeze(a_producer)
            frozen.append(a_producer)
            nursery.start_soon(late_put)
            with trio.fail_after(10):  # A checked its lease, decided, and is producing
                while not await producing(client, a):
                    await trio.sleep(0.02)
            await trio.sleep(0.2)  # the record is handed to the (frozen) producer process
            a.signal(signal.SIGSTOP)
            # B's producer freezes shortly before the group gives up on A (B's node
            # would replace a producer that answers no ping for 5 s).
            await trio.sleep(SESSION - 2.0)
            b_producer = producer_of(b)
            freeze(b_producer)
            frozen.append(b_producer)
            with trio.fail_after(SESSION + 10):
                while not await serving(client, b, theirs):
                    await trio.sleep(0.05)
            # B serves A's partitions, its marker unwritten. Freeze B (briefly: its
            # lease holds), let A's record land, wake A: it answers the PUT.
            b.signal(signal.SIGSTOP)
            thaw(a_producer)
            frozen.remove(a_producer)
            await trio.sleep(0.3)  # the record lands; the producer answers A
            a.signal(signal.SIGCONT)
            await until(put, 10)
            nursery.start_soon(read_b)
            await trio.sleep(0.1)  # the read waits in B's socket
            b.signal(signal.SIGCONT)
            await until(got, 10)
    finally:
        for pid in frozen:
            thaw(pid)
        a.signal(signal.SIGCONT)
        b.signal(signal.SIGCONT)

    answer = put[0]
    read = got[0]
    # 503 only if B's own lease ran out while it was frozen (then it answers fenced)
    assert read.status_code in (200, 503), read.text
    if isinstance(answer, httpx.Response) and answer.status_code in (200, 201):
        # acknowledged: every read after it sees it
        assert read.status_code != 200 or read.content != v1, (
            "acknowledged, then read back old", answer.text, read.content)
    else:
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "write_unconfirmed", answer.text
    # Nothing is lost either way: the record landed before B's marker and applies.
    await wait_stable(client, [a, b], PARTITIONS, timeout=60)
    for node in (a, b):
        with trio.fail_after(20):
            while True:
                r = await client.get(f"{node.base}/users/{key}")
                if r.status_code == 200 and r.content != v1:
                    break
                assert r.status_code in (200, 503), r.text
                await trio.sleep(0.2)
        assert r.json()["name"] == "v2", r.text
