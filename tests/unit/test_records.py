"""The one rule for records (kstate/core/records.py), proved with random logs: the state
built by applying a log live equals the state built by replaying it from the start, and
by replaying it after compaction (which keeps only each key's latest record), whatever
the log holds: kstate writes of the current or an old owner epoch (a zombie),
conditional writes that hold or not, markers, other producers' valid, invalid, 0-byte
and null records, records in the wrong partition. Repairs are appended as the owner's
writer would (actors/writer.py), possibly after other records."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.replies import ReplyBox
from kstate.core.messages import Assign, Batch, Record
from kstate.core.partition import lookup
from kstate.core.partitioner import partition_for
from kstate.core.records import (
    EPOCH_HEADER,
    EPOCH_STRIDE,
    EXPECT_HEADER,
    MAX_EPOCH,
    MAX_GENERATION,
    VERSION_HEADER,
    Delete,
    Ignored,
    Marker,
    Upsert,
    claim_epoch,
    decide,
    epoch_reach,
    marker,
)
from kstate.core.table import StateTable

N = 4  # partitions of the topic
P = 0  # the partition under test


def _keys(partition: int, count: int) -> list[bytes]:
    out, i = [], 0
    while len(out) < count:
        key = f"u{i}@x.io".encode()
        if partition_for(key, N) == partition:
            out.append(key)
        i += 1
    return out


KEYS = _keys(P, 3)
ELSEWHERE = _keys(1, 1)[0]  # a key whose partition is another one


def value(key: bytes, name: str) -> bytes:
    return orjson.dumps({"name": name, "email": key.decode()})


class Log:
    """A partition's log, written as the test says, applied live record by record; the
    model owner appends a repair for each key an ignored record shadows, ``lag``
    records later."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.live = _table()
        self.pending: list[tuple[int, bytes]] = []  # (due at length, key)

    @property
    def part(self):
        return self.live.partitions[P]

    def append(self, key: bytes | None, val: bytes | None,
               headers: tuple[tuple[str, bytes], ...] = (), lag: int = 0) -> None:
        rec = Record(len(self.records), key, val, headers)
        self.records.append(rec)
        self.live.apply(Batch(0, {P: [rec]}, {P: rec.offset + 1}))
        for shadowed in list(self.part.shadowed):
            if all(k != shadowed for _, k in self.pending):
                self.pending.append((len(self.records) + lag, shadowed))
        self._repairs(due=len(self.records))

    def _repairs(self, due: int) -> None:
        ready = [k for at, k in self.pending if at <= due]
        self.pending = [(at, k) for at, k in self.pending if at > due]
        for key in ready:
            if key not in self.part.shadowed:
                continue  # a later record of the key restated it already
            current = lookup(self.part, key)
            headers: list[tuple[str, bytes]] = [(EPOCH_HEADER, str(self.part.epoch).encode())]
            if current is not None:
                headers.append((VERSION_HEADER, str(current[1]).encode()))
            self.append(key, None if current is None else current[0], tuple(headers))

    def flush(self) -> None:
        while self.pending:
            self._repairs(due=10**9)

    def epoch(self) -> int:
        return self.part.epoch


def _table() -> StateTable:
    table = StateTable(N, quiet=True)
    table.assign(Assign(0, frozenset({P}), {P: 0}, ReplyBox()))
    return table


def replay(records: list[Record], chunks: list[int]) -> StateTable:
    table = _table()
    i = 0
    for size in chunks or [len(records)]:
        batch = records[i:i + size]
        if batch:
            table.apply(Batch(0, {P: batch}, {P: batch[-1].offset + 1}))
        i += size
    if i < len(records):
        rest = records[i:]
        table.apply(Batch(0, {P: rest}, {P: rest[-1].offset + 1}))
    return table


def compact(records: list[Record], drop_tombstones: bool) -> list[Record]:
    """What Kafka's cleaner may leave: each key's latest record (markers have keys of
    their own); a latest null tombstone may be gone too (after delete.retention.ms)."""
    latest = {rec.key: rec.offset for rec in records if rec.key is not None}
    kept = [rec for rec in records if rec.key is None or latest[rec.key] == rec.offset]
    if drop_tombstones:
        kept = [rec for rec in kept if rec.value is not None]
    return kept


def state_of(table: StateTable) -> dict[bytes, tuple[bytes, int]]:
    part = table.partitions[P]
    return {k: v for k in part.data if (v := lookup(part, k)) is not None}


