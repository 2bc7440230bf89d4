"""One client cut off from Kafka by tools/netcut.py, the others untouched.

A broker with one proxy slot (``KAFKA_PROXY_SLOTS=1``): a bridge bootstrapped through
the slot's proxy is told slot addresses for everything (partition leader, group
coordinator), so every one of its connections goes through the proxy and a blackhole
cuts it, and only it; after the heal it works again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from kstate.core.messages import Assigned, BridgeEvent, Revoked
from tests.support.bridge import bridge_settings, open_bridge, read_values
from tests.support.kafka_modes import SlotBroker, slot_broker
from tools.netcut import Netcut, open_netcut

# One worker runs this module: its broker (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_netcut")

STALL = 3.0  # seconds a produce through a cut proxy must not complete in


@pytest.fixture(scope="module")
def broker() -> Iterator[SlotBroker]:
    with slot_broker("netcut", slots=1) as b:
        yield b


@pytest.fixture
async def cut(broker: SlotBroker) -> AsyncIterator[Netcut]:
    advertised, internal = broker.slots[1]
    async with open_netcut([(advertised, internal)]) as proxy:
        yield proxy


def established_to(port: int) -> int:
    """Open TCP connections (any process) whose far end is 127.0.0.1:port."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


async def answer_events(events: trio.MemoryReceiveChannel[BridgeEvent],
                        assigned: trio.Event) -> None:
    async for ev in events:
        if isinstance(ev, Revoked):
            ev.reply.send(None)
        else:
            assert isinstance(ev, Assigned)
            ev.reply.send({p: None for p in ev.partitions})
            assigned.set()


async def test_every_connection_of_a_proxied_client_goes_through_the_proxy(
        broker: SlotBroker, cut: Netcut, names: dict[str, str]) -> None:
    advertised, internal = broker.slots[1]
    plaintext = int(broker.bootstrap.rsplit(":", 1)[1])
    s = bridge_settings(f"127.0.0.1:{advertised}", names["topic"])
    async with open_bridge(s) as bridge, trio.open_nursery() as nursery:
        await bridge.ensure_topic()
        await bridge.start_producer()
        offset = await bridge.produce(0, b"k", b"through the proxy")
        send, recv = trio.open_memory_channel[BridgeEvent](4)
        assigned = trio.Event()
        nursery.start_soon(answer_events, recv, assigned)
        await bridge.start_consumer("127.0.0.1:1", frozenset, send)  # group coordinator
        with trio.fail_after(30):
            got: list[bytes] = []
            while not got:
                batch = await bridge.fetch(200)
                got = [r.value for r in batch.records.get(0, []) if r.value is not None]
        assert assigned.is_set()
        assert got == [b"through the proxy"]
        assert await read_values(bridge, offset + 1) == [b"through the proxy"]
        # Nothing of this process reached the broker's own listener, and every
        # connection to the slot's internal port is one of the proxy's (counted when
        # no connection is half-way through closing).
        assert established_to(plaintext) == 0
        with trio.fail_after(5):
            while established_to(internal) != cut.statistics().connections_open:
                await trio.sleep(0.05)
        assert cut.statistics().connections_open >= 2  # bootstrap/leader + coordinator
        await bridge.leave_group()
        nursery.cancel_scope.cancel()


async def test_a_cut_stalls_only_the_proxied_client_until_healed(
        broker: SlotBroker, cut: Netcut, names: dict[str, str]) -> None:
    advertised, _ = broker.slots[1]
    topic = names["topic"]
    async with (open_bridge(bridge_settings(f"127.0.0.1:{advertised}", topic)) as far,
                open_bridge(bridge_settings(broker.bootstrap, topic)) as near):
        await far.ensure_topic()
        await far.start_producer()
        await near.start_producer()
        assert await far.produce(0, b"k", b"before") == 0

        cut.blackhole()
        moved = cut.statistics()
        started = trio.current_time()
        with trio.move_on_after(STALL) as stalled:
            await far.produce(0, b"k", b"during")
        assert stalled.cancelled_caught, "a produce got through the cut"
        # The rest of the world is not cut: a client on the normal listener writes
        # and reads while the proxied one hangs.
        with trio.fail_after(10):
            direct = await near.produce(0, b"k", b"direct")
            assert (await read_values(near, direct + 1))[direct] == b"direct"
        after = cut.statistics()
        assert (after.bytes_up, after.bytes_down) == (moved.bytes_up, moved.bytes_down)
        assert after.connections_open >= moved.connections_open  # nothing closed by us
        assert trio.current_time() - started < STALL + 10

        cut.heal()
        with trio.fail_after(30):
            healed = await far.produce(0, b"k", b"after")
        values = await read_values(far, healed + 1)
        assert values[0] == b"before"
        assert values[direct] == b"direct"
        assert values[healed] == b"after"
        # The cancelled produce may have been sent after the heal (the producer kept
        # it queued): it is there at most once, and nothing else is.
        assert sorted(values) in (sorted([b"before", b"direct", b"after"]),
                                  sorted([b"before", b"direct", b"during", b"after"]))
