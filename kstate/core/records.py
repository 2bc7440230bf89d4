"""The one rule for every record of the topic: what it does to a partition's state.

Any producer may write the topic (kstate nodes, the seed's Go app, Java or librdkafka
clients, other tools), so a record may be anything. The rule is a pure function of the
record and of the partition's state before it, and the state owner applies it the same
way live and on replay (docs/design.md, "Records"):

- a record without a key changes nothing (counted: ``no_key``);
- an owner-epoch *marker* (key ``kstate:epoch:<partition>:<epoch>``, header
  ``kstate-epoch``, written by a node when it takes a partition over or after a write
  of unknown fate) raises the partition's epoch, by at most what one claim can
  (``epoch_reach``); a marker beyond is a malformed kstate record (it deletes its key,
  which no user has, and is counted);
- a key that is not an email, a value that is not a user for that key (not JSON, not an
  object, name/email not strings, email not the key), or a malformed kstate header
  **deletes that key** (counted with the reason): the key's state is then decided by
  its latest record alone, like every other record, so compaction (which keeps exactly
  the latest record of each key) cannot make a node that replays disagree;
- a record in a partition other than its key's (Kafka's default partitioner) changes
  nothing (counted: ``wrong_partition``): no read looks for the key there;
- a null value or a **0-byte value** is a delete (the seed's Go app deletes with 0
  bytes); kstate itself writes null tombstones;
- a kstate record written under an owner epoch older than the partition's epoch is
  **fenced**: a zombie (an old owner cut off, paused, or with a write stuck in its
  producer) cannot land over a newer owner's acknowledged writes (counted: ``fenced``);
- a conditional kstate write (header ``kstate-expect``: the version it expects, or
  ``*``) whose key has another version changes nothing (counted: ``expect_failed``):
  If-Match is decided again when the record is applied, in log order. The owner checked
  it before writing; at apply time a missing key does not fail it (after compaction a
  replay may not see the record that made the key exist), so a key another producer
  deleted in between is written anyway;
- anything else is an upsert; its version is its offset, or the ``kstate-version`` a
  repair record carries (a repair restates a key's current value and version after a
  fenced or failed record became that key's latest record: see Ignored.shadows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kstate.core.messages import Record
from kstate.core.partitioner import partition_for
from kstate.core.users import InvalidUser, parse_email, validate_record

EPOCH_HEADER = "kstate-epoch"  # the owner epoch a kstate record was written under
EXPECT_HEADER = "kstate-expect"  # If-Match, checked at apply: "<version>" or "*"
VERSION_HEADER = "kstate-version"  # a repair: the version it restates
MARKER_PREFIX = b"kstate:epoch:"  # kstate:epoch:<partition>:<epoch>
EXPECT_EXISTS = "*"

# An owner epoch is block * EPOCH_STRIDE + n: n counts the markers an owner wrote (one
# when it claims the partition, one after each write of unknown fate); see claim_epoch.
EPOCH_STRIDE = 1 << 20
MAX_GENERATION = (1 << 31) - 1  # a Kafka group generation is an int32
MAX_EPOCH = (1 << 63) - 1  # an epoch is an int64, like every number in a kstate header


def claim_epoch(seen: int, generation: int) -> int:
    """The epoch a node claims a partition with, once caught up, after an assignment in
    group ``generation``, when the highest epoch it has applied there is ``seen``: the
    block of ``seen`` (0 if none) + ``generation``. Claims are ordered like the assignments
    they follow: a later assignment has a higher generation and, read after the earlier
    one, has seen at least as much of the partition; so a successor's block is always
    above an old owner's, whose markers (its claim, its bumps) stay in its own block.
    Not the generation alone: a group's generations start over when Kafka forgets the
    group (all members gone for a while), and its old markers are still in the topic."""
    return (max(seen, 0) // EPOCH_STRIDE + generation) * EPOCH_STRIDE


def epoch_reach(epoch: int) -> int:
    """The highest marker epoch the rule takes in a partition whose epoch is ``epoch``
    (-1: no marker yet): the last epoch of the highest block a claim from there can
    open (any generation Kafka can give), so every claim and the bumps after it fit;
    never past MAX_EPOCH.

    Not a fixed bound: whatever the highest epoch a marker could set, a record of
    another producer could set it, and no claim could go above it again (the partition
    would never be writable). Here a marker raises the epoch by at most one claim's
    reach, so it takes thousands of crafted markers in a row, or more claims than any
    group makes, to get near MAX_EPOCH; a node whose claim or bump would pass the
    reach writes no marker (StateTable.bump) and does not write the partition."""
    return min(MAX_EPOCH, claim_epoch(epoch, MAX_GENERATION + 1) - 1)


@dataclass(frozen=True, slots=True)
class Upsert:
    key: bytes
    value: bytes
    version: int


@dataclass(frozen=True, slots=True)
class Delete:
    """The key is gone: a tombstone or 0-byte value (``reason`` None), or a record
    kstate cannot use (``reason`` says why)."""

    key: bytes
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Marker:
    """The partition's owner epoch is at least ``epoch`` from here on."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """Nothing changes. ``shadows``: the record, now the latest of its key in the log,
    hides the key's real state from compaction (a fenced or failed kstate write): the
    owner restates that state with a repair record."""

    key: bytes | None
    reason: str  # no_key | wrong_partition | fenced | expect_failed
    shadows: bool = False


Decision = Upsert | Delete | Marker | Ignored
# key -> its current version, or None if absent
VersionOf = Callable[[bytes], int | None]


def marker_key(partition: int, epoch: int) -> bytes:
    return MARKER_PREFIX + f"{partition}:{epoch}".encode()


def marker(partition: int, epoch: int) -> tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]:
    """(key, value, headers) of the marker that raises ``partition``'s epoch to
    ``epoch``. A 0-byte value: the seed's app reads it as the delete of a key that
    never existed; compaction keeps it (only null values are removed)."""
    return marker_key(partition, epoch), b"", ((EPOCH_HEADER, str(epoch).encode()),)


def _int(raw: bytes) -> int | None:
    """A kstate header's number: ASCII digits of an int64 (a stored version is packed
    with its top bit as a flag, so 2**63 and above is malformed, not a version)."""
    if not raw.isdigit() or len(raw) > 19:
        return None
    n = int(raw)
    return n if n < 1 << 63 else None


def _marked(key: bytes, raw_epoch: bytes, partition: int) -> int | None:
    """The epoch a record with ``key`` and epoch header ``raw_epoch`` marks in
    ``partition``, if it is a well-formed marker of it: its key names the partition and
    the epoch its header carries."""
    marked = _int(raw_epoch)
    return marked if marked is not None and key == marker_key(partition, marked) else None


def marker_epoch(rec: Record, partition: int) -> int | None:
    """The epoch ``rec`` marks if it is a well-formed owner-epoch marker of
    ``partition``, whether or not the rule takes that epoch (:func:`decide`: one past
    ``epoch_reach`` of the partition's epoch is a malformed record); else None. Such a
    record changes no user, whatever the partition's epoch: its key is no email."""
    key = rec.key
    if key is None or not rec.headers or not key.startswith(MARKER_PREFIX):
        return None
    raw_epoch = _kstate_headers(rec)[0]
    return None if raw_epoch is None else _marked(key, raw_epoch, partition)


def written_by_kstate(rec: Record) -> bool:
    """Whether ``rec`` carries an owner epoch, as every record a kstate node writes
    does (its writes, repairs and markers): the records whose fate a node's writer
    may wait for. Other producers' records, headers or not, never are."""
    return any(name == EPOCH_HEADER for name, _ in rec.headers)


def _kstate_headers(rec: Record) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(epoch, expect, version) headers of a record; the last of each name wins, as in
    Kafka's ``Headers.lastHeader``."""
    epoch = expect = version = None
    for name, value in rec.headers:
        raw = b"" if value is None else value  # a null value: as malformed as b""
        if name == EPOCH_HEADER:
            epoch = raw
        elif name == EXPECT_HEADER:
            expect = raw
        elif name == VERSION_HEADER:
            version = raw
    return epoch, expect, version


# Printable ASCII without space: what almost every email key is made of.
_ASCII_EMAIL = bytes(range(0x21, 0x7F))


def _email_key(key: bytes) -> bool:
    """Whether ``key`` is an email exactly as kstate stores one (parse_email's rules)."""
    if key.isascii() and not key.translate(None, _ASCII_EMAIL):
        at = key.find(b"@")  # the common case, at C speed: one '@' with text around it
        return 0 < at < len(key) - 1 and key.find(b"@", at + 1) < 0 and len(key) <= 254
    try:
        text = key.decode("utf-8")
        return parse_email(text) == text
    except (UnicodeDecodeError, InvalidUser):
        return False


def decide(rec: Record, partition: int, num_partitions: int, epoch: int,
           version_of: VersionOf) -> Decision:
    """What ``rec`` does to ``partition`` whose owner epoch is ``epoch`` and whose keys
    have the versions ``version_of`` answers."""
    key = rec.key
    if key is None:
        return Ignored(None, "no_key")
    raw_epoch = raw_expect = raw_version = None
    if rec.headers:  # most records of other producers have none: skip the look
        raw_epoch, raw_expect, raw_version = _kstate_headers(rec)
        if raw_epoch is not None and key.startswith(MARKER_PREFIX):
            marked = _marked(key, raw_epoch, partition)
            if marked is not None:
                if marked > epoch_reach(epoch):
                    return Delete(key, "malformed kstate header")
                return Marker(marked)
    if not _email_key(key):
        return Delete(key, "key is not an email")
    # A record a kstate node wrote (it carries an owner epoch) is in its key's
    # partition: the node's router put it there. Any other record is checked (murmur2
    # costs microseconds a record, which a replay of a million records feels).
    if raw_epoch is None and partition_for(key, num_partitions) != partition:
        return Ignored(key, "wrong_partition")
    if raw_epoch is not None:
        written = _int(raw_epoch)
        restated = None if raw_version is None else _int(raw_version)
        if written is None or (raw_version is not None and restated is None):
            return Delete(key, "malformed kstate header")
        if written < epoch:
            return Ignored(key, "fenced", shadows=True)
    else:
        restated = None if raw_version is None else _int(raw_version)
        if raw_version is not None and restated is None:
            return Delete(key, "malformed kstate header")
    if raw_expect is not None and raw_expect != b"*":
        # The owner checked the condition before it wrote (a missing key, or "*" on
        # one, never gets this far). Here it fails only if the key has another version:
        # after compaction a replay may no longer see the record that made the key
        # exist, so absence cannot count against the record.
        expected = _int(raw_expect)
        if expected is None:
            return Delete(key, "malformed kstate header")
        current = version_of(key)
        if current is not None and current != expected:
            return Ignored(key, "expect_failed", shadows=True)
    value = rec.value
    if not value:  # null: a tombstone; b"": the seed app's delete
        return Delete(key)
    why = validate_record(key, value)
    if why is not None:
        return Delete(key, why)
    return Upsert(key, value, rec.offset if restated is None else restated)
