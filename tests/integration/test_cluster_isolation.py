"""A node cut off from Kafka while clients still reach it: it serves no stale read, and a
write stuck in its producer never lands over a newer acknowledged one (issue: partitions
and zombies).

Node A reaches Kafka only through a tools/netcut.py proxy (a broker listener advertised
at the proxy's port, kafka.sh KAFKA_PROXY_SLOTS); node B directly. The proxy is
blackholed: bytes stop both ways, nothing is reset, and what A had sent is delivered
after the heal. A PUT sent to A just after the cut is the zombie: A produces it, the
proxy holds it. B takes A's partitions over after the session timeout and acknowledges
newer versions of A's keys; A keeps being asked for them the whole time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.support.kafka_modes import SlotBroker, slot_broker
from tests.support.owners import PARTITIONS, assert_serves, create_all, keys_of
from tools import topic as load
from tools.netcut import open_netcut
from tools.procs import Node, wait_ready, wait_stable

# One worker runs this module: its broker (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_cluster_isolation")

SESSION = 6.0  # tools/procs.Node's session timeout


@pytest.fixture(scope="module")
def broker() -> Iterator[SlotBroker]:
    with slot_broker("isolation", slots=1) as b:
        yield b


async def test_isolated_owner_serves_no_stale_read_and_its_zombie_write_is_fenced(
        broker: SlotBroker, names, artifacts, client) -> None:
    advertised, internal = broker.slots[1]
    async with open_netcut([(advertised, internal)]) as cut:
        a = Node(bootstrap=f"127.0.0.1:{advertised}", topic=names["topic"],
                 group=names["group"], log_dir=artifacts).start()
        b = Node(bootstrap=broker.bootstrap, topic=names["topic"], group=names["group"],
                 log_dir=artifacts).start()
        try:
            await run(cut, a, b, client, broker.bootstrap)
        finally:
            a.stop_now()
            b.stop_now()


async def run(cut, a: Node, b: Node, client: httpx.AsyncClient, bootstrap: str) -> None:
    await wait_ready(client, a, timeout=60)
    await wait_ready(client, b, timeout=60)
    table = await wait_stable(client, [a, b], PARTITIONS)
    keys = keys_of(a.url, table, 7)
    keys, never_written = keys[:6], keys[6]
    zombie_key = keys[0]
    etags: dict[str, str] = {}  # key -> ETag of its last acknowledged version
    acked = await create_all(client, a, keys, "v1")  # key -> (value, when acknowledged)

    cut.blackhole()
    cut_at = time.monotonic()
    zombie: list[httpx.Response | BaseException] = []
    stale: list[tuple[str, float]] = []
    served_by_a: list[float] = []
    refused_by_a: dict[str, int] = {}

    async def zombie_put() -> None:
        try:
            zombie.append(await client.put(f"{a.base}/users/{zombie_key}",
                                           json={"name": "zombie"}, timeout=60))
        except httpx.HTTPError as exc:
            zombie.append(exc)

    async def read_a_until(deadline: float) -> None:
        while time.monotonic() < deadline:
            for k in keys:
                asked = time.monotonic()
                try:
                    r = await client.get(f"{a.base}/users/{k}", timeout=5)
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    served_by_a.append(asked - cut_at)
                    value, when = acked[k]
                    if when < asked and r.content != value:
                        stale.append((k, asked - cut_at))  # older than an ack before it
                else:
                    assert r.status_code == 503, r.text
                    code = r.json()["error"]
                    refused_by_a[code] = refused_by_a.get(code, 0) + 1
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(zombie_put)
        nursery.start_soon(read_a_until, cut_at + SESSION * 2 + 15)
        # B takes A's partitions over after the session timeout, then writes newer
        # versions of A's keys (each acknowledged), while A keeps being read.
        with trio.fail_after(SESSION * 2 + 10):
            while True:
                r = await client.get(f"{b.base}/groupinfo")
                if set(r.json().values()) == {b.url}:
                    break
                await trio.sleep(0.2)
        for version in ("v2", "v3"):
            for k in keys:
                with trio.fail_after(20):
                    while True:
                        r = await client.put(f"{b.base}/users/{k}", json={"name": version})
                        if r.status_code in (200, 201):
                            acked[k] = (r.content, time.monotonic())
                            etags[k] = r.headers["etag"]
                            break
                        assert r.status_code == 503, r.text
                        await trio.sleep(0.2)
    assert not stale, f"stale reads from the isolated node: {stale[:5]}"
    assert refused_by_a.get("owner_isolated", 0) > 0, refused_by_a
    # it stopped answering from memory within the session timeout of the cut
    assert max(served_by_a, default=0.0) < SESSION, max(served_by_a)
    # still cut off, it decides no write from its old state: an If-Match naming the
    # version B acknowledged is no 412 there, a delete of a key it never saw no 204
    for k in keys:
        r = await client.put(f"{a.base}/users/{k}", json={"name": "cond"},
                             headers={"If-Match": etags[k]}, timeout=30)
        # (the zombie's key is still locked by its unsettled write: refused unapplied)
        code = "key_busy" if k == zombie_key else "owner_isolated"
        assert r.status_code == 503, r.text
        assert r.json()["error"] == code, r.text
    r = await client.delete(f"{a.base}/users/{never_written}", timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "owner_isolated", r.text

    cut.heal()
    healed_at = time.monotonic()
    # after the heal A rejoins; the held write is delivered: it must be fenced
    await wait_ready(client, a, timeout=60)
    await wait_stable(client, [a, b], PARTITIONS, timeout=60)
    assert zombie, "the zombie PUT got no answer at all"
    answer = zombie[0]
    if isinstance(answer, httpx.Response):
        assert answer.status_code == 503, answer.text  # never acknowledged
    await assert_serves(client, (a, b), {k: acked[k][0] for k in keys})
    # The zombie really reached Kafka: the proxy held the bytes A had sent and delivered
    # them at the heal, after B's marker and B's acknowledged versions. So the served
    # values above are the fence at work (not a write that never landed), and a node
    # that applied that record counted it as fenced.
    zombie_value = load.user_bytes(zombie_key, "zombie")
    records = await load.read_all(bootstrap, a.topic, within=60)
    landed = [(p, rec.offset) for p, recs in records.items() for rec in recs
              if rec.key == zombie_key.encode() and rec.value == zombie_value]
    assert landed, "the zombie write never reached Kafka: this test proves no fencing"
    with trio.fail_after(20):
        while True:
            fenced = 0
            for node in (a, b):
                doc = (await client.get(f"{node.base}/readyz")).json()
                fenced += sum(p["fenced"] for p in doc["partitions"].values())
            if fenced >= len(landed):
                break
            await trio.sleep(0.2)
    print(f"isolation: last read answered by the cut node {max(served_by_a, default=0):.2f}s "
          f"after the cut; refusals {refused_by_a}; zombie answer "
          f"{getattr(answer, 'status_code', answer)!r}; zombie records in the topic "
          f"{landed}; fenced records seen {fenced}; "
          f"heal->stable {time.monotonic() - healed_at:.1f}s")
