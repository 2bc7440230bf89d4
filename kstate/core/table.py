"""The state table: the users of the partitions a node holds, and the rules that change
them. Plain synchronous code: the state owner (actors/state.py) drives it and wakes the
tasks waiting on it; unit tests drive it directly.

Per partition (kstate/core/partition.py): a dict ``key -> packed (version, value)``, the
position (next offset to apply: everything below it is applied), the catch-up target
(end offset read right after the assignment), whether this node serves it, and the
owner epochs that fence zombies. Every record goes through the one rule,
kstate/core/records.py. The catch-up gate is ``serving and position >= target``
(docs/design.md, "Consistency rules"), and, for a static member's process that may be
replacing a live incarnation of itself, this node's own marker applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kstate.core.messages import Assign, Batch, Record, Revoke, Targets
from kstate.core.partition import (
    UNUSABLE,
    Outcome,
    Partition,
    lookup,
    pack,
    stored_version,
)
from kstate.core.records import (
    Decision,
    Delete,
    Ignored,
    Marker,
    Upsert,
    claim_epoch,
    decide,
    epoch_reach,
    written_by_kstate,
)

log = logging.getLogger(__name__)

PROGRESS_EVERY = 5.0  # seconds between two catch-up progress lines of one partition
OUTCOMES_KEPT = 4096  # outcomes of this node's recent writes kept per partition
OWN_AHEAD_KEPT = 4096  # records of this node kept per partition until the ones before apply



class NotServing(Exception):
    """The partition is not (or no longer) served by this node."""


class StateTable:
    """Partitions this node holds, and the rules for changing them. Every change
    method returns the partitions it changed, so the caller can wake their waiters."""

    def __init__(self, num_partitions: int, *, quiet: bool = False) -> None:
        # quiet: no per-partition log lines (the standby's copy: actors/standby.py)
        self.num_partitions = num_partitions
        self.quiet = quiet
        self.partitions: dict[int, Partition] = {}
        self.epoch = 0
        self.stale_batches = 0
        self.shadow_changes = 0  # counts keys that became shadowed (repairs wait on it)
        # counts partitions this node served that a higher epoch's marker took over (the
        # node asks the group for a rebalance: actors/rebalance.py rejoin_superseded)
        self.superseded_changes = 0
        # Read from the bridge's asyncio thread (assignor metadata): replaced, never
        # mutated, so that thread never iterates a dict trio is changing.
        self.held_snapshot: frozenset[int] = frozenset()

    # -- reads ---------------------------------------------------------------
    def get(self, partition: int, key: bytes) -> tuple[bytes, int] | None:
        """The value and offset of ``key``; the caller has checked the gate."""
        part = self.partitions.get(partition)
        if part is None or not part.live:
            raise NotServing(partition)
        return lookup(part, key)

    def get_fenced(self, partition: int, key: bytes, end_offset: int
                   ) -> tuple[bytes, int] | None:
        """Read ``key`` of a held partition, served or not, if everything below
        ``end_offset`` (the log's end, asked after the read arrived) is applied.
        Raises NotServing if it is not, or the partition is not held."""
        part = self.partitions.get(partition)
        if part is None or part.halted is not None or part.position < end_offset:
            raise NotServing(partition)
        return lookup(part, key)

    def invalid_total(self) -> int:
        return sum(p.invalid for p in self.partitions.values())

    # -- changes -------------------------------------------------------------
    def apply(self, batch: Batch) -> set[int]:
        """Apply a fetched batch; returns the partitions whose state moved."""
        moved: set[int] = set()
        if batch.epoch != self.epoch:
            self.stale_batches += 1
            return moved
        for pid, records in batch.records.items():
            part = self.partitions.get(pid)
            if part is not None and part.serving and part.halted is None \
                    and self._apply_records(pid, part, records):
                moved.add(pid)
        for pid, position in batch.positions.items():
            part = self.partitions.get(pid)
            if part is not None and part.serving and part.halted is None \
                    and position > part.position:
                self._move(pid, part, position)
                moved.add(pid)
        for pid, (offset, why) in batch.halted.items():
            part = self.partitions.get(pid)
            if part is not None and part.halted is None:
                part.halted = f"offset {offset}: {why}"
                moved.add(pid)
                log.error("event=partition_halted partition=%d offset=%d position=%d "
                          "reason=%r", pid, offset, part.position, why)
        for pid in moved:
            part = self.partitions[pid]
            if part.own_ahead and part.halted is None:
                self._apply_ahead(pid, part)
        return moved

    def apply_own(self, pid: int, records: list[Record]) -> bool:
        """Apply records this node produced if they are the partition's next ones
        (offsets position, position+1, ...); whether they were."""
        part = self.partitions.get(pid)
        # A held partition, served or revoked: a write produced before its revoke is
        # applied here like the fetch would have (the revoke waits for such writes).
        if part is None or part.halted is not None or not records:
            return False
        for i, rec in enumerate(records):
            if rec.offset != part.position + i:
                if records[0].offset > part.position and len(part.own_ahead) < OWN_AHEAD_KEPT:
                    for r in records:
                        part.own_ahead[r.offset] = r
                return False
        self._apply_records(pid, part, records)
        if part.own_ahead:
            self._apply_ahead(pid, part)
        return True

    def _apply_ahead(self, pid: int, part: Partition) -> None:
        """Apply the kept records of this node that are now next (see own_ahead)."""
        ahead = part.own_ahead
        for offset in [o for o in ahead if o < part.position]:
            del ahead[offset]  # the fetch brought it first
        run: list[Record] = []
        while (rec := ahead.pop(part.position + len(run), None)) is not None:
            run.append(rec)
        if run:
            self._apply_records(pid, part, run)

    def _apply_records(self, pid: int, part: Partition, records: Iterable[Record]) -> bool:
        data = part.data
        applied = 0
        position = part.position
        n = self.num_partitions
        # This node writes only once caught up: a replay has no outcome to keep.
        keep_outcomes = 0 <= part.target <= position

        def version_of(k: bytes) -> int | None:
            return stored_version(part, k)

        for rec in records:
            if rec.offset < position:
                continue  # already applied (re-fetched after a seek, or applied as own)
            position = rec.offset + 1
            key = rec.key
            existed = key is not None and key in data
            decision = decide(rec, pid, n, part.epoch, version_of)
            if type(decision) is Upsert:
                data[decision.key] = pack(decision.key, decision.version, decision.value)
                if part.shadowed:
                    part.shadowed.pop(decision.key, None)
                applied += 1
            else:
                self._other(pid, part, rec, decision)
            # Only kstate's own records: another producer's burst of records with
            # headers (a tracing header, say) would push a write's outcome out of
            # the OUTCOMES_KEPT before its writer reads it.
            if keep_outcomes and rec.headers and written_by_kstate(rec):
                self._outcome(part, rec, decision, existed)
        part.replayed += applied
        if position > part.position:
            self._move(pid, part, position)
            return True
        return False

    def _other(self, pid: int, part: Partition, rec: Record, decision: Decision) -> None:
        """Everything but an upsert (kept out of the hot loop above)."""
        if isinstance(decision, Delete):
            part.data.pop(decision.key, None)
            part.shadowed.pop(decision.key, None)
            if decision.reason is not None:
                self._count(pid, part, rec, UNUSABLE, decision.reason)
        elif isinstance(decision, Marker):
            if decision.epoch > part.epoch:
                was_live = part.live
                part.epoch = decision.epoch
                if part.own_epoch >= 0 and part.epoch == part.own_epoch:
                    part.await_marker = False  # our own marker: the read gate opens
                if was_live and part.superseded:
                    self.superseded_changes += 1
                    if not self.quiet:
                        log.warning("event=partition_superseded partition=%d epoch=%d "
                                    "own=%d", pid, decision.epoch, part.own_epoch)
        elif isinstance(decision, Ignored):
            if decision.reason == "no_key":
                self._count(pid, part, rec, UNUSABLE, "record has no key")
            else:
                self._count(pid, part, rec, decision.reason, None)
            if decision.shadows and decision.key is not None:
                part.shadowed[decision.key] = rec.offset
                self.shadow_changes += 1

    def _outcome(self, part: Partition, rec: Record, decision: Decision, existed: bool
                 ) -> None:
        key = rec.key
        now = None if key is None else stored_version(part, key)
        version = -1 if now is None else now
        if isinstance(decision, Ignored):
            out = Outcome(False, decision.reason, False, version)
        else:
            out = Outcome(True, None, isinstance(decision, Upsert) and not existed, version)
        outcomes = part.outcomes
        outcomes[rec.offset] = out
        if len(outcomes) > OUTCOMES_KEPT:
            outcomes.popitem(last=False)

    def _count(self, pid: int, part: Partition, rec: Record, kind: str, why: str | None
               ) -> None:
        total = part.counts[kind] = part.counts.get(kind, 0) + 1
        if why is not None:
            part.unusable[why] = part.unusable.get(why, 0) + 1
        if not self.quiet and (total == 1 or total % 1000 == 0):
            log.warning("event=record_not_applied partition=%d offset=%d kind=%s reason=%r "
                        "total=%d", pid, rec.offset, kind, why or kind, total)

    def bump(self, pid: int, claim: bool = False) -> int | None:
        """Raise this node's owner epoch of ``pid`` (see messages.Bump)."""
        part = self.partitions.get(pid)
        if part is None or not part.live:
            return None
        if claim:
            # One claim per assignment (assign() resets own_epoch): two would compute
            # the same epoch and write the same marker key twice (a claim task of an
            # earlier assignment can outlive it: actors/writer.py claim).
            if part.own_epoch >= 0 or not part.replayed_to_target or part.generation < 0 \
                    or time.monotonic() < part.claim_after:
                return None
            epoch = claim_epoch(part.epoch, part.generation)
        elif part.own_epoch < 0:
            return None
        else:
            epoch = part.own_epoch + 1
        if epoch > epoch_reach(part.epoch):
            # Every node would take its marker for a malformed record: no marker, and
            # no more writes here (own epoch -1: not writable), as a write of unknown
            # fate could no longer be fenced.
            part.own_epoch = -1
            if not part.epochs_exhausted:
                part.epochs_exhausted = True
                log.error("event=epochs_exhausted partition=%d epoch=%d next=%d",
                          pid, part.epoch, epoch)
            return None
        part.own_epoch = epoch
        return epoch

    def _move(self, pid: int, part: Partition, position: int) -> None:
        part.position = position
        if part.caught_up and part.caught_up_at is None:
            part.caught_up_at = time.monotonic()
            if not self.quiet:
                log.info("event=caught_up partition=%d position=%d records=%d seconds=%.3f",
                         pid, position, part.replayed, part.caught_up_at - part.assigned_at)
        elif part.serving and part.target >= 0 and not part.replayed_to_target \
                and not self.quiet:
            now = time.monotonic()
            if now - part.progress_logged_at >= PROGRESS_EVERY:
                part.progress_logged_at = now
                log.info("event=catching_up partition=%d position=%d target=%d percent=%.1f "
                         "records_per_s=%.0f", pid, position, part.target,
                         100.0 * position / max(1, part.target),
                         part.replayed / max(now - part.assigned_at, 1e-6))

    def revoke(self, msg: Revoke) -> set[int]:
        """Stop serving at once; keep the data until the next assignment says.
        Returns the partitions that stopped serving. The epoch never goes back (see
        assign)."""
        self.epoch = max(self.epoch, msg.epoch)
        stopped: set[int] = set()
        for pid in msg.partitions:
            part = self.partitions.get(pid)
            if part is not None:
                part.serving = False
                stopped.add(pid)
        return stopped

    def assign(self, msg: Assign) -> tuple[dict[int, int | None], set[int]]:
        """Take the new assignment. Returns where the consumer must seek (an offset to
        keep a partition, None to rebuild it from the beginning) and every partition
        whose state changed (dropped ones included).

        An assignment older than the last revoke (its epoch is lower) is refused:
        nothing changes and it returns no seek at all. That is one the bridge sent while
        the node was already leaving: the shutdown revoke (the last epoch) came first,
        and serving again would answer from memory after the group gave the partitions
        away."""
        if msg.epoch < self.epoch:
            log.warning("event=assign_refused epoch=%d current=%d partitions=%s",
                        msg.epoch, self.epoch, sorted(msg.partitions))
            return {}, set()
        self.epoch = msg.epoch
        now = time.monotonic()
        changed: set[int] = set()
        for pid in set(self.partitions) - msg.partitions:
            dropped = self.partitions.pop(pid)
            dropped.serving = False
            changed.add(pid)
            log.info("event=partition_dropped partition=%d keys=%d", pid, len(dropped.data))
        seeks: dict[int, int | None] = {}
        self.held_snapshot = frozenset(msg.partitions)
        for pid in sorted(msg.partitions):
            part = self.partitions.get(pid)
            if part is None:
                part = self.partitions[pid] = Partition()
                seeks[pid] = None
            else:
                seeks[pid] = part.position
            part.serving = True
            part.generation = msg.generation
            part.own_epoch = -1  # claimed anew once caught up: see bump(claim=True)
            part.claim_after = msg.claim_after
            # kept until this node's marker is applied (an earlier assignment's too)
            part.await_marker = part.await_marker or msg.claim_after > 0
            # none: Kafka could not say (no leader); set by a later Targets (targets())
            part.target = msg.end_offsets.get(pid, -1)
            part.assigned_at = now
            part.progress_logged_at = now
            part.replayed = 0
            part.caught_up_at = now if part.caught_up else None
            changed.add(pid)
            if not self.quiet:
                log.info("event=partition_assigned partition=%d mode=%s position=%d "
                         "target=%d", pid, "rebuild" if seeks[pid] is None else "keep",
                         part.position, part.target)
        return seeks, changed

    def targets(self, msg: Targets) -> set[int]:
        """Set the catch-up targets Kafka could not say at the assignment (see
        messages.Targets). Only for that assignment (none since, no revoke since) and
        only where none is set: a target is read once, after the assignment. Returns
        the partitions whose target was set."""
        changed: set[int] = set()
        if msg.epoch != self.epoch:
            return changed
        now = time.monotonic()
        for pid, end in sorted(msg.end_offsets.items()):
            part = self.partitions.get(pid)
            if part is None or not part.serving or part.target >= 0:
                continue
            part.target = end
            changed.add(pid)
            if part.caught_up:
                part.caught_up_at = now
            if not self.quiet:
                log.info("event=target_known partition=%d position=%d target=%d "
                         "seconds=%.3f", pid, part.position, end, now - part.assigned_at)
                if part.caught_up:
                    log.info("event=caught_up partition=%d position=%d records=%d "
                             "seconds=%.3f", pid, part.position, part.replayed,
                             now - part.assigned_at)
        return changed
