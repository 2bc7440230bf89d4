"""Rebalance listener: turns the bridge's revoke/assign callbacks into messages.

On revoke: the state owner stops serving those partitions, then in-flight writes for
them finish or fail, then the bridge may let the group move on. On assign: the state
owner keeps, drops or rebuilds partitions and says where to seek; the router gets the
new routing table; the writer claims the partitions (writes this node's owner-epoch
marker into each: actors/writer.py). Targets: the catch-up targets of partitions that
had no leader at the assignment, read once they have one, go to the state owner.

:func:`rejoin_superseded` asks the group for a rebalance when a partition still
assigned here is taken over by a marker of a higher epoch than this node's claim (a
foreign marker: a mirrored topic, a restored backup, another kstate group on the
topic). Nothing else would end that state before some unrelated rebalance: the
partition is assigned here, so no other node serves it, and this node no longer
writes it or reads it from memory. The sticky plan gives it back to this node, whose
new claim lands above that marker (kstate/core/records.py, claim_epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import assert_never

import trio

from actors.replies import ReplyBox
from actors.state import StateHandle
from actors.writer import WriterHandle
from kstate.core.messages import (
    Assign,
    Assigned,
    BridgeEvent,
    Claim,
    Revoke,
    Revoked,
    RouterIn,
    StateIn,
    Targets,
    WriterIn,
)

log = logging.getLogger(__name__)

# Ask the group for a rebalance, naming why and the partitions. The bridge asks only
# while one can help, and bounds how often (kstate/bridge/group.py, request_rejoin):
# True when nothing is left to ask (a rebalance is asked for, or on its way), False
# when it should be asked again later.
Rejoin = Callable[[str, list[int]], Awaitable[bool]]
# Seconds between two asks while the partitions stay taken over and the bridge said
# "later" (the node is not in the group or its lease lapsed, or its rejoins are spent
# for now): one crossing to the bridge each, only while a partition is taken over.
REJOIN_RETRY = 1.0


async def run(*, events: trio.MemoryReceiveChannel[BridgeEvent],
              state: trio.MemorySendChannel[StateIn],
              router: trio.MemorySendChannel[RouterIn],
              writer: WriterHandle,
              claims: trio.MemorySendChannel[WriterIn],
              drain_timeout: float,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Owns ``events`` (returns when it closes) and closes ``state``, ``router`` and
    ``claims``."""
    async with events, state, router, claims:
        task_status.started()
        async for ev in events:
            match ev:
                case Revoked():
                    box: ReplyBox[None] = ReplyBox()
                    await state.send(Revoke(ev.epoch, ev.partitions, box))
                    await box.wait()
                    with trio.move_on_after(drain_timeout) as scope:
                        await writer.wait_idle(ev.partitions)
                    if scope.cancelled_caught:
                        log.warning("event=revoke_drain_timeout partitions=%s",
                                    sorted(ev.partitions))
                    ev.reply.send(None)
                case Assigned():
                    seeks: ReplyBox[dict[int, int | None]] = ReplyBox()
                    await state.send(Assign(ev.epoch, ev.partitions, ev.end_offsets, seeks,
                                            ev.table.generation, ev.claim_after))
                    answer = await seeks.wait()
                    if ev.partitions and not answer:
                        # refused (older than the shutdown revoke, kstate/core/table.py
                        # assign): nothing to route here or claim
                        ev.reply.send(answer)
                        continue
                    await router.send(ev.table)
                    ev.reply.send(answer)
                    if ev.partitions:
                        await claims.send(Claim(ev.partitions))
                case Targets():
                    # the state owner answers the bridge itself (a revoke since: dropped)
                    await state.send(ev)
                case _:
                    assert_never(ev)


async def rejoin_superseded(state: StateHandle, rejoin: Rejoin,
                            retry: float = REJOIN_RETRY) -> None:
    """While partitions this node served are taken over and still assigned here
    (StateHandle.superseded), ask the group for a rebalance (see the module
    docstring): once asked (or one is on its way), wait for the next assignment, which
    settles them; while the bridge says "later", ask again every ``retry`` seconds.
    Runs until cancelled."""
    while True:
        parts = state.superseded()
        if not parts:
            await state.wait_superseded()
            continue
        assignments = state.assignments
        if await rejoin("superseded", parts):
            await state.wait_assigned(assignments)
        else:
            with trio.move_on_after(retry):
                await state.wait_superseded()
