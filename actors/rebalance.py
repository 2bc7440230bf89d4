"""Rebalance listener: turns the bridge's revoke/assign callbacks into messages.

On revoke: the state owner stops serving those partitions, then in-flight writes for
them finish or fail, then the bridge may let the group move on. On assign: the state
owner keeps, drops or rebuilds partitions and says where to seek; the router gets the
new routing table; the writer claims the partitions (writes this node's owner-epoch
marker into each: actors/writer.py).
"""

from __future__ import annotations

import logging
from typing import assert_never

import trio

from actors.replies import ReplyBox
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
    WriterIn,
)

log = logging.getLogger(__name__)


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
                case _:
                    assert_never(ev)