key_s = st.sampled_from(KEYS)
name_s = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
op_s = st.one_of(
    st.tuples(st.just("write"), key_s, name_s, st.sampled_from(["now", "old"]),
              st.sampled_from([None, "*", "current", "stale"]), st.integers(0, 3)),
    st.tuples(st.just("delete"), key_s, st.sampled_from(["now", "old"]),
              st.sampled_from([None, "*", "current"])),
    st.tuples(st.just("foreign"), key_s, name_s),
    st.tuples(st.just("zero"), key_s),
    st.tuples(st.just("null"), key_s),
    st.tuples(st.just("invalid"), key_s, st.sampled_from(
        [b"not json", b"[1]", b'{"name":1,"email":"x"}', b'{"name":"n","email":"o@x.io"}',
         b"\xff\xfe"])),
    st.tuples(st.just("badkey"), st.sampled_from([b"no-at", b"two@@x", b" sp@x.io", b"\xff@x"])),
    st.tuples(st.just("elsewhere"), name_s),
    st.tuples(st.just("marker"), st.integers(-2, 3)),
    # another producer's marker, of any int64 epoch (most are past what one claim
    # reaches: malformed)
    st.tuples(st.just("farmarker"), st.integers(0, MAX_EPOCH)),
    # a marker at the top of what one claim reaches from the partition's epoch (a
    # foreign one, or a claim in a generation that high): taken, and past what a reader
    # that does not know the epoch can tell from a malformed one
    st.tuples(st.just("leap"), st.integers(0, 2)),
    st.tuples(st.just("badheader"), key_s),
    st.tuples(st.just("nokey")),
)


def _write(log: Log, op: tuple) -> None:
    kind = op[0]
    epoch = log.epoch()
    if kind in ("write", "delete"):
        key = op[1]
        written = epoch if op[2 if kind == "delete" else 3] == "now" else epoch - 1
        headers: list[tuple[str, bytes]] = [(EPOCH_HEADER, str(max(written, 0)).encode())]
        cond = op[3] if kind == "delete" else op[4]
        current = lookup(log.part, key)
        if cond == "*":
            headers.append((EXPECT_HEADER, b"*"))
        elif cond == "current":
            headers.append((EXPECT_HEADER, str(current[1] if current else 0).encode()))
        elif cond == "stale":
            headers.append((EXPECT_HEADER, b"999999"))
        val = value(key, op[2]) if kind == "write" else None
        log.append(key, val, tuple(headers), lag=op[5] if kind == "write" else 0)
    elif kind == "foreign":
        log.append(op[1], value(op[1], op[2]))
    elif kind == "zero":
        log.append(op[1], b"")
    elif kind == "null":
        log.append(op[1], None)
    elif kind == "invalid":
        log.append(op[1], op[2])
    elif kind == "badkey":
        log.append(op[1], b'{"name":"n","email":"x"}')
    elif kind == "elsewhere":
        log.append(ELSEWHERE, value(ELSEWHERE, op[1]))
    elif kind == "marker":
        new = max(0, epoch + op[1] * EPOCH_STRIDE // 2 + 1)
        if not any(r.key == marker(P, new)[0] for r in log.records):  # a key used once
            key, val, hdrs = marker(P, new)
            log.append(key, val, hdrs)
    elif kind in ("farmarker", "leap"):
        new = op[1] if kind == "farmarker" else epoch_reach(epoch) - op[1]
        if not any(r.key == marker(P, new)[0] for r in log.records):
            key, val, hdrs = marker(P, new)
            log.append(key, val, hdrs)
    elif kind == "nokey":
        log.append(None, b"x")
    elif kind == "badheader":
        log.append(op[1], value(op[1], "h"), ((EPOCH_HEADER, b"x1"),))


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(op_s, max_size=40), chunks=st.lists(st.integers(1, 7), max_size=12),
       drop=st.booleans())
def test_live_equals_replay_equals_replay_after_compaction(ops, chunks, drop):
    log = Log()
    key, val, hdrs = marker(P, 0)
    log.append(key, val, hdrs)  # an owner claimed the partition
    for op in ops:
        _write(log, op)
    log.flush()
    live = state_of(log.live)
    assert state_of(replay(log.records, chunks)) == live
    compacted = replay(compact(log.records, drop), chunks)
    assert state_of(compacted) == live
    assert compacted.partitions[P].epoch == log.epoch()


