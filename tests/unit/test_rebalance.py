"""The rebalance listener (actors/rebalance.py) between a bridge (the test plays it)
and a real state owner and writer: an assignment answers where to seek, publishes the
routing table and claims the partitions (the writer's marker); a revoke stops serving
at once and answers the bridge only once in-flight writes finished (bounded)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from actors import rebalance, state, writer
from actors.replies import ReplyBox
from kstate.core.messages import Assigned, Batch, Record, Revoked, RoutingTable, Write
from kstate.core.outcomes import Written
from kstate.core.records import EPOCH_STRIDE, MARKER_PREFIX, marker
from kstate.node import SHUTDOWN_EPOCH

DRAIN = 3.0
TABLE = RoutingTable(generation=7, owners={0: "me:1", 1: "other:2"}, members={"m": "me:1"})


class Producer:
    """Markers go through at once; a user record waits for ``release``."""

    def __init__(self) -> None:
        self.offset = 0
        self.records: list[Record] = []
        self.markers: list[bytes] = []
        self.produced = trio.Event()
        self.release = trio.Event()

    async def __call__(self, partition: int, key: bytes, value, headers) -> int:
        if key.startswith(MARKER_PREFIX):
            self.markers.append(key)
        else:
            self.produced.set()
            await self.release.wait()
        self.records.append(Record(self.offset, key, value, tuple(headers)))
        self.offset += 1
        return self.offset - 1


async def _actors(nursery: trio.Nursery) -> tuple[Any, Any, Producer, Any, Any, Any]:
    """The state owner, the writer (over ``Producer``) and the rebalance actor, wired as
    the node wires them: (state inbox, state handle, producer, writes in, bridge events
    in, router tables out)."""
    state_send, state_recv = trio.open_memory_channel(0)
    handle = await nursery.start(partial(state.run, inbox=state_recv, num_partitions=1))
    produce = Producer()
    writes_send, writes_recv = trio.open_memory_channel(4)
    wh = await nursery.start(partial(writer.run, produce, handle, inbox=writes_recv,
                                     own=state_send.clone(), write_timeout=10.0,
                                     catchup_timeout=1.0))
    events_send, events_recv = trio.open_memory_channel(4)
    router_send, router_recv = trio.open_memory_channel(4)
    await nursery.start(partial(rebalance.run, events=events_recv,
                                state=state_send.clone(), router=router_send, writer=wh,
                                claims=writes_send.clone(), drain_timeout=DRAIN))
    return state_send, handle, produce, writes_send, events_send, router_recv


async def test_assign_claims_then_revoke_waits_for_writes_in_flight(autojump_clock):
    async with trio.open_nursery() as nursery:
        state_send, handle, produce, writes_send, events_send, router_recv = \
            await _actors(nursery)

        # Assigned: the state owner holds partition 0 (rebuild: seek None), the router
        # gets the table, the bridge its answer, and the writer claims the partition.
        seeks: ReplyBox[dict] = ReplyBox()
        await events_send.send(Assigned(1, frozenset({0}), TABLE, {0: 0}, seeks))
        assert await seeks.wait() == {0: None}
        assert await router_recv.receive() == TABLE
        with trio.fail_after(1):
            await handle.wait_writable(0)
        # nothing seen yet: the claim's block is the generation
        assert produce.markers == [MARKER_PREFIX + f"0:{7 * EPOCH_STRIDE}".encode()]

        # A write is in flight when the group rebalances.
        box: ReplyBox = ReplyBox()
        await writes_send.send(Write(0, b"a@x", b'{"name":"A","email":"a@x"}', None, box))
        await produce.produced.wait()
        revoked: ReplyBox[None] = ReplyBox()
        await events_send.send(Revoked(2, frozenset({0}), revoked))
        await trio.testing.wait_all_tasks_blocked()
        assert not handle.is_serving(0)  # stopped serving at once...
        assert not revoked._event.is_set()  # ...but the bridge waits for the write
        started = trio.current_time()
        await trio.sleep(1.0)
        produce.release.set()
        await revoked.wait()
        assert trio.current_time() - started == 1.0
        # Produced while the revoke waited for it: no next owner can claim the
        # partition before the revoke completes, so the record precedes its claim and
        # the write is acknowledged (this node applied its own next record).
        got = await box.wait()
        assert isinstance(got, Written)

        # Assigned again (kept: seek to our own position), a new claim, then a write
        # that never finishes holds a revoke for DRAIN seconds, no longer.
        seeks = ReplyBox()
        table = RoutingTable(8, TABLE.owners, TABLE.members)
        await events_send.send(Assigned(3, frozenset({0}), table, {0: 0}, seeks))
        assert await seeks.wait() == {0: 2}  # past our marker (0) and our write (1)
        await router_recv.receive()
        # the consumer, sought to offset 1, fetches what was written since
        await trio.testing.wait_all_tasks_blocked()
        await state_send.send(Batch(3, {0: produce.records[1:]}, {0: produce.offset}))
        with trio.fail_after(1):
            await handle.wait_writable(0)
        # claimed above what it has seen: the block of epoch 7*STRIDE plus generation 8
        assert produce.markers[1] == MARKER_PREFIX + f"0:{(7 + 8) * EPOCH_STRIDE}".encode()
        produce.produced = trio.Event()
        produce.release = trio.Event()
        await writes_send.send(Write(0, b"b@x", b'{"name":"B","email":"b@x"}', None,
                                     ReplyBox()))
        await produce.produced.wait()
        revoked = ReplyBox()
        started = trio.current_time()
        await events_send.send(Revoked(4, frozenset({0}), revoked))
        await revoked.wait()
        assert trio.current_time() - started == DRAIN
        await events_send.aclose()
        nursery.cancel_scope.cancel()


async def test_an_assignment_in_flight_when_the_node_leaves_is_refused(autojump_clock):
    # The node leaves: the shutdown revoke (the last epoch) stops serving. An Assigned
    # the bridge sent just before it began leaving arrives after: it must not make the
    # partition serve and writable again (the group gives it away on LeaveGroup).
    async with trio.open_nursery() as nursery:
        _, handle, produce, _, events_send, router_recv = await _actors(nursery)
        seeks: ReplyBox[dict] = ReplyBox()
        await events_send.send(Assigned(1, frozenset({0}), TABLE, {0: 0}, seeks))
        assert await seeks.wait() == {0: None}
        await router_recv.receive()
        with trio.fail_after(1):
            await handle.wait_writable(0)

        revoked: ReplyBox[None] = ReplyBox()
        await events_send.send(Revoked(SHUTDOWN_EPOCH, frozenset({0}), revoked))
        await revoked.wait()
        assert not handle.is_serving(0)

        late: ReplyBox[dict] = ReplyBox()
        table = RoutingTable(8, TABLE.owners, TABLE.members)
        await events_send.send(Assigned(2, frozenset({0}), table, {0: 1}, late))
        assert await late.wait() == {}  # refused: no seek
        await trio.sleep(5.0)  # what a claim would take
        assert not handle.is_serving(0)
        assert not handle.is_caught_up(0)
        assert len(produce.markers) == 1  # no new claim
        with pytest.raises(trio.WouldBlock):
            router_recv.receive_nowait()  # the router keeps the table it had
        await events_send.aclose()
        nursery.cancel_scope.cancel()


async def test_a_partition_taken_over_while_assigned_asks_for_one_rebalance(autojump_clock):
    # A marker of a higher epoch than this node's claim (a foreign one: a mirrored
    # topic, a restored backup) takes a partition over while the group still assigns
    # it here: nobody serves it. The node asks the group for one rebalance; the sticky
    # plan gives the partition back, and the new claim lands above that marker.
    async with trio.open_nursery() as nursery:
        state_send, handle, produce, writes_send, events_send, router_recv = \
            await _actors(nursery)
        asked: list[tuple[str, list[int]]] = []

        async def rejoin(why: str, partitions: list[int]) -> bool:
            asked.append((why, partitions))
            return True  # asked: the next assignment settles it

        nursery.start_soon(rebalance.rejoin_superseded, handle, rejoin)
        seeks: ReplyBox[dict] = ReplyBox()
        await events_send.send(Assigned(1, frozenset({0}), TABLE, {0: 0}, seeks))
        await seeks.wait()
        await router_recv.receive()
        with trio.fail_after(1):
            await handle.wait_writable(0)
        assert asked == []  # claiming is no reason to rejoin

        def foreign(key: bytes, value: bytes, headers=()) -> Record:
            rec = Record(produce.offset, key, value, tuple(headers))
            produce.records.append(rec)
            produce.offset += 1
            return rec

        foreign_epoch = 12 * EPOCH_STRIDE  # above our claim's block (7)
        await state_send.send(Batch(1, {0: [foreign(*marker(0, foreign_epoch))]},
                                    {0: produce.offset}))
        await trio.testing.wait_all_tasks_blocked()
        assert not handle.is_serving(0)
        assert handle.holds(0)
        assert asked == [("superseded", [0])]
        # what follows in the partition asks nothing more
        await state_send.send(Batch(1, {0: [foreign(b"z@x", b'{"name":"Z","email":"z@x"}')]},
                                    {0: produce.offset}))
        await trio.sleep(60)
        assert asked == [("superseded", [0])]

        # The rebalance: revoked, then the same partition again (sticky), a new claim.
        revoked: ReplyBox[None] = ReplyBox()
        await events_send.send(Revoked(2, frozenset({0}), revoked))
        await revoked.wait()
        seeks = ReplyBox()
        table = RoutingTable(8, TABLE.owners, TABLE.members)
        await events_send.send(Assigned(3, frozenset({0}), table, {0: produce.offset}, seeks))
        assert await seeks.wait() == {0: produce.offset}
        await router_recv.receive()
        with trio.fail_after(1):
            await handle.wait_writable(0)
        assert produce.markers[-1] == MARKER_PREFIX + f"0:{(12 + 8) * EPOCH_STRIDE}".encode()
        produce.release.set()
        box: ReplyBox = ReplyBox()
        await writes_send.send(Write(0, b"a@x", b'{"name":"A","email":"a@x"}', None, box))
        assert isinstance(await box.wait(), Written)
        assert asked == [("superseded", [0])]
        await events_send.aclose()
        nursery.cancel_scope.cancel()


async def test_a_rejoin_the_bridge_puts_off_is_asked_again_until_one_is_asked(autojump_clock):
    # The bridge asks the group only while a rejoin can help (kstate/bridge/group.py,
    # request_rejoin): not while the node is out of the group or its lease lapsed, nor
    # once its rejoins are spent for now. It answers "later", and the partition, still
    # taken over, is asked for again until a rejoin goes out; then nothing more until
    # the assignment that follows.
    async with trio.open_nursery() as nursery:
        state_send, handle, produce, _, events_send, router_recv = await _actors(nursery)
        asked: list[float] = []
        later = 3

        async def rejoin(why: str, partitions: list[int]) -> bool:
            assert (why, partitions) == ("superseded", [0])
            asked.append(trio.current_time())
            return len(asked) > later

        nursery.start_soon(partial(rebalance.rejoin_superseded, handle, rejoin, retry=2.0))
        seeks: ReplyBox[dict] = ReplyBox()
        await events_send.send(Assigned(1, frozenset({0}), TABLE, {0: 0}, seeks))
        await seeks.wait()
        await router_recv.receive()
        with trio.fail_after(1):
            await handle.wait_writable(0)
        key, value, headers = marker(0, 12 * EPOCH_STRIDE)
        produce.records.append(Record(produce.offset, key, value, headers))
        produce.offset += 1
        await state_send.send(Batch(1, {0: produce.records[-1:]}, {0: produce.offset}))
        await trio.testing.wait_all_tasks_blocked()
        assert not handle.is_serving(0)
        started = trio.current_time()
        await trio.sleep(60)
        assert [t - started for t in asked] == [0.0, 2.0, 4.0, 6.0]  # the 4th went out

        # the rebalance it asked for: the partition back, claimed anew; nothing asked
        revoked: ReplyBox[None] = ReplyBox()
        await events_send.send(Revoked(2, frozenset({0}), revoked))
        await revoked.wait()
        seeks = ReplyBox()
        await events_send.send(Assigned(3, frozenset({0}), RoutingTable(8, TABLE.owners,
                                                                        TABLE.members),
                                        {0: produce.offset}, seeks))
        await seeks.wait()
        await router_recv.receive()
        with trio.fail_after(1):
            await handle.wait_writable(0)
        await trio.sleep(60)
        assert len(asked) == later + 1
        await events_send.aclose()
        nursery.cancel_scope.cancel()
