"""The state table: the users of the partitions a node holds, and the rules that change
them. Plain synchronous code: the state owner (actors/state.py) drives it and wakes the
tasks waiting on it; unit tests drive it directly.

Per partition: a dict ``key -> packed (offset, value)``, the position (next offset to
apply: everything below it is applied), the catch-up target (end offset read right
after the assignment) and whether this node serves it. The catch-up gate is
``serving and position >= target`` (docs/design.md, "Consistency rules").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from kstate.core.messages import Assign, Batch, Record, Revoke
from kstate.core.users import validate_record

log = logging.getLogger(__name__)

PROGRESS_EVERY = 5.0  # seconds between two catch-up progress lines of one partition


class NotServing(Exception):
    """The partition is not (or no longer) served by this node."""


@dataclass(slots=True)
class Partition:
    """One held partition: its data, position, catch-up target and counters."""
    # key -> 8-byte big-endian offset + value bytes: one object per entry instead of a
    # tuple, an int and the value (about 300 -> 200 bytes an entry; see _pack).
    data: dict[bytes, bytes] = field(default_factory=dict)
    position: int = 0
    target: int = 0
    serving: bool = False
    assigned_at: float = 0.0
    caught_up_at: float | None = None
    progress_logged_at: float = 0.0
    replayed: int = 0
    invalid: int = 0

    @property
    def caught_up(self) -> bool:
        return self.serving and self.position >= self.target


# A value that ends exactly in ``,"email":"<key>"}`` (what kstate's writer stores:
# compact JSON, name first) keeps only what comes before that tail, which repeats
# the key; the read puts the same bytes back. The top bit of the stored offset says
# so. About 37 bytes of ~220 an entry at a million users.
_TAIL_FLAG = 1 << 63
_OFFSET_MASK = _TAIL_FLAG - 1
_EMAIL = b',"email":"'


def _pack(key: bytes, offset: int, value: bytes) -> bytes:
    n = len(_EMAIL) + len(key) + 2  # the tail: ,"email":"<key>"}
    if len(value) > n and value[-n:] == _EMAIL + key + b'"}':
        return (offset | _TAIL_FLAG).to_bytes(8, "big") + value[:-n]
    return offset.to_bytes(8, "big") + value


def _unpack(key: bytes, packed: bytes) -> tuple[bytes, int]:
    head = int.from_bytes(packed[:8], "big")
    if head & _TAIL_FLAG:
        return b"".join((packed[8:], _EMAIL, key, b'"}')), head & _OFFSET_MASK
    return packed[8:], head


def lookup(part: Partition, key: bytes) -> tuple[bytes, int] | None:
    """``key``'s value and offset in ``part``, whatever its serving state."""
    packed = part.data.get(key)
    return None if packed is None else _unpack(key, packed)


class StateTable:
    """Partitions this node holds, and the rules for changing them. Every change
    method returns the partitions it changed, so the caller can wake their waiters."""

    def __init__(self, *, quiet: bool = False) -> None:
        # quiet: no per-partition log lines (the standby's copy: actors/standby.py)
        self.quiet = quiet
        self.partitions: dict[int, Partition] = {}
        self.epoch = 0
        self.stale_batches = 0
        # Read from the bridge's asyncio thread (assignor metadata): replaced, never
        # mutated, so that thread never iterates a dict trio is changing.
        self.held_snapshot: frozenset[int] = frozenset()

    # -- reads ---------------------------------------------------------------
    def get(self, partition: int, key: bytes) -> tuple[bytes, int] | None:
        """The value and offset of ``key``; the caller has checked the gate."""
        part = self.partitions.get(partition)
        if part is None or not part.serving:
            raise NotServing(partition)
        return lookup(part, key)

    def get_fenced(self, partition: int, key: bytes, end_offset: int
                   ) -> tuple[bytes, int] | None:
        """Read ``key`` of a held partition, served or not, if everything below
        ``end_offset`` (the log's end, asked after the read arrived) is applied.
        Raises NotServing if it is not, or the partition is not held."""
        part = self.partitions.get(partition)
        if part is None or part.position < end_offset:
            raise NotServing(partition)
        return lookup(part, key)

    def invalid_total(self) -> int:
        return sum(p.invalid for p in self.partitions.values())

    # -- changes -------------------------------------------------------------
    def apply(self, batch: Batch) -> set[int]:
        """Apply a fetched batch; returns the partitions whose position moved."""
        moved: set[int] = set()
        if batch.epoch != self.epoch:
            self.stale_batches += 1
            return moved
        for pid, records in batch.records.items():
            part = self.partitions.get(pid)
            if part is not None and part.serving and self._apply_records(pid, part, records):
                moved.add(pid)
        for pid, position in batch.positions.items():
            part = self.partitions.get(pid)
            if part is not None and part.serving and position > part.position:
                self._move(pid, part, position)
                moved.add(pid)
        return moved

    def _apply_records(self, pid: int, part: Partition, records: Iterable[Record]) -> bool:
        data = part.data
        applied = 0
        position = part.position
        for rec in records:
            if rec.offset < position:
                continue  # already applied (re-fetched after a seek)
            position = rec.offset + 1
            key, value = rec.key, rec.value
            if key is None:
                self._invalid(pid, part, rec, "record has no key")
                continue
            if value is None:
                data.pop(key, None)
            else:
                why = validate_record(key, value)
                if why is not None:
                    self._invalid(pid, part, rec, why)
                    continue
                data[key] = _pack(key, rec.offset, value)
            applied += 1
        part.replayed += applied
        if position > part.position:
            self._move(pid, part, position)
            return True
        return False

    def _invalid(self, pid: int, part: Partition, rec: Record, why: str) -> None:
        part.invalid += 1
        if not self.quiet and (part.invalid == 1 or part.invalid % 1000 == 0):
            log.warning("event=invalid_record partition=%d offset=%d reason=%r skipped_total=%d",
                        pid, rec.offset, why, part.invalid)

    def _move(self, pid: int, part: Partition, position: int) -> None:
        part.position = position
        if part.caught_up and part.caught_up_at is None:
            part.caught_up_at = time.monotonic()
            if not self.quiet:
                log.info("event=caught_up partition=%d position=%d records=%d seconds=%.3f",
                         pid, position, part.replayed, part.caught_up_at - part.assigned_at)
        elif part.serving and not part.caught_up and not self.quiet:
            now = time.monotonic()
            if now - part.progress_logged_at >= PROGRESS_EVERY:
                part.progress_logged_at = now
                log.info("event=catching_up partition=%d position=%d target=%d percent=%.1f "
                         "records_per_s=%.0f", pid, position, part.target,
                         100.0 * position / max(1, part.target),
                         part.replayed / max(now - part.assigned_at, 1e-6))

    def revoke(self, msg: Revoke) -> set[int]:
        """Stop serving at once; keep the data until the next assignment says.
        Returns the partitions that stopped serving."""
        self.epoch = msg.epoch
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
        whose state changed (dropped ones included)."""
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
            part.target = msg.end_offsets.get(pid, 0)
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
