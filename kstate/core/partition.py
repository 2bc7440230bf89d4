"""One partition a node holds (:class:`Partition`): its data, position, catch-up target,
epochs and counters, and how a key's value and version are stored in its ``data``
(:func:`pack`). What the state table (kstate/core/table.py) changes; the rules that
change it live there and in kstate/core/records.py."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from kstate.core.messages import Record

# Reasons a record did not apply as written that are about the record itself (what
# /readyz calls invalid_records): the others are wrong_partition, fenced, expect_failed.
UNUSABLE = "unusable"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the rule did with a record this node wrote (kstate/core/records.py)."""

    applied: bool  # False: fenced or its condition failed
    reason: str | None  # None when applied; "fenced" | "expect_failed" otherwise
    created: bool  # applied and the key did not exist before
    version: int  # the key's version after it (-1: absent)


@dataclass(slots=True)
class Partition:
    """One held partition: its data, position, catch-up target, epochs and counters."""
    # key -> 8-byte big-endian version + value bytes: one object per entry instead of a
    # tuple, an int and the value (about 300 -> 200 bytes an entry; see pack).
    data: dict[bytes, bytes] = field(default_factory=dict)
    position: int = 0
    # The catch-up target; -1 while Kafka could not say it (the partition had no
    # leader when it was assigned: no gate opens before it is known).
    target: int = 0
    serving: bool = False
    assigned_at: float = 0.0
    caught_up_at: float | None = None
    progress_logged_at: float = 0.0
    replayed: int = 0
    # The highest owner epoch a marker raised the partition to, and this node's own
    # (-1: none). A partition is writable here once its epoch is ours; a higher one
    # means a newer owner took it over: this node no longer serves it.
    epoch: int = -1
    own_epoch: int = -1
    generation: int = -1  # the group generation of the assignment (kstate/core/records.py)
    # Records that did not apply as written, by reason (UNUSABLE, wrong_partition,
    # fenced, expect_failed, no_key), and the unusable ones by their own reason.
    counts: dict[str, int] = field(default_factory=dict)
    unusable: dict[str, int] = field(default_factory=dict)
    # key -> offset of an ignored record that is now the key's latest record: the
    # owner restates the key (a repair), else compaction could drop its real state.
    shadowed: dict[bytes, int] = field(default_factory=dict)
    # offset -> what became of a record written by this node (its writer waits on it)
    outcomes: OrderedDict[int, Outcome] = field(default_factory=OrderedDict)
    halted: str | None = None  # why the partition stopped at its position, if it did
    # offset -> a record this node produced past the position: applied as soon as the
    # records before it are (writes to one partition are acknowledged together, and
    # their writers may come back in any order; the fetch need not bring them back)
    own_ahead: dict[int, Record] = field(default_factory=dict)
    # A static member's process may be replacing a live incarnation of itself, which
    # the coordinator never asked to revoke (docs/design.md, "Static membership: a
    # replaced incarnation"): no claim before ``claim_after`` (time.monotonic(), when
    # that incarnation's read lease has surely ended), and no read until this node's
    # own marker is applied (``await_marker``): what it acknowledged is then applied.
    claim_after: float = 0.0
    await_marker: bool = False
    # No epoch left to claim or bump to (records.epoch_reach): logged once.
    epochs_exhausted: bool = False

    @property
    def superseded(self) -> bool:
        return self.own_epoch >= 0 and self.epoch > self.own_epoch

    @property
    def live(self) -> bool:
        """Served by this node now: assigned, not taken over, not halted."""
        return self.serving and not self.superseded and self.halted is None

    @property
    def replayed_to_target(self) -> bool:
        """Served, and applied up to the target read after the assignment."""
        return self.live and 0 <= self.target <= self.position

    @property
    def caught_up(self) -> bool:
        """The read gate: replayed to the target, and this node's own marker applied
        if the assignment asked for it (``await_marker``)."""
        return self.replayed_to_target and not self.await_marker

    @property
    def writable(self) -> bool:
        """Caught up, and this node's latest marker is the partition's epoch."""
        return self.caught_up and self.own_epoch >= 0 and self.epoch == self.own_epoch

    @property
    def invalid(self) -> int:
        return self.counts.get(UNUSABLE, 0)


# A value that ends exactly in ``,"email":"<key>"}`` (what kstate's writer stores:
# compact JSON, name first) keeps only what comes before that tail, which repeats
# the key; the read puts the same bytes back. The top bit of the stored offset says
# so. About 37 bytes of ~220 an entry at a million users.
_TAIL_FLAG = 1 << 63
_OFFSET_MASK = _TAIL_FLAG - 1
_EMAIL = b',"email":"'


def pack(key: bytes, offset: int, value: bytes) -> bytes:
    n = len(_EMAIL) + len(key) + 2  # the tail: ,"email":"<key>"}
    if len(value) > n and value[-n:] == _EMAIL + key + b'"}':
        return (offset | _TAIL_FLAG).to_bytes(8, "big") + value[:-n]
    return offset.to_bytes(8, "big") + value


def unpack(key: bytes, packed: bytes) -> tuple[bytes, int]:
    head = int.from_bytes(packed[:8], "big")
    if head & _TAIL_FLAG:
        return b"".join((packed[8:], _EMAIL, key, b'"}')), head & _OFFSET_MASK
    return packed[8:], head


def lookup(part: Partition, key: bytes) -> tuple[bytes, int] | None:
    """``key``'s value and version in ``part``, whatever its serving state."""
    packed = part.data.get(key)
    return None if packed is None else unpack(key, packed)


def stored_version(part: Partition, key: bytes) -> int | None:
    packed = part.data.get(key)
    return None if packed is None else int.from_bytes(packed[:8], "big") & _OFFSET_MASK
