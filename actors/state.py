"""State owner: the only holder of the users.

:class:`StateTable` is the plain synchronous core (unit tests drive it without trio
channels): per partition a dict ``key -> (value bytes, offset)``, the consumer's
position, the catch-up target and whether it serves. :func:`run` is the actor: a thin
loop that applies the messages of its inbox to the table. Readers never message the
actor; they use :class:`StateHandle`, which only reads and waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import assert_never

import orjson
import trio

from actors.messages import Assign, Batch, Record, Revoke, StateIn

log = logging.getLogger(__name__)

PROGRESS_EVERY = 5.0  # seconds between two catch-up progress lines of one partition


class NotServing(Exception):
    """The partition is not (or no longer) served by this node."""


@dataclass(slots=True)
class Partition:
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
    # Set when the partition catches up or stops serving; replaced on every assignment.
    gate: trio.Event = field(default_factory=trio.Event)
    # Set (and replaced) whenever the position moves or serving stops.
    moved: trio.Event = field(default_factory=trio.Event)

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


def _lookup(part: Partition, key: bytes) -> tuple[bytes, int] | None:
    packed = part.data.get(key)
    return None if packed is None else _unpack(key, packed)


def validate_record(key: bytes, value: bytes) -> str | None:
    """Why this upsert is invalid, or None. A value must be a JSON object with string
    ``name`` and ``email``, and ``email`` must equal the key."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "value is not JSON"
    if not isinstance(doc, dict):
        return "value is not a JSON object"
    name, email = doc.get("name"), doc.get("email")
    if not isinstance(name, str) or not isinstance(email, str):
        return "name and email must be strings"
    if email.encode() != key:
        return "key does not match email"
    return None


class StateTable:
    """Partitions this node holds, and the rules for changing them."""

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
        return _lookup(part, key)

    def held(self) -> frozenset[int]:
        return self.held_snapshot

    def invalid_total(self) -> int:
        return sum(p.invalid for p in self.partitions.values())

    # -- changes -------------------------------------------------------------
    def apply(self, batch: Batch) -> int:
        """Apply a fetched batch; returns how many records changed state."""
        if batch.epoch != self.epoch:
            self.stale_batches += 1
            return 0
        applied = 0
        for pid, records in batch.records.items():
            part = self.partitions.get(pid)
            if part is None or not part.serving:
                continue
            applied += self._apply_records(pid, part, records)
        for pid, position in batch.positions.items():
            part = self.partitions.get(pid)
            if part is not None and part.serving and position > part.position:
                self._move(pid, part, position)
        return applied

    def _apply_records(self, pid: int, part: Partition, records: Iterable[Record]) -> int:
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
        return applied

    def _invalid(self, pid: int, part: Partition, rec: Record, why: str) -> None:
        part.invalid += 1
        if not self.quiet and (part.invalid == 1 or part.invalid % 1000 == 0):
            log.warning("event=invalid_record partition=%d offset=%d reason=%r skipped_total=%d",
                        pid, rec.offset, why, part.invalid)

    def _move(self, pid: int, part: Partition, position: int) -> None:
        part.position = position
        part.moved.set()
        part.moved = trio.Event()
        if part.caught_up and not part.gate.is_set():
            part.caught_up_at = time.monotonic()
            part.gate.set()
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

    def revoke(self, msg: Revoke) -> None:
        """Stop serving at once; keep the data until the next assignment says."""
        self.epoch = msg.epoch
        for pid in msg.partitions:
            part = self.partitions.get(pid)
            if part is None:
                continue
            part.serving = False
            part.gate.set()  # wake readers: they re-check and see NotServing
            part.moved.set()
            part.moved = trio.Event()

    def assign(self, msg: Assign) -> dict[int, int | None]:
        """Take the new assignment; answer where the consumer must seek."""
        self.epoch = msg.epoch
        now = time.monotonic()
        for pid in set(self.partitions) - msg.partitions:
            dropped = self.partitions.pop(pid)
            dropped.serving = False
            dropped.gate.set()
            dropped.moved.set()
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
            part.gate = trio.Event()
            part.caught_up_at = None
            if part.caught_up:
                part.caught_up_at = now
                part.gate.set()
            if not self.quiet:
                log.info("event=partition_assigned partition=%d mode=%s position=%d "
                         "target=%d", pid, "rebuild" if seeks[pid] is None else "keep",
                         part.position, part.target)
        return seeks


class StateHandle:
    """What other actors may do with the state: read and wait. Never mutate."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    @property
    def table(self) -> StateTable:
        return self._table

    def held(self) -> frozenset[int]:
        """Partitions held in memory; safe to call from the bridge's thread."""
        return self._table.held_snapshot

    def is_serving(self, partition: int) -> bool:
        part = self._table.partitions.get(partition)
        return part is not None and part.serving

    def is_caught_up(self, partition: int) -> bool:
        part = self._table.partitions.get(partition)
        return part is not None and part.caught_up

    def get_nowait(self, partition: int, key: bytes) -> tuple[bytes, int] | None:
        """Read ``key``; the caller has passed :meth:`wait_caught_up`. Raises NotServing."""
        return self._table.get(partition, key)

    def holds(self, partition: int) -> bool:
        """Whether this node still holds ``partition``'s data, served or not (revoked
        partitions are kept until the next assignment says where they go)."""
        return partition in self._table.partitions

    def get_fenced(self, partition: int, key: bytes, end_offset: int
                   ) -> tuple[bytes, int] | None:
        """Read ``key`` of a held partition, served or not, if this node has applied
        everything below ``end_offset`` (the log's end, asked after the read arrived:
        see RouterHandle.read). Raises NotServing if it has not, or no longer holds it."""
        part = self._table.partitions.get(partition)
        if part is None or part.position < end_offset:
            raise NotServing(partition)
        return _lookup(part, key)

    async def wait_caught_up(self, partition: int) -> None:
        """Return once ``partition`` is served and caught up; raise NotServing if it is
        not (or stops being) served by this node."""
        while True:
            part = self._table.partitions.get(partition)
            if part is None or not part.serving:
                raise NotServing(partition)
            if part.caught_up:
                return
            await part.gate.wait()

    async def wait_applied(self, partition: int, offset: int) -> None:
        """Return once the record at ``offset`` is applied; raise NotServing if the
        partition is revoked first."""
        while True:
            part = self._table.partitions.get(partition)
            if part is None or not part.serving:
                raise NotServing(partition)
            if part.position > offset:
                return
            await part.moved.wait()

    def statistics(self) -> dict[int, dict[str, float | int | bool | None]]:
        out: dict[int, dict[str, float | int | bool | None]] = {}
        for pid, part in sorted(self._table.partitions.items()):
            out[pid] = {
                "serving": part.serving,
                "caught_up": part.caught_up,
                "position": part.position,
                "target": part.target,
                "lag": max(0, part.target - part.position),
                "keys": len(part.data),
                "replayed": part.replayed,
                "invalid": part.invalid,
                "catchup_seconds": (None if part.caught_up_at is None
                                    else round(part.caught_up_at - part.assigned_at, 3)),
            }
        return out


async def run(*, inbox: trio.MemoryReceiveChannel[StateIn],
              task_status: trio.TaskStatus[StateHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """The state owner. Owns ``inbox`` (returns when it closes)."""
    table = StateTable()
    task_status.started(StateHandle(table))
    async with inbox:
        async for msg in inbox:
            match msg:
                case Batch():
                    table.apply(msg)
                case Revoke():
                    table.revoke(msg)
                    msg.reply.send(None)
                case Assign():
                    msg.reply.send(table.assign(msg))
                case _:
                    assert_never(msg)