def test_the_rule_case_by_case():
    def rec(key, val, headers=()):
        return Record(7, key, val, tuple(headers))

    k = KEYS[0]
    none = {}.get  # no key has a version
    assert decide(rec(None, b"x"), P, N, 0, none) == Ignored(None, "no_key")
    assert decide(rec(k, b""), P, N, 0, none) == Delete(k)  # the seed app's delete
    assert decide(rec(k, None), P, N, 0, none) == Delete(k)
    assert decide(rec(k, b"nope"), P, N, 0, none) == Delete(k, "value is not JSON")
    assert decide(rec(b"no-at", b"x"), P, N, 0, none) == Delete(b"no-at", "key is not an email")
    assert decide(rec(ELSEWHERE, value(ELSEWHERE, "n")), P, N, 0, none) == \
        Ignored(ELSEWHERE, "wrong_partition")
    assert decide(rec(k, value(k, "n")), P, N, 0, none) == Upsert(k, value(k, "n"), 7)
    old = ((EPOCH_HEADER, b"4"),)
    assert decide(rec(k, value(k, "n"), old), P, N, 5, none) == Ignored(k, "fenced", True)
    assert decide(rec(k, value(k, "n"), old), P, N, 4, none) == Upsert(k, value(k, "n"), 7)
    exp = ((EPOCH_HEADER, b"4"), (EXPECT_HEADER, b"3"))
    assert decide(rec(k, value(k, "n"), exp), P, N, 4, {k: 3}.get).__class__ is Upsert
    assert decide(rec(k, value(k, "n"), exp), P, N, 4, {k: 2}.get) == \
        Ignored(k, "expect_failed", True)
    # absent: not held against it (a replay after compaction may not see the record
    # that made the key exist); the owner refused a missing key before writing
    assert decide(rec(k, value(k, "n"), exp), P, N, 4, none).__class__ is Upsert
    restate = ((EPOCH_HEADER, b"4"), (VERSION_HEADER, b"2"))
    assert decide(rec(k, value(k, "n"), restate), P, N, 4, none) == Upsert(k, value(k, "n"), 2)
    mkey, mval, mh = marker(P, 9)
    assert decide(rec(mkey, mval, mh), P, N, 0, none) == Marker(9)
    # a marker of another partition is just a key that is not an email
    okey, oval, oh = marker(2, 9)
    assert decide(rec(okey, oval, oh), P, N, 0, none) == Delete(okey, "key is not an email")


def test_headers_kstate_cannot_use_are_malformed_never_an_error():
    """Kafka allows a null header value (Java's ``headers.add(name, null)``) and any
    digits: a null kstate header is as malformed as an empty one, a number past int64
    is no version (a stored version's top bit is a flag), another header's null value
    changes nothing."""
    k = KEYS[0]
    val = value(k, "n")
    none = {}.get
    malformed = Delete(k, "malformed kstate header")
    for headers in [((EPOCH_HEADER, None),), ((EPOCH_HEADER, b"4"), (EXPECT_HEADER, None)),
                    ((EPOCH_HEADER, b"4"), (VERSION_HEADER, None)), ((VERSION_HEADER, None),),
                    ((VERSION_HEADER, str(2**63).encode()),),
                    ((EPOCH_HEADER, b"4"), (VERSION_HEADER, b"9300000000000000000"))]:
        assert decide(Record(7, k, val, headers), P, N, 4, none) == malformed, headers
    top = str(2**63 - 1).encode()
    assert decide(Record(7, k, val, ((VERSION_HEADER, top),)), P, N, 4, none) == \
        Upsert(k, val, 2**63 - 1)
    assert decide(Record(7, k, val, (("trace", None),)), P, N, 4, none) == Upsert(k, val, 7)


@pytest.mark.parametrize("raw", [b"user@x.io", "é@ü.de".encode(), b"a@b"])
def test_email_keys_are_keys(raw):
    pid = partition_for(raw, N)
    assert isinstance(decide(Record(0, raw, None), pid, N, 0, {}.get), Delete)
    got = decide(Record(0, raw, value(raw, "n")), pid, N, 0, {}.get)
    assert isinstance(got, Upsert)


