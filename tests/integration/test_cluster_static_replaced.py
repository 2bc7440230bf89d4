"""A static member replaced while it is cut off from Kafka but reachable by clients.

A new process that joins with the same ``KSTATE_INSTANCE_ID`` replaces the old member at
once (KIP-345), usually without a rebalance, and gets its cached assignment; the old
process is never asked to revoke, and it keeps its read lease (kstate/bridge/lease.py)
until ~0.925 x the session timeout after its last answered heartbeat.

Node A (instance X) reaches Kafka through a tools/netcut.py proxy, B (instance Y)
directly. The proxy is blackholed and A2 (instance X, direct) is started.

- Same url (A listens on 127.0.0.2 and advertises 127.0.0.1:P; A2 listens on
  127.0.0.1:P, as a pod replaced under the same service name): the cached table is right,
  A2 takes over at once; A is read the whole time and must never answer a value older
  than one acknowledged (by A2) before the read began.
- New url (A2 on another port): the cached table names A's url for A2's partitions; the
  group must compute a fresh one, and writes through A2 and B must succeed. Once the
  cut heals, A learns it was replaced and stops (exit 2), and A2 keeps its place.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import trio

from tests.support.kafka_modes import SlotBroker, slot_broker
from tests.support.owners import PARTITIONS, assert_serves, create_all, keys_of
from tools.netcut import open_netcut
from tools.procs import Node, wait_ready, wait_stable

# One worker runs this module: its broker (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_cluster_static_replaced")

# A long session (12 s: the old incarnation's lease lasts 9 s or more after the cut) so that
# A2, a Python process starting on a loaded machine, joins while A's lease still holds.
SESSION = 12.0


@pytest.fixture(scope="module")
def broker() -> Iterator[SlotBroker]:
    with slot_broker("static", slots=1) as b:
        yield b


@dataclass
class BoundNode(Node):
    """A node that listens on ``host`` but advertises 127.0.0.1:<port> (its url)."""

    host: str = "127.0.0.1"

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Node:
        self.extra.update({"KSTATE_LISTEN": f"{self.host}:{self.port}",
                           "KSTATE_ADVERTISE": self.url})
        return super().start()


async def put_until_acked(client: httpx.AsyncClient, base: str, key: str, name: str,
                          timeout: float) -> httpx.Response:
    """PUT until 200/201; only 503 (retry) or no answer may come before."""
    with trio.fail_after(timeout):
        while True:
            try:
                r = await client.put(f"{base}/users/{key}", json={"name": name}, timeout=5)
            except httpx.TransportError:  # not listening yet, or no answer in time
                await trio.sleep(0.2)
                continue
            if r.status_code in (200, 201):
                return r
            assert r.status_code == 503, r.text
            await trio.sleep(0.2)


async def test_replaced_static_member_serves_no_stale_read(
        broker: SlotBroker, names, artifacts, client) -> None:
    advertised, internal = broker.slots[1]
    env = {"KSTATE_SESSION_TIMEOUT_MS": str(int(SESSION * 1000))}
    async with open_netcut([(advertised, internal)]) as cut:
        a = BoundNode(bootstrap=f"127.0.0.1:{advertised}", topic=names["topic"],
                      group=names["group"], log_dir=artifacts, host="127.0.0.2",
                      extra={**env, "KSTATE_INSTANCE_ID": "X"}).start()
        b = Node(bootstrap=broker.bootstrap, topic=names["topic"], group=names["group"],
                 log_dir=artifacts, extra={**env, "KSTATE_INSTANCE_ID": "Y"}).start()
        a2 = Node(bootstrap=broker.bootstrap, topic=names["topic"], group=names["group"],
                  log_dir=artifacts, port=a.port, extra={**env, "KSTATE_INSTANCE_ID": "X"})
        try:
            await wait_ready(client, a, timeout=60)
            await wait_ready(client, b, timeout=60)
            table = await wait_stable(client, [a, b], PARTITIONS)
            keys = keys_of(a.url, table, 4)
            # key -> (value, when acknowledged)
            acked = await create_all(client, a, keys, "v1")

            cut.blackhole()
            cut_at = time.monotonic()
            a2.start()
            stale: list[tuple[str, str, float]] = []
            served: dict[str, list[float]] = {"A": [], "A2": []}
            assigned_at: list[float] = []  # when A2 first had a routing table
            done = trio.Event()

            async def read(node: str, base: str) -> None:
                while not done.is_set():
                    for k in keys:
                        asked = time.monotonic()
                        try:
                            r = await client.get(f"{base}/users/{k}", timeout=3)
                        except httpx.HTTPError:
                            continue
                        if r.status_code == 200:
                            served[node].append(asked - cut_at)
                            value, when = acked[k]
                            if when < asked and r.content != value:
                                stale.append((node, k, round(asked - cut_at, 2)))
                        else:
                            assert r.status_code == 503, r.text
                    await trio.sleep(0.05)

            async def watch_a2() -> None:
                while not assigned_at:
                    try:
                        r = await client.get(f"{a2.base}/groupinfo", timeout=2)
                        if int(r.headers.get("kstate-generation", "-1")) >= 0:
                            assigned_at.append(time.monotonic() - cut_at)
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read, "A", a.base)
                nursery.start_soon(read, "A2", a2.base)
                nursery.start_soon(watch_a2)
                for k in keys:  # A2 acknowledges newer versions as soon as it can
                    r = await put_until_acked(client, a2.base, k, "v2", SESSION * 4)
                    acked[k] = (r.content, time.monotonic())
                await trio.sleep(SESSION)  # A's lease is surely over: keep reading past it
                done.set()
            first_ack = min(when for _, when in acked.values()) - cut_at
            print(f"static replaced: A2 assigned {assigned_at}s after the cut, first ack "
                  f"{first_ack:.2f}s; last read served by A {max(served['A'], default=0):.2f}s"
                  f"; stale {stale[:5]}")
            # the precondition: A answered from memory after A2 had taken over
            assert assigned_at, "A2 never got a routing table"
            assert max(served["A"], default=0.0) > assigned_at[0], (served["A"], assigned_at)
            assert not stale, f"stale reads: {stale[:5]}"
            # A2 (and B, forwarding to it) serve every key at its newest version
            await assert_serves(client, (a2, b), {k: acked[k][0] for k in keys})
        finally:
            a.stop_now()
            b.stop_now()
            a2.stop_now()


async def test_replaced_static_member_under_a_new_url_gets_a_fresh_table(
        broker: SlotBroker, names, artifacts, client) -> None:
    advertised, internal = broker.slots[1]
    async with open_netcut([(advertised, internal)]) as cut:
        a = Node(bootstrap=f"127.0.0.1:{advertised}", topic=names["topic"],
                 group=names["group"], log_dir=artifacts,
                 extra={"KSTATE_INSTANCE_ID": "X"}).start()
        b = Node(bootstrap=broker.bootstrap, topic=names["topic"], group=names["group"],
                 log_dir=artifacts, extra={"KSTATE_INSTANCE_ID": "Y"}).start()
        a2 = Node(bootstrap=broker.bootstrap, topic=names["topic"], group=names["group"],
                  log_dir=artifacts, extra={"KSTATE_INSTANCE_ID": "X"})
        try:
            await wait_ready(client, a, timeout=60)
            await wait_ready(client, b, timeout=60)
            table = await wait_stable(client, [a, b], PARTITIONS)
            keys = keys_of(a.url, table, 4)
            for k in keys:
                r = await client.put(f"{a.base}/users/{k}", json={"name": "v1"})
                assert r.status_code == 201, r.text
            cut.blackhole()
            started = time.monotonic()
            a2.start()
            # within a bound, A2 and B both name A2 (not the cut-off A) for A's partitions
            await wait_stable(client, [a2, b], PARTITIONS, timeout=45)
            fresh = time.monotonic() - started
            for k in keys:
                await put_until_acked(client, b.base, k, "via-b", 20)
                await put_until_acked(client, a2.base, k, "via-a2", 20)
                r = await client.get(f"{b.base}/users/{k}")
                assert r.status_code == 200, r.text
                assert r.json()["name"] == "via-a2", r.text
            print(f"static replaced under a new url: fresh table {fresh:.2f}s after A2 "
                  f"started; {a2.log_text().count('event=stale_table_rejoin')} rejoin(s)")
            # The cut heals: A hears from the coordinator that it was replaced and stops
            # (exit 2), instead of joining again under X, which would replace A2, which
            # would do the same, for as long as both run.
            cut.heal()
            code = await a.wait_exit(90)
            text = a.log_text()
            assert code == 2, text[-3000:]
            assert "event=node_refused reason=instance_fenced" in text, text[-3000:]
            assert "event=node_crashed" not in text
            assert a2.alive(), a2.log_text()[-3000:]
            await wait_stable(client, [a2, b], PARTITIONS, timeout=45)
            for k in keys:
                await put_until_acked(client, b.base, k, "after-heal", 20)
                r = await client.get(f"{a2.base}/users/{k}")
                assert r.status_code == 200, r.text
                assert r.json()["name"] == "after-heal", r.text
        finally:
            a.stop_now()
            b.stop_now()
            a2.stop_now()
