"""The feed follows the record rule (actors/feed_rule.py), proved on the random logs of
tests/unit/test_records.py: a feed that reads a partition from its beginning streams
exactly the state the owner builds (live, or replaying a compacted log); a feed that
starts anywhere else (the live feed, a resumed subscription) may stream more (a write
the owner fenced, or whose condition failed), but every other change it streams is
what the owner applied, and the latest change it streams for each key is the owner's
state once repairs are written. No feed ever streams an owner-epoch marker."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import feed_rule
from actors.feed_rule import FeedRule
from kstate.core.messages import Batch, Record
from kstate.core.records import (
    EPOCH_HEADER,
    EPOCH_STRIDE,
    EXPECT_HEADER,
    MAX_EPOCH,
    claim_epoch,
    epoch_reach,
    marker,
)
from tests.unit.test_records import (
    ELSEWHERE,
    KEYS,
    Log,
    N,
    P,
    _table,
    _write,
    compact,
    op_s,
    replay,
    state_of,
    value,
)

State = dict[str, object]


def stream(rule: FeedRule, records: list[Record]) -> list[dict[str, object]]:
    out = []
    for rec in records:
        text = rule.change(P, rec)
        if text is not None:
            out.append(orjson.loads(text))
    return out


def apply(state: State, changes: list[dict[str, object]]) -> State:
    out = dict(state)
    for ch in changes:
        key = str(ch["key"])
        if ch["value"] is None:
            out.pop(key, None)
        else:
            out[key] = ch["value"]
    return out


def users(log_state: dict[bytes, tuple[bytes, int]]) -> State:
    return {k.decode(): orjson.loads(v) for k, (v, _) in log_state.items()}


def a_marker(rec: Record) -> bool:
    """Whether ``rec`` is a well-formed owner-epoch marker of P (its key names the
    partition and the epoch its header carries), whatever the rule makes of its epoch."""
    epochs = [v for k, v in rec.headers if k == EPOCH_HEADER]
    return bool(epochs) and epochs[-1] is not None and epochs[-1].isdigit() \
        and len(epochs[-1]) <= 19 and rec.key == marker(P, int(epochs[-1]))[0]


def built(ops: list) -> Log:
    log = Log()
    key, val, hdrs = marker(P, 0)
    log.append(key, val, hdrs)  # an owner claimed the partition
    for op in ops:
        _write(log, op)
    log.flush()
    return log


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op_s, max_size=40), drop=st.booleans())
def test_a_feed_from_the_beginning_streams_what_the_owner_applies(ops, drop):
    log = built(ops)
    # record by record: what the feed streamed so far is the owner's state so far (it
    # streams nothing the owner ignores, and everything it applies)
    owner, rule, fed = _table(), FeedRule(N, exact=True), {}
    for rec in log.records:
        counts, unusable, skipped = dict(owner.partitions[P].counts), rule.unusable, \
            rule.skipped
        owner.apply(Batch(0, {P: [rec]}, {P: rec.offset + 1}))
        changes = stream(rule, [rec])
        fed = apply(fed, changes)
        assert fed == users(state_of(owner))
        assert not (a_marker(rec) and changes), (rec, changes)  # a marker is no change
        # counted once, as the owner counts it: unusable; ignored for a reason; or not
        # at all (applied: streamed; or a marker: skipped)
        counted = {k for k, n in owner.partitions[P].counts.items() if n != counts.get(k, 0)}
        got = (rule.unusable - unusable, rule.skipped - skipped)
        if counted == {"unusable"}:
            assert got == (1, 0), rec
        elif counted:
            assert got == (0, 1), (rec, counted)
        else:
            assert got == (0, 0 if changes else 1), rec
    assert fed == users(state_of(log.live))
    # and from a compacted log, as an owner replaying it
    compacted = compact(log.records, drop)
    assert apply({}, stream(FeedRule(N, exact=True), compacted)) == \
        users(state_of(replay(compacted, [])))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op_s, max_size=40), cut=st.integers(0, 60))
def test_a_feed_from_anywhere_ends_at_the_owners_state(ops, cut):
    log = built(ops)
    cut = min(cut, len(log.records))
    owner = replay(log.records[:cut], [])
    at_cut = users(state_of(owner))
    rule = FeedRule(N)  # the live feed: starts at the end of the log, knows nothing
    fed = at_cut
    for rec in log.records[cut:]:
        counts = dict(owner.partitions[P].counts)
        owner.apply(Batch(0, {P: [rec]}, {P: rec.offset + 1}))
        changes = stream(rule, [rec])
        fed = apply(fed, changes)
        assert not (a_marker(rec) and changes), (rec, changes)  # a marker is no change
        # What it streams is what the owner applied, but for the writes the owner
        # ignored for an epoch or a version this feed does not know (repaired later).
        ignored = {k for k, n in owner.partitions[P].counts.items()
                   if n != counts.get(k, 0)} & {"fenced", "expect_failed"}
        if changes and not ignored:
            now = users(state_of(owner))
            assert [now.get(str(c["key"])) for c in changes] == \
                [c["value"] for c in changes], (rec, changes)
    assert fed == users(state_of(log.live))


def test_an_evicted_key_is_decided_leniently_then_forgotten(monkeypatch):
    monkeypatch.setattr(feed_rule, "RECENT_KEYS", 1)
    rule = FeedRule(N, exact=True)
    a, b = KEYS[0], KEYS[1]
    epoch = ((EPOCH_HEADER, b"0"),)
    assert rule.change(P, Record(0, a, value(a, "A"), epoch)) is not None
    assert rule.change(P, Record(1, b, value(b, "B"), epoch)) is not None
    assert list(rule.recent) == [b]  # a was evicted
    # a's condition cannot be checked: taken as holding, and a's version not kept
    stale = ((EPOCH_HEADER, b"0"), (EXPECT_HEADER, b"12345"))
    assert rule.change(P, Record(2, a, value(a, "A2"), stale)) is not None
    assert a not in rule.recent
    # b's is known: a stale condition streams nothing (the owner ignores it too)
    assert rule.change(P, Record(3, b, value(b, "B2"), stale)) is None
    assert rule.skipped == 1


def test_what_is_streamed_for_each_kind_of_record():
    rule = FeedRule(N)
    k = KEYS[0]
    mkey, mval, mh = marker(P, 5)
    records = [Record(0, k, b""), Record(1, k, None), Record(2, k, b"not json"),
               Record(3, k, value(k, "Ann")),
               Record(4, ELSEWHERE, value(ELSEWHERE, "X")),  # wrong partition
               Record(5, mkey, mval, mh),
               Record(6, k, value(k, "Zombie"), ((EPOCH_HEADER, b"4"),)),  # fenced
               Record(7, None, b"x"),  # no key
               Record(8, b"\xff@x", b"x")]  # a key no user can have
    got = [rule.change(P, rec) for rec in records]
    assert orjson.loads(got[0] or "") == \
        {"key": k.decode(), "value": None, "partition": P, "offset": 0}  # 0-byte: delete
    assert orjson.loads(got[1] or "")["value"] is None
    assert orjson.loads(got[2] or "")["value"] is None
    assert orjson.loads(got[3] or "")["value"] == {"name": "Ann", "email": k.decode()}
    assert got[4:] == [None] * 5
    assert rule.epochs[P] == 5
    # Counted as the owner counts the same records, each once: as unusable (not JSON,
    # no key, the non-UTF-8 key), or as changing nothing (the wrong partition, the
    # fenced write, and the marker, which the owner applies without counting it).
    owner = _table()
    owner.apply(Batch(0, {P: records}, {P: len(records)}))
    counts = owner.partitions[P].counts
    assert rule.unusable == counts["unusable"]
    assert rule.skipped == counts["wrong_partition"] + counts["fenced"] + 1
    assert rule.unusable + rule.skipped + 3 == len(records)  # + 3 changes of the user


def test_a_marker_past_what_the_feed_can_tell_is_not_streamed():
    # An owner's epoch near 2**51 (taken from a foreign marker: a mirrored topic, a
    # restored backup) is claimed over with a marker past what one claim reaches from
    # no known epoch. A feed that starts after the first marker (the live feed, one
    # resumed from an offset) cannot tell that marker from a malformed one, nor from a
    # marker past the owner's own reach, which the owner counts as malformed: it
    # streams neither, and keeps the epoch it knows (fencing less, never more, than the
    # owner). A feed from the beginning knows the epoch, and counts the malformed one
    # as the owner does.
    high = epoch_reach(-1) - EPOCH_STRIDE + 1  # the top block from no known epoch
    claim = claim_epoch(high, 3)  # the owner's claim over it, in generation 3
    assert high <= epoch_reach(-1) < claim <= epoch_reach(high)
    k = KEYS[0]
    records = [Record(0, k, value(k, "before"), ((EPOCH_HEADER, b"0"),)),
               Record(1, *marker(P, high)),
               Record(2, *marker(P, claim)),
               Record(3, *marker(P, MAX_EPOCH)),  # past the owner's reach too: malformed
               Record(4, k, value(k, "after"), ((EPOCH_HEADER, str(claim).encode()),))]
    owner = _table()
    owner.apply(Batch(0, {P: records}, {P: len(records)}))
    assert owner.partitions[P].epoch == claim
    assert owner.partitions[P].counts == {"unusable": 1}  # the MAX_EPOCH marker

    resumed = FeedRule(N)  # from offset 2 on: knows no epoch
    got = [resumed.change(P, rec) for rec in records[2:]]
    assert got[:2] == [None, None]
    assert orjson.loads(got[2] or "")["value"] == {"name": "after", "email": k.decode()}
    assert resumed.epochs.get(P, -1) == -1  # took neither: it cannot tell either
    assert (resumed.unusable, resumed.skipped) == (0, 2)

    whole = FeedRule(N, exact=True)
    got = [whole.change(P, rec) for rec in records]
    assert got[1:4] == [None] * 3
    assert orjson.loads(got[4] or "")["value"] == {"name": "after", "email": k.decode()}
    assert whole.epochs[P] == claim
    assert (whole.unusable, whole.skipped) == (1, 2)  # as the owner counts them