def _claimed(log: list[Record], generation: int) -> StateTable:
    """A node assigned partition P in ``generation`` after ``log``, replayed and
    claimed: its marker applied."""
    table = StateTable(N, quiet=True)
    table.assign(Assign(0, frozenset({P}), {P: len(log)}, ReplyBox(), generation=generation))
    if log:
        table.apply(Batch(0, {P: log}, {P: len(log)}))
    epoch = table.bump(P, claim=True)
    assert epoch is not None
    key, val, hdrs = marker(P, epoch)
    table.apply(Batch(0, {P: [Record(len(log), key, val, hdrs)]}, {P: len(log) + 1}))
    return table


def test_a_marker_at_the_top_of_int64_does_not_lock_the_partition():
    """Another producer's marker of epoch 2**63 - 1: had it raised the epoch, no claim
    could fit in an int64 and every node's own marker would be malformed (503 claiming
    for ever: compaction never removes it). It is a malformed record instead; the next
    owner claims and writes."""
    key, val, hdrs = marker(P, 1 << 20)
    log = [Record(0, key, val, hdrs)]
    key, val, hdrs = marker(P, MAX_EPOCH)
    log.append(Record(1, key, val, hdrs))
    table = _claimed(log, generation=2)
    part = table.partitions[P]
    assert part.unusable == {"malformed kstate header": 1}
    assert part.writable
    assert part.epoch == claim_epoch(1 << 20, 2)
    k = KEYS[0]
    write = Record(3, k, value(k, "w"), ((EPOCH_HEADER, str(part.epoch).encode()),))
    table.apply(Batch(0, {P: [write]}, {P: 4}))
    assert lookup(part, k) == (value(k, "w"), 3)


@settings(max_examples=300, deadline=None)
@given(seen=st.integers(-1, MAX_EPOCH), generation=st.integers(0, MAX_GENERATION),
       bumps=st.integers(0, EPOCH_STRIDE - 1))
def test_a_claim_and_its_bumps_are_markers_wherever_the_epoch_is(seen, generation, bumps):
    """Every epoch a node may write a marker of (a claim in any generation Kafka gives,
    and the bumps in its block) is taken as a marker in a partition at ``seen``; one
    past the highest such block is malformed; a node never claims past it."""
    epoch = claim_epoch(seen, generation) + bumps
    top = claim_epoch(seen, MAX_GENERATION + 1) - 1
    for mine in (epoch, top + 1):
        if mine > MAX_EPOCH:
            continue
        key, val, hdrs = marker(P, mine)
        got = decide(Record(7, key, val, hdrs), P, N, seen, {}.get)
        assert got == (Marker(mine) if mine <= top else Delete(key, "malformed kstate header"))


def test_a_marker_raises_the_epoch_by_at_most_one_claims_reach():
    none = {}.get
    far = (MAX_GENERATION + 1) * EPOCH_STRIDE  # the first block no claim from 0 opens
    # from a block, every epoch of the next MAX_GENERATION blocks (a claim, its bumps)
    for epoch, mine, taken in [(-1, far - 1, True), (-1, far, False), (0, far, False),
                               (far, 2 * far - 1, True), (far, 2 * far, False),
                               (far + EPOCH_STRIDE - 1, 2 * far, False),
                               (far + EPOCH_STRIDE, 2 * far, True),
                               (5, 3, True)]:  # below the epoch: taken, raises nothing
        key, val, hdrs = marker(P, mine)
        got = decide(Record(7, key, val, hdrs), P, N, epoch, none)
        assert got == (Marker(mine) if taken else Delete(key, "malformed kstate header")), \
            (epoch, mine)


def test_no_claim_or_bump_past_the_last_epoch(caplog):
    """A partition whose epoch is so high that the next claim (or bump) would not be
    a marker any node takes: the node writes no marker and does not write the
    partition; it says so once."""
    table = StateTable(N)
    table.assign(Assign(0, frozenset({P}), {P: 0}, ReplyBox(), generation=3))
    part = table.partitions[P]
    part.epoch = MAX_EPOCH - 2 * EPOCH_STRIDE
    with caplog.at_level("ERROR", logger="kstate.core.table"):
        assert table.bump(P, claim=True) is None
        assert table.bump(P, claim=True) is None
    assert [r.getMessage().split()[0] for r in caplog.records] == ["event=epochs_exhausted"]
    assert part.own_epoch == -1
    assert not part.writable
    # the owner of the last block, bumping past its end
    part.epoch = part.own_epoch = MAX_EPOCH
    assert table.bump(P) is None
    assert part.own_epoch == -1
    assert not part.writable
