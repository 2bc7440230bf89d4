"""The record rule (kstate/core/records.py) as a feed reader applies it: what the feed
streams for each record of the topic.

- an upsert streams the value (its bytes spliced, not re-encoded);
- a delete streams ``"value": null``: a null tombstone, a 0-byte value, or a record
  kstate cannot use (it deletes its key, as the state owner does);
- a marker, a record in the wrong partition, a zombie's fenced write or a conditional
  write whose condition failed stream nothing: they change no state. A marker is any
  record whose key and ``kstate-epoch`` header make it one of its partition
  (records.marker_epoch), also one past what one claim reaches from the epoch the
  reader knows, which the rule takes for a malformed record: its key is no user's.

A feed reader holds no state, so it decides the last two with what it has read
(docs/design.md, "Records"): the owner epoch of each partition, from the markers it
read (a lower bound of the owner's unless it read the partition from its beginning:
it takes only markers within reach of the epoch it knows, which the owner takes too),
and, if it read the topic from its beginning (``exact``), the versions of the
``RECENT_KEYS`` keys it saw change last. Where it does not know, it streams (a condition
is taken to hold, an unknown epoch fences nothing): the state owner repairs every record
it ignored that became its key's latest (restates the key's value and version), and the
feed streams that repair too, so **the latest change the feed streams for a key is
always the key's state**. Precisely:

- a reader that read the topic from its beginning decides exactly as the state owner
  while the topic has at most ``RECENT_KEYS`` keys; past that, a conditional write of a
  key it forgot is taken as applied;
- any other reader (the live feed starts at the log's end; a subscription resumed from
  offsets) does not know epochs older than the markers it read, nor versions: it may
  stream a zombie's late write or a conditional write whose condition failed, each
  followed by the owner's repair.
Never the other way round: a record the owner applies is always streamed.
"""

from __future__ import annotations

from collections import OrderedDict

import orjson

from kstate.core.messages import Record
from kstate.core.records import (
    EXPECT_HEADER,
    Delete,
    Ignored,
    Marker,
    Upsert,
    decide,
    marker_epoch,
)

# Keys whose latest version a feed reader remembers (key -> version, None: deleted), most
# recently changed last: about 100 bytes each, a few MB a reader.
RECENT_KEYS = 50_000


def _header(rec: Record, name: str) -> bytes | None:
    found = None
    for k, v in rec.headers:
        if k == name:
            found = v
    return found


def _assumed(rec: Record) -> int | None:
    """The version that makes ``rec``'s condition hold: what a reader that does not know
    the key's version assumes (a digit string as it is, ``*``: any version)."""
    raw = _header(rec, EXPECT_HEADER)
    if raw is None:
        return None
    return int(raw) if raw.isdigit() and len(raw) <= 19 else 0


class FeedRule:
    """One feed reader's view of the rule: owner epochs per partition and, when
    ``exact`` (it reads every partition from its beginning), recent versions. Counts
    each record at most once, as the state owner does (kstate/core/table.py): records
    kstate cannot use, and records that change nothing."""

    def __init__(self, num_partitions: int, *, exact: bool = False) -> None:
        self.num_partitions = num_partitions
        self.exact = exact
        self.epochs: dict[int, int] = {}
        self.recent: OrderedDict[bytes, int | None] = OrderedDict()
        # exact and nothing forgotten yet: a key not in ``recent`` has never existed
        self.complete = exact
        # Records kstate cannot use (the owner's invalid records): streamed as deletes
        # of their key, but for a record with no key or one no user can have (not UTF-8)
        self.unusable = 0
        self.skipped = 0  # records that change nothing (markers, ignored), not streamed

    def _remember(self, key: bytes, version: int | None, guessed: bool) -> None:
        """Keep ``key``'s version, if known for sure: a version it could have wrong
        would make it skip a write the owner applies (never repaired)."""
        if not self.exact:
            return
        recent = self.recent
        if guessed:
            recent.pop(key, None)
            return
        recent[key] = version
        recent.move_to_end(key)
        if len(recent) > RECENT_KEYS:
            recent.popitem(last=False)
            self.complete = False

    def change(self, partition: int, rec: Record) -> str | None:
        """The feed's JSON text for ``rec`` of ``partition``, or None when it changes
        nothing. Every record of the partition must pass here, in order (markers and
        other keys' records included), even for a subscriber that filters by key."""
        recent = self.recent
        guessed = False

        def version_of(key: bytes) -> int | None:
            nonlocal guessed
            if key in recent:
                return recent[key]
            if self.complete:
                return None  # read from the beginning, nothing forgotten: no such key
            guessed = True
            return _assumed(rec)

        decision = decide(rec, partition, self.num_partitions,
                          self.epochs.get(partition, -1), version_of)
        if type(decision) is Upsert:
            self._remember(decision.key, decision.version, guessed)
            value = decision.value
        elif type(decision) is Delete:
            if decision.reason is not None and marker_epoch(rec, partition) is not None:
                # A marker past what one claim reaches from the epoch this reader knows:
                # its key is no user's, so nothing to stream. Only a reader that knows
                # the partition's epoch (it read it from the beginning) knows the owner
                # took it for malformed, and counts it so; another may have missed the
                # markers that let the owner take it (the epoch it knows is a lower
                # bound of the owner's), and keeps its epoch: raising it to a marker the
                # owner refused would fence writes the owner applies.
                if self.exact:
                    self.unusable += 1
                else:
                    self.skipped += 1
                return None
            self._remember(decision.key, None, guessed)
            if decision.reason is not None:
                self.unusable += 1
            value = b"null"
        else:
            if type(decision) is Marker:
                self.epochs[partition] = max(decision.epoch, self.epochs.get(partition, -1))
                self.skipped += 1
            elif type(decision) is Ignored and decision.reason == "no_key":
                self.unusable += 1  # as the owner counts it: "record has no key"
            else:
                self.skipped += 1
            return None
        try:
            key = orjson.dumps(decision.key.decode())
        except UnicodeDecodeError:
            # Not a key any user can have (never upserted): the rule deleted it as
            # "key is not an email", counted above; nothing to stream.
            return None
        return (_CHANGE_HEAD + key + b',"value":' + value + _PARTITION
                + str(partition).encode() + _OFFSET + str(rec.offset).encode()
                + b"}").decode()


_CHANGE_HEAD = b'{"key":'
_PARTITION = b',"partition":'
_OFFSET = b',"offset":'


def change_position(text: str) -> tuple[int, int] | None:
    """(partition, offset) of a change :meth:`FeedRule.change` made, read from its end,
    where they follow the value; None for any other message. Not parsed as JSON: the
    value, spliced in as it is, may nest as deep as the parser takes (the rule applied
    it), and the change nests one level deeper."""
    if not text.startswith(_CHANGE_HEAD.decode()):
        return None
    at = text.rfind(_PARTITION.decode())  # the last: the value may have such a field
    if at < 0:
        return None
    pid, sep, offset = text[at + len(_PARTITION):-1].partition(_OFFSET.decode())
    if not sep or not pid.isdigit() or not offset.isdigit():
        return None
    return int(pid), int(offset)
