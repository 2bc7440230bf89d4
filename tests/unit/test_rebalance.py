"""The rebalance listener (actors/rebalance.py) between a bridge (the test plays it)
and a real state owner and writer: a revoke stops serving at once and answers the
bridge only once in-flight writes finished (bounded); an assignment answers where to
seek and publishes the routing table."""

from __future__ import annotations

from functools import partial

import trio

from actors import rebalance, state, writer
from actors.replies import ReplyBox
from kstate.core.messages import Assigned, Batch, Record, Revoked, RoutingTable, Write
from kstate.core.outcomes import Written

DRAIN = 3.0
TABLE = RoutingTable(generation=7, owners={0: "me:1", 1: "other:2"}, members={"m": "me:1"})


async def test_assign_then_revoke_waits_for_writes_in_flight(autojump_clock):
    async with trio.open_nursery() as nursery:
        state_send, state_recv = trio.open_memory_channel(0)
        handle = await nursery.start(partial(state.run, inbox=state_recv))
        produced = trio.Event()
        release = trio.Event()

        async def produce(partition: int, key: bytes, value: bytes | None) -> int:
            produced.set()
            await release.wait()
            return 0

        writes_send, writes_recv = trio.open_memory_channel(4)
        wh = await nursery.start(partial(writer.run, produce, handle, inbox=writes_recv,
                                         write_timeout=10.0, catchup_timeout=1.0))
        events_send, events_recv = trio.open_memory_channel(4)
        router_send, router_recv = trio.open_memory_channel(4)
        await nursery.start(partial(rebalance.run, events=events_recv,
                                    state=state_send.clone(), router=router_send, writer=wh,
                                    drain_timeout=DRAIN))

        # Assigned: the state owner holds partition 0 (rebuild: seek None), the router
        # gets the table, the bridge gets its answer.
        seeks: ReplyBox[dict] = ReplyBox()
        await events_send.send(Assigned(1, frozenset({0}), TABLE, {0: 0}, seeks))
        assert await seeks.wait() == {0: None}
        assert await router_recv.receive() == TABLE
        assert handle.is_caught_up(0)

        # A write is in flight when the group rebalances.
        box: ReplyBox = ReplyBox()
        await writes_send.send(Write(0, b"a@x", b'{"name":"A","email":"a@x"}', None, box))
        await produced.wait()
        revoked: ReplyBox[None] = ReplyBox()
        await events_send.send(Revoked(2, frozenset({0}), revoked))
        await trio.testing.wait_all_tasks_blocked()
        assert not handle.is_serving(0)  # stopped serving at once...
        assert not revoked._event.is_set()  # ...but the bridge waits for the write
        started = trio.current_time()
        await trio.sleep(1.0)
        release.set()
        await revoked.wait()
        assert trio.current_time() - started == 1.0
        assert await box.wait() == Written(0, 0, created=True)

        # A write that never finishes holds a revoke for DRAIN seconds, no longer.
        seeks = ReplyBox()
        await events_send.send(Assigned(3, frozenset({0}), TABLE, {0: 0}, seeks))
        assert await seeks.wait() == {0: 0}  # kept: seek to our own position
        await router_recv.receive()
        await state_send.send(Batch(3, {0: [Record(0, b"a@x", b'{"name":"A","email":"a@x"}')]},
                                    {0: 1}))
        produced = trio.Event()
        release = trio.Event()
        await writes_send.send(Write(0, b"b@x", b'{"name":"B","email":"b@x"}', None,
                                     ReplyBox()))
        await produced.wait()
        revoked = ReplyBox()
        started = trio.current_time()
        await events_send.send(Revoked(4, frozenset({0}), revoked))
        await revoked.wait()
        assert trio.current_time() - started == DRAIN
        await events_send.aclose()
        nursery.cancel_scope.cancel()
