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

from actors.inbox import ready
from kstate.core.messages import Assign, Batch, Bump, Own, Revoke, StateIn, Targets
from kstate.core.partition import Outcome
from kstate.core.table import NotServing, StateTable

__all__ = ["NotServing", "Outcome", "PartitionStats", "StateHandle", "run"]


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
    invalid: int  # records kstate cannot use (each deleted its key): see unusable
    wrong_partition: int  # records in a partition other than their key's: ignored
    fenced: int  # a zombie owner's writes, ignored
    expect_failed: int  # conditional writes whose condition failed at apply time
    unusable: dict[str, int]  # invalid records by reason
    epoch: int  # the partition's owner epoch
    own_epoch: int  # this node's (-1: not the owner)
    halted: str | None  # why it stopped at its position, if it did
    catchup_seconds: float | None


class StateHandle:
    """What other actors may do with the state: read and wait. Never mutate."""

    def __init__(self, table: StateTable) -> None:
        self._table = table
        # partition -> set (and replaced) whenever its position, serving state or
        # assignment changes: waiters wake and check their condition again.
        self._changed: dict[int, trio.Event] = {}
        # set (and replaced) when a repair may be due: a key became shadowed, or a
        # partition with shadowed keys became writable here (see wait_repairs_due)
        self._repairs_due = trio.Event()
        self._shadow_seen = 0
        self._writable: set[int] = set()  # partitions writable at their last change
        self._superseded = trio.Event()  # set (and replaced) when a served one is taken over
        self._superseded_seen = 0
        self._assigned = trio.Event()  # set (and replaced) at each assignment applied
        self.assignments = 0  # assignments applied so far

    @property
    def table(self) -> StateTable:
        return self._table

    def wake(self, partitions: Iterable[int]) -> None:
        """Wake every task waiting on ``partitions`` (the state owner calls this after
        each change)."""
        due = False
        for pid in partitions:
            event = self._changed.pop(pid, None)
            if event is not None:
                event.set()
            part = self._table.partitions.get(pid)
            if part is not None and part.writable:
                if pid not in self._writable:
                    self._writable.add(pid)
                    due = due or bool(part.shadowed)
            else:
                self._writable.discard(pid)
        if self._table.shadow_changes != self._shadow_seen:
            self._shadow_seen = self._table.shadow_changes
            due = True
        if due:
            self._repairs_due.set()
            self._repairs_due = trio.Event()
        if self._table.superseded_changes != self._superseded_seen:
            self._superseded_seen = self._table.superseded_changes
            self._superseded.set()
            self._superseded = trio.Event()

    async def wait_repairs_due(self) -> None:
        """Return when a key of some partition becomes shadowed (see shadowed()), or a
        partition with shadowed keys becomes writable here: they were shadowed while it
        was not (replayed by a new owner, or while this node caught up or claimed), and
        nothing else would say they are due."""
        await self._repairs_due.wait()

    async def wait_superseded(self) -> None:
        """Return when a partition this node served is taken over by a marker of a
        higher epoch than its own (see superseded())."""
        await self._superseded.wait()

    def assigned(self) -> None:
        """An assignment was applied (the state owner calls this)."""
        self.assignments += 1
        self._assigned.set()
        self._assigned = trio.Event()

    async def wait_assigned(self, since: int) -> None:
        """Return once an assignment after the ``since``-th was applied (at once if one
        was already: ``since`` is :attr:`assignments` as the caller last read it)."""
        while self.assignments <= since:
            await self._assigned.wait()

    def superseded(self) -> list[int]:
        """Partitions still assigned here (serving, not halted) whose epoch a marker
        raised above this node's own claim: a newer owner's, or a foreign one (a
        mirrored topic, a restored backup, another kstate group on the topic). This
        node no longer reads or writes them from memory; only a new assignment (a new
        claim, above that epoch) makes them live again."""
        return sorted(pid for pid, part in self._table.partitions.items()
                      if part.serving and part.halted is None and part.superseded)

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
        """Assigned here, not taken over by a newer owner, not halted."""
        part = self._table.partitions.get(partition)
        return part is not None and part.live

    def halted(self, partition: int) -> str | None:
        """Why ``partition`` stopped at its position (a batch it cannot decode), if so."""
        part = self._table.partitions.get(partition)
        return None if part is None else part.halted

    def epoch(self, partition: int) -> int:
        """The partition's owner epoch (the highest marker applied; -1: none)."""
        part = self._table.partitions.get(partition)
        return -1 if part is None else part.epoch

    def own_epoch(self, partition: int) -> int:
        """This node's owner epoch of ``partition`` (-1: it does not own it)."""
        part = self._table.partitions.get(partition)
        return -1 if part is None else part.own_epoch

    def is_writable(self, partition: int) -> bool:
        part = self._table.partitions.get(partition)
        return part is not None and part.writable

    def outcome(self, partition: int, offset: int) -> Outcome | None:
        """What became of the record this node wrote at ``offset`` (once applied)."""
        part = self._table.partitions.get(partition)
        return None if part is None else part.outcomes.get(offset)

    def shadowed(self, partition: int) -> dict[bytes, int]:
        """Keys whose latest record was ignored (fenced, or its condition failed)."""
        part = self._table.partitions.get(partition)
        return {} if part is None else dict(part.shadowed)

    def is_shadowed(self, partition: int, key: bytes) -> bool:
        part = self._table.partitions.get(partition)
        return part is not None and key in part.shadowed

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
        not (or stops being) served by this node (revoked, or taken over by a higher
        epoch's marker: :meth:`is_serving`), or is halted (it cannot catch up). A
        partition taken over stays assigned, but its gate never opens (``caught_up``
        needs it live): the reader goes to its fenced path at once instead of waiting
        out ``catchup_timeout``."""
        while True:
            part = self._table.partitions.get(partition)
            if part is None or not part.live:
                raise NotServing(partition)
            if part.caught_up:
                return
            await self._event(partition).wait()

    def claim_after(self, partition: int) -> float:
        """No claim of ``partition`` before this ``time.monotonic()`` (see
        kstate/core/partition.py, ``claim_after``)."""
        part = self._table.partitions.get(partition)
        return 0.0 if part is None else part.claim_after

    async def wait_replayed(self, partition: int) -> None:
        """Return once ``partition`` is served and applied up to its target (what a
        claim waits for: the read gate may also wait for the claim's marker); raise
        NotServing as :meth:`wait_caught_up`."""
        while True:
            part = self._table.partitions.get(partition)
            if part is None or not part.live:
                raise NotServing(partition)
            if part.replayed_to_target:
                return
            await self._event(partition).wait()

    async def wait_writable(self, partition: int) -> None:
        """Return once this node may write ``partition`` (caught up, its own marker
        applied); raise NotServing if it stops serving it first."""
        while True:
            part = self._table.partitions.get(partition)
            if part is None or not part.live:
                raise NotServing(partition)
            if part.writable:
                return
            await self._event(partition).wait()

    async def wait_applied(self, partition: int, offset: int) -> None:
        """Return once the record at ``offset`` is applied (or passed over); raise
        NotServing if the partition is revoked, taken over or halted first."""
        while True:
            part = self._table.partitions.get(partition)
            if part is not None and part.position > offset:
                return  # decided here, even if the partition moved on since
            if part is None or not part.live:
                raise NotServing(partition)
            await self._event(partition).wait()

    async def wait_changed(self, partition: int) -> None:
        """Return at the next change of ``partition`` (position, serving, assignment)."""
        await self._event(partition).wait()

    def statistics(self) -> dict[int, PartitionStats]:
        out: dict[int, PartitionStats] = {}
        for pid, part in sorted(self._table.partitions.items()):
            out[pid] = PartitionStats(
                serving=part.serving, caught_up=part.caught_up, position=part.position,
                target=part.target, lag=max(0, part.target - part.position),
                keys=len(part.data), replayed=part.replayed, invalid=part.invalid,
                wrong_partition=part.counts.get("wrong_partition", 0),
                fenced=part.counts.get("fenced", 0),
                expect_failed=part.counts.get("expect_failed", 0),
                unusable=dict(part.unusable), epoch=part.epoch, own_epoch=part.own_epoch,
                halted=part.halted,
                catchup_seconds=(None if part.caught_up_at is None
                                 else round(part.caught_up_at - part.assigned_at, 3)))
        return out


async def run(*, inbox: trio.MemoryReceiveChannel[StateIn], num_partitions: int,
              task_status: trio.TaskStatus[StateHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """The state owner of a topic of ``num_partitions``. Owns ``inbox`` (returns when
    it closes)."""
    handle = StateHandle(StateTable(num_partitions))
    task_status.started(handle)
    async with inbox:
        async for msg in inbox:
            _apply(handle, msg)
            # The small messages queued behind it are applied in this same turn (a
            # burst of acknowledged writes: each one's Own). A fetched batch ends the
            # turn: it may hold max_batch records, and HTTP tasks run between batches.
            if not isinstance(msg, Batch):
                for queued in ready(inbox):
                    _apply(handle, queued)
                    if isinstance(queued, Batch):
                        break


def _apply(handle: StateHandle, msg: StateIn) -> None:
    table = handle.table
    match msg:
        case Batch():
            handle.wake(table.apply(msg))
        case Revoke():
            handle.wake(table.revoke(msg))
            msg.reply.send(None)
        case Assign():
            seeks, changed = table.assign(msg)
            handle.wake(changed)
            handle.assigned()
            msg.reply.send(seeks)
        case Own():
            applied = table.apply_own(msg.partition, msg.records)
            if applied:
                handle.wake((msg.partition,))
            msg.reply.send(applied)
        case Bump():
            msg.reply.send(table.bump(msg.partition, msg.claim))
            handle.wake((msg.partition,))
        case Targets():
            handle.wake(table.targets(msg))
            msg.reply.send(None)
        case _:
            assert_never(msg)
