"""The node's shutdown (kstate/node.py, _leave): an actor that fails while the node
drains stops it (exit 1) instead of leaving it waiting for an answer the failed node
will never give; the group is still left."""

from __future__ import annotations

import pytest
import trio

from kstate.core.messages import BridgeEvent, Revoked
from kstate.node import SHUTDOWN_EPOCH, _leave


class _Bridge:
    def __init__(self) -> None:
        self.shutting_down = False
        self.left = False

    def begin_shutdown(self, drain: float) -> None:
        self.shutting_down = True

    async def leave_group(self) -> None:
        await trio.sleep(0.1)
        self.left = True


class _Boom(Exception):
    pass


async def test_an_actor_failing_while_the_node_leaves_stops_the_node() -> None:
    bridge = _Bridge()
    events_send, events_recv = trio.open_memory_channel[BridgeEvent](4)
    got: list[BridgeEvent] = []

    async def rebalance() -> None:  # takes the revoke, then waits for writes in flight
        async with events_recv:
            got.append(await events_recv.receive())
            await trio.sleep_forever()

    async def failing_actor() -> None:
        while not got:
            await trio.sleep(0.01)
        raise _Boom

    async def watchdog() -> None:
        # answers the revoke after a while, as nobody in the failed node would: a
        # shielded wait for it would otherwise hang this test (fail_after cannot end it)
        await trio.sleep(5)
        if got:
            assert isinstance(got[0], Revoked)
            got[0].reply.send(None)

    trio.lowlevel.spawn_system_task(watchdog)
    started = trio.current_time()
    with pytest.RaisesGroup(_Boom):
        async with trio.open_nursery() as root:
            root.start_soon(rebalance)
            root.start_soon(failing_actor)
            await _leave(bridge, events_send, 3, frozenset({0}), 10.0)  # type: ignore[arg-type]
    assert trio.current_time() - started < 2  # not once the watchdog answered
    assert isinstance(got[0], Revoked)
    assert got[0].epoch == SHUTDOWN_EPOCH
    assert got[0].partitions == frozenset({0, 1, 2})
    assert bridge.shutting_down
    assert bridge.left  # still left the group (shielded), for a fast failover
