"""State owner: the only holder of the users.

:func:`run` is the actor: a thin loop that applies the messages of its inbox to the
:class:`~kstate.core.table.StateTable` and wakes the tasks waiting on the partitions
that changed. Readers never message the actor; they use :class:`StateHandle`, which
only reads and waits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import assert_never

import trio

from kstate.core.messages import Assign, Batch, Revoke, StateIn
from kstate.core.table import NotServing, StateTable

__all__ = ["NotServing", "PartitionStats", "StateHandle", "run"]


@dataclass(frozen=True, slots=True)
class PartitionStats:
    """One held partition as /readyz and /metrics show it."""

    serving: bool
    caught_up: bool
    position: int
    target: int
    lag: int
    keys: int
    replayed: int
    invalid: int
    catchup_seconds: float | None


class StateHandle:
    """What other actors may do with the state: read and wait. Never mutate."""

    def __init__(self, table: StateTable) -> None:
        self._table = table
        # partition -> set (and replaced) whenever its position, serving state or
        # assignment changes: waiters wake and check their condition again.
        self._changed: dict[int, trio.Event] = {}

    @property
    def table(self) -> StateTable:
        return self._table

    def wake(self, partitions: Iterable[int]) -> None:
        """Wake every task waiting on ``partitions`` (the state owner calls this after
        each change)."""
        for pid in partitions:
            event = self._changed.pop(pid, None)
            if event is not None:
                event.set()

    def _event(self, partition: int) -> trio.Event:
        event = self._changed.get(partition)
        if event is None:
            event = self._changed[partition] = trio.Event()
        return event

    def held(self) -> frozenset[int]:
        """Partitions held in memory; safe to call from the bridge's thread."""
        return self._table.held_snapshot

    def holds(self, partition: int) -> bool:
        """Whether this node still holds ``partition``'s data, served or not (revoked
        partitions are kept until the next assignment says where they go)."""
        return partition in self._table.partitions

    def is_serving(self, partition: int) -> bool:
        part = self._table.partitions.get(partition)
        return part is not None and part.serving

    def is_caught_up(self, partition: int) -> bool:
        part = self._table.partitions.get(partition)
        return part is not None and part.caught_up

    def get_nowait(self, partition: int, key: bytes) -> tuple[bytes, int] | None:
        """Read ``key``; the caller has passed :meth:`wait_caught_up`. Raises NotServing."""
        return self._table.get(partition, key)

    def get_fenced(self, partition: int, key: bytes, end_offset: int
                   ) -> tuple[bytes, int] | None:
        """Read ``key`` of a held partition if everything below ``end_offset`` is applied
        (see RouterHandle's fenced reads); else NotServing."""
        return self._table.get_fenced(partition, key, end_offset)

    async def wait_caught_up(self, partition: int) -> None:
        """Return once ``partition`` is served and caught up; raise NotServing if it is
        not (or stops being) served by this node."""
        while True:
            part = self._table.partitions.get(partition)
            if part is None or not part.serving:
                raise NotServing(partition)
            if part.caught_up:
                return
            await self._event(partition).wait()

    async def wait_applied(self, partition: int, offset: int) -> None:
        """Return once the record at ``offset`` is applied; raise NotServing if the
        partition is revoked first."""
        while True:
            part = self._table.partitions.get(partition)
            if part is None or not part.serving:
                raise NotServing(partition)
            if part.position > offset:
                return
            await self._event(partition).wait()

    def statistics(self) -> dict[int, PartitionStats]:
        out: dict[int, PartitionStats] = {}
        for pid, part in sorted(self._table.partitions.items()):
            out[pid] = PartitionStats(
                serving=part.serving, caught_up=part.caught_up, position=part.position,
                target=part.target, lag=max(0, part.target - part.position),
                keys=len(part.data), replayed=part.replayed, invalid=part.invalid,
                catchup_seconds=(None if part.caught_up_at is None
                                 else round(part.caught_up_at - part.assigned_at, 3)))
        return out


async def run(*, inbox: trio.MemoryReceiveChannel[StateIn], table: StateTable | None = None,
              task_status: trio.TaskStatus[StateHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """The state owner. Owns ``inbox`` (returns when it closes)."""
    handle = StateHandle(table or StateTable())
    task_status.started(handle)
    table = handle.table
    async with inbox:
        async for msg in inbox:
            match msg:
                case Batch():
                    handle.wake(table.apply(msg))
                case Revoke():
                    handle.wake(table.revoke(msg))
                    msg.reply.send(None)
                case Assign():
                    seeks, changed = table.assign(msg)
                    handle.wake(changed)
                    msg.reply.send(seeks)
                case _:
                    assert_never(msg)
