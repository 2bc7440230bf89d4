"""The chaos checker's verdicts, driven with made-up answers (no broker, no nodes)."""

from __future__ import annotations

import pytest

from kstate.core.messages import Record
from kstate.core.partitioner import partition_for
from kstate.core.records import EPOCH_HEADER, VERSION_HEADER, marker
from tools.chaos.audit import as_applied
from tools.chaos.checker import Checker, value_for
from tools.chaos.schedule import plan

pytestmark = pytest.mark.fast  # pure logic, no broker

K = "a@x.test"


def acked(c: Checker, start: float, end: float, offset: int, status: int = 200) -> int:
    seq, body = c.begin_write(K, start)
    v = c.end_write(K, seq, end, status, f'"3-{offset}"', False, body)
    assert v.kind == "acked", v
    return seq


def read(c: Checker, start: float, end: float, seq: int | None, offset: int = 0,
         final: bool = False) -> str:
    if seq is None:
        return c.judge_read(K, start, end, 404, b"{}", None, False, final=final).kind
    return c.judge_read(K, start, end, 200, value_for(K, seq), f'"3-{offset}"', False,
                        final=final).kind


def test_read_after_ack_must_see_it() -> None:
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    s1 = acked(c, 2.0, 3.0, 11)
    assert read(c, 3.5, 4.0, s1, 11) == "ok"
    assert read(c, 3.5, 4.0, s0, 10) == "stale"
    assert read(c, 3.5, 4.0, None) == "spurious_404"
    assert read(c, 3.5, 4.0, s0, 10, final=True) == "lost_write"


def test_read_concurrent_with_a_write_may_see_either() -> None:
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    s1, body = c.begin_write(K, 2.0)
    assert read(c, 1.5, 2.5, s0, 10) == "ok"  # s1 not acked yet
    assert read(c, 2.1, 2.6, s1, 11) == "ok"  # pending, but already visible
    assert c.end_write(K, s1, 3.0, 200, '"3-11"', False, body).kind == "acked"
    assert read(c, 2.9, 3.2, s0, 10) == "non_monotonic"  # a reader saw s1 before 2.9


def test_ambiguous_write_judged_by_offset_and_start() -> None:
    c = Checker([K])
    acked(c, 0.0, 1.0, 10, status=201)
    late, _ = c.begin_write(K, 2.0)
    assert c.end_write(K, late, 7.0, 503, None, True).kind == "unavailable"
    s2 = acked(c, 8.0, 9.0, 12)
    # the timed-out write lands after s2 was acknowledged: resurrected over a later ack
    assert read(c, 10.0, 10.5, late, 13) == "late_ambiguous"
    c2 = Checker([K])
    acked(c2, 0.0, 1.0, 10, status=201)
    after, _ = c2.begin_write(K, 2.0)
    c2.end_write(K, after, 7.0, None, None, False)
    assert read(c2, 8.0, 8.5, after, 11) == "ok"  # issued after the last ack: a valid value
    assert s2 >= 0


def test_offsets_identify_writes() -> None:
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    assert read(c, 2.0, 2.1, s0, 11) == "etag_mismatch"
    seq, body = c.begin_write(K, 3.0)
    assert c.end_write(K, seq, 4.0, 200, '"3-9"', False, body).kind == "write_reordered"
    seq, body = c.begin_write(K, 5.0)
    assert c.end_write(K, seq, 6.0, 201, '"3-20"', False, body).kind == "spurious_create"
    seq, body = c.begin_write(K, 7.0)
    assert c.end_write(K, seq, 8.0, 200, '"4-21"', False, body).kind == "etag_partition"
    seq, body = c.begin_write(K, 9.0)
    assert c.end_write(K, seq, 10.0, 200, None, False, body).kind == "no_etag"


def test_statuses_and_bodies() -> None:
    c = Checker([K])
    assert read(c, 0.0, 0.1, None) == "ok_404"  # never written
    assert c.judge_read(K, 0, 1, 503, b"", None, True).kind == "unavailable"
    assert c.judge_read(K, 0, 1, 503, b"", None, False).kind == "bad_5xx"
    assert c.judge_read(K, 0, 1, 500, b"", None, False).kind == "bad_5xx"
    assert c.judge_read(K, 0, 1, 400, b"", None, False).kind == "bad_status"
    assert c.judge_read(K, 0, 1, 200, b'{"name":"a@x.test#7","email":"a@x.test"}',
                        '"3-1"', False).kind == "phantom_value"
    seq, _ = c.begin_write(K, 5.0)
    assert read(c, 1.0, 2.0, seq, 1) == "future_value"


def test_schedule_is_seeded_and_possible() -> None:
    a = plan(7, nodes=3, duration=600, cluster=True)
    assert a == plan(7, nodes=3, duration=600, cluster=True)
    assert len(a) >= 20
    up, down, brokers_down = {0, 1, 2}, set(), 0
    for e in a:
        if e.kind in ("kill9", "term", "remove"):
            assert e.target in up
            assert len(up) >= 2
            up.remove(e.target)
            if e.kind != "remove":
                down.add(e.target)
        elif e.kind == "restart":
            down.remove(e.target)
            up.add(e.target)
        elif e.kind == "add":
            up.add(e.target)
        elif e.kind == "broker_kill":
            assert brokers_down == 0
            brokers_down += 1
        else:
            brokers_down -= 1
    forced = plan(1, nodes=3, duration=100, cluster=False,
                  forced=["kill9", "restart", "term", "add"], gap=(10, 12))
    assert [e.kind for e in forced] == ["kill9", "restart", "term", "add"]


def test_topic_audit() -> None:
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    amb, _ = c.begin_write(K, 2.0)
    c.end_write(K, amb, 3.0, 503, None, True)
    s2 = acked(c, 4.0, 5.0, 12)
    good = {K: [(10, value_for(K, s0)), (12, value_for(K, s2))]}
    assert c.audit(good, set()) == []
    lost = {K: [(10, value_for(K, s0))]}
    assert [v.kind for v in c.audit(lost, set())] == ["lost_write"]
    late = {K: [(10, value_for(K, s0)), (12, value_for(K, s2)), (13, value_for(K, amb))]}
    assert [v.kind for v in c.audit(late, set())] == ["late_ambiguous"]
    landed_early = {K: [(10, value_for(K, s0)), (11, value_for(K, amb)), (12, value_for(K, s2))]}
    assert c.audit(landed_early, set()) == []
    dup = {K: [(10, value_for(K, s0)), (11, value_for(K, s0)), (12, value_for(K, s2))]}
    assert [v.kind for v in c.audit(dup, set())] == ["duplicate_write"]
    compacted = {K: [(12, value_for(K, s2))]}  # s0 compacted away: fine
    assert c.audit(compacted, {3}) == []
    phantom = {K: [(10, value_for(K, s0)), (11, None), (12, value_for(K, s2))]}
    assert [v.kind for v in c.audit(phantom, set())] == ["phantom_value"]


def test_conditional_writes() -> None:
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    cas, body = c.begin_write(K, 2.0, if_match=10)
    assert c.end_write(K, cas, 3.0, 200, '"3-11"', False, body).kind == "acked"
    # a second writer that read version 10 too, and lost the race: a right 412
    lost, _ = c.begin_write(K, 2.5, if_match=10)
    assert c.end_write(K, lost, 3.5, 412, None, False).kind == "precondition_failed"
    assert read(c, 4.0, 4.1, lost, 12) == "refused_visible"
    # If-Match the newest version, nothing else written: a 412 is wrong
    alone, _ = c.begin_write(K, 5.0, if_match=11)
    assert c.end_write(K, alone, 6.0, 412, None, False).kind == "spurious_412"
    topic = {K: [(10, value_for(K, s0)), (11, value_for(K, cas))]}
    assert c.audit(topic, set()) == []
    # an ambiguous conditional write that landed over a version it never saw
    late, _ = c.begin_write(K, 7.0, if_match=10)
    c.end_write(K, late, 8.0, 503, None, True)
    topic = {K: [(10, value_for(K, s0)), (11, value_for(K, cas)), (12, value_for(K, late))]}
    assert [v.kind for v in c.audit(topic, set())] == ["lost_update"]


def test_every_verdict_kind_is_classified() -> None:
    import inspect
    import re

    from tools.chaos import audit, checker
    from tools.chaos.checker import OK_KINDS, VIOLATIONS

    src = inspect.getsource(checker) + inspect.getsource(audit)
    made = set(re.findall(r'Verdict\(\s*"([a-z_0-9]+)"', src))
    made |= set(re.findall(r'kind = "([a-z_0-9]+)" if final else "([a-z_0-9]+)"', src)[0])
    assert made - OK_KINDS <= VIOLATIONS, made - OK_KINDS - VIOLATIONS
    assert not OK_KINDS & VIOLATIONS
    assert {"lost_update", "refused_visible", "spurious_412"} <= VIOLATIONS
    assert {"lost_update", "final_state_mismatch", "late_ambiguous"} <= made & VIOLATIONS


def deleted(c: Checker, start: float, end: float, offset: int | None,
            if_match: int | None = None) -> tuple[int, str]:
    seq, body = c.begin_write(K, start, if_match=if_match, delete=True)
    assert body is None
    etag = None if offset is None else f'"3-{offset}"'
    return seq, c.end_write(K, seq, end, 204, etag, False).kind


def test_404_after_an_acknowledged_delete_is_right_a_value_is_stale() -> None:
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    _, kind = deleted(c, 2.0, 3.0, 11)
    assert kind == "acked"
    assert read(c, 3.5, 4.0, None) == "ok_404"
    assert read(c, 3.5, 4.0, s0, 10) == "stale"  # the delete was acked before the read
    assert read(c, 2.5, 4.0, s0, 10) == "ok"  # concurrent with the delete: either
    assert read(c, 3.5, 4.0, None, final=True) == "ok_404"
    # a put after the delete creates the key again: 201 is right, then a 404 is not
    s2 = acked(c, 5.0, 6.0, 12, status=201)
    assert read(c, 6.5, 7.0, s2, 12) == "ok"
    assert read(c, 6.5, 7.0, None) == "spurious_404"


def test_404_is_right_only_if_some_delete_can_explain_it() -> None:
    c = Checker([K])
    acked(c, 0.0, 1.0, 10, status=201)
    assert read(c, 1.5, 2.0, None) == "spurious_404"
    amb, _ = c.begin_write(K, 2.0, delete=True)
    assert c.end_write(K, amb, 7.0, 503, None, True, code="write_timeout").kind == "unavailable"
    assert read(c, 7.5, 8.0, None) == "ok_404"  # the ambiguous delete may have landed
    c2 = Checker([K])
    acked(c2, 0.0, 1.0, 10, status=201)
    failed, _ = c2.begin_write(K, 2.0, delete=True)
    assert c2.end_write(K, failed, 3.0, 503, None, True, code="not_owner").kind == "failed"
    refused, _ = c2.begin_write(K, 3.0, if_match=9, delete=True)
    assert c2.end_write(K, refused, 4.0, 412, None, False).kind == "precondition_failed"
    _, noop = deleted(c2, 4.5, 4.6, None)
    assert noop == "spurious_noop"  # the key existed: nothing to delete is wrong
    # none of them wrote a tombstone
    assert read(c2, 5.0, 5.5, None) == "spurious_404"
    assert read(c2, 5.0, 5.5, None, final=True) == "lost_write"
    # a delete sent after the read answered cannot explain it
    later, _ = c2.begin_write(K, 6.0, delete=True)
    assert read(c2, 5.0, 5.9, None) == "spurious_404"
    assert read(c2, 5.0, 6.5, None) == "ok_404"  # concurrent with it
    assert later > 0


def test_deletes_move_the_floor_and_are_ordered() -> None:
    c = Checker([K])
    acked(c, 0.0, 1.0, 10, status=201)
    _, kind = deleted(c, 2.0, 3.0, 11)
    _, again = deleted(c, 3.5, 4.0, None)  # the key is gone: a no-op delete is right
    assert again == "acked"
    assert deleted(c, 4.5, 5.0, 9)[1] == "write_reordered"
    seq, body = c.begin_write(K, 6.0)
    assert c.end_write(K, seq, 7.0, 201, '"3-12"', False, body).kind == "acked"
    seq, body = c.begin_write(K, 8.0)
    assert c.end_write(K, seq, 9.0, 201, '"3-13"', False, body).kind == "spurious_create"
    assert kind == "acked"


def test_conditional_deletes_and_a_tombstone_base() -> None:
    c = Checker([K])
    acked(c, 0.0, 1.0, 10, status=201)
    cas, kind = deleted(c, 2.0, 3.0, 11, if_match=10)
    assert kind == "acked"
    # If-Match the tombstone's version: an absent key matches no ETag
    put, _ = c.begin_write(K, 4.0, if_match=11)
    assert c.end_write(K, put, 5.0, 412, None, False).kind == "precondition_failed"
    # If-Match a version replaced by the delete: right
    late, _ = c.begin_write(K, 6.0, if_match=10, delete=True)
    assert c.end_write(K, late, 7.0, 412, None, False).kind == "precondition_failed"
    assert cas >= 0


def test_failed_writes_must_never_show() -> None:
    c = Checker([K])
    acked(c, 0.0, 1.0, 10, status=201)
    seq, _ = c.begin_write(K, 2.0)
    assert c.end_write(K, seq, 3.0, 503, None, True, code="key_busy").kind == "failed"
    assert read(c, 4.0, 4.5, seq, 11) == "failed_visible"
    seq2, _ = c.begin_write(K, 5.0)
    # a code not in the table promises nothing: ambiguous, may show
    assert c.end_write(K, seq2, 6.0, 503, None, True, code="brand_new").kind == "unavailable"
    assert read(c, 7.0, 7.5, seq2, 12) == "ok"
    topic = {K: [(10, value_for(K, 0)), (11, value_for(K, seq)), (12, value_for(K, seq2))]}
    assert [v.kind for v in c.audit(topic, set())] == ["failed_visible"]


def test_topic_audit_of_tombstones() -> None:
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    d1, _ = deleted(c, 2.0, 3.0, 11)
    good = {K: [(10, value_for(K, s0)), (11, None)]}
    assert c.audit(good, set()) == []
    assert [v.kind for v in c.audit({K: [(10, value_for(K, s0))]}, set())] == ["lost_write"]
    extra = {K: [(10, value_for(K, s0)), (11, None), (12, None)]}
    assert [v.kind for v in c.audit(extra, set())] == ["phantom_value"]
    amb, _ = c.begin_write(K, 4.0, delete=True)
    c.end_write(K, amb, 5.0, None, None, False)  # no answer: may have written one
    assert c.audit(extra, set()) == []
    assert [v.kind for v in c.audit(
        {K: [(10, value_for(K, s0)), (11, None), (12, None), (13, None)]}, set())] == [
        "phantom_value"]
    # a tombstone where a put's ETag said its value is
    c2 = Checker([K])
    s = acked(c2, 0.0, 1.0, 10, status=201)
    assert [v.kind for v in c2.audit({K: [(10, None)]}, set())] == [
        "etag_mismatch", "lost_write"]
    assert d1 > s0 >= s


def test_the_audit_sees_the_topic_as_nodes_apply_it() -> None:
    # Partition 3 of 10: an owner's marker, a put, a zombie's fenced delete, the
    # owner's repair of the put (same version), then a client delete, then a fenced
    # put on the absent key and the repair tombstone restating its absence.
    p = partition_for(K.encode(), 10)
    old, new = 1 << 20, 2 << 20
    key = K.encode()
    val = b'{"name":"A","email":"' + key + b'"}'

    def rec(off: int, k: bytes, v: bytes | None, *hdrs: tuple[str, bytes]) -> Record:
        return Record(off, k, v, tuple(hdrs))

    ep = (EPOCH_HEADER, str(new).encode())
    recs = [rec(0, *marker(p, new)[:2], *marker(p, new)[2]),
            rec(1, key, val, ep),
            rec(2, key, None, (EPOCH_HEADER, str(old).encode())),
            rec(3, key, val, ep, (VERSION_HEADER, b"1")),
            rec(4, key, None, ep),
            rec(5, key, val, (EPOCH_HEADER, str(old).encode())),
            rec(6, key, None, ep)]
    by_key, compacted, not_applied = as_applied({p: recs}, 10, {K})
    assert by_key == {K: [(1, val), (4, None)]}
    assert compacted == set()
    assert not_applied == {"fenced": 2, "repair": 2}
    # With gaps (compacted), a tombstone of a key not seen may be a real delete whose
    # earlier records are gone: it is judged, not passed over.
    by_key, compacted, _ = as_applied({p: [recs[0], *recs[4:]]}, 10, {K})
    assert compacted == {p}
    assert by_key == {K: [(4, None), (6, None)]}


def unsure(c: Checker, start: float, end: float, delete: bool = False,
           if_match: int | None = None) -> int:
    """A write answered 503 write_timeout: it may land later, or never."""
    seq, _ = c.begin_write(K, start, if_match=if_match, delete=delete)
    v = c.end_write(K, seq, end, 503, None, True, b'{"error":"write_timeout"}',
                    code="write_timeout")
    assert v.kind == "unavailable", v
    return seq


def audit_kinds(c: Checker, topic: list[tuple[int, int | None]]) -> list[str]:
    """The audit's verdicts of a topic given as (offset, seq of a put | None)."""
    recs = [(off, None if seq is None else value_for(K, seq)) for off, seq in topic]
    return [v.kind for v in c.audit({K: recs}, set())]


def test_a_late_delete_over_a_newer_acked_put_is_late_ambiguous() -> None:
    # A delete answered 503 lands after a put that was sent after that answer and
    # acknowledged: the acknowledged put is gone. Its reads, and the tombstone in the
    # topic, are judged like a put that lands late.
    c = Checker([K])
    s0 = acked(c, 1.0, 1.1, 10, status=201)
    unsure(c, 2.0, 2.5, delete=True)
    s2 = acked(c, 3.0, 3.1, 20)
    assert read(c, 4.0, 4.1, s2, 20) == "ok"
    assert read(c, 5.0, 5.1, None) == "late_ambiguous"
    assert read(c, 9.0, 9.1, None, final=True) == "late_ambiguous"
    assert audit_kinds(c, [(10, s0), (20, s2), (30, None)]) == ["late_ambiguous"]
    assert audit_kinds(c, [(10, s0), (15, None), (20, s2)]) == []  # landed in time
    # the same delete still in flight when the put began: either order is right
    c2 = Checker([K])
    s0 = acked(c2, 1.0, 1.1, 10, status=201)
    unsure(c2, 2.0, 3.5, delete=True)
    s2 = acked(c2, 3.0, 3.1, 20)
    assert read(c2, 5.0, 5.1, None) == "ok_404"
    assert audit_kinds(c2, [(10, s0), (20, s2), (30, None)]) == []


def test_a_delete_answered_before_a_newer_write_began_excuses_no_404() -> None:
    # The delete never lands; the put after its 503 is acknowledged: neither a 404 nor
    # a 201 can be explained by it any more.
    c = Checker([K])
    s0 = acked(c, 1.0, 1.1, 10, status=201)
    unsure(c, 2.0, 2.5, delete=True)
    s2 = acked(c, 3.0, 3.1, 20)
    assert read(c, 4.0, 4.1, s2, 20) == "ok"
    assert read(c, 5.0, 5.1, None) == "late_ambiguous"
    s3, body = c.begin_write(K, 6.0)
    assert c.end_write(K, s3, 6.1, 201, '"3-30"', False, body).kind == "late_ambiguous"
    _, noop = deleted(c, 6.5, 6.6, None)
    assert noop == "late_ambiguous"
    assert read(c, 9.0, 9.1, None, final=True) == "late_ambiguous"
    assert "late_ambiguous" not in audit_kinds(c, [(10, s0), (20, s2), (30, s3)])


def test_answers_excused_by_a_delete_of_unknown_fate_are_judged_again() -> None:
    # A delete still in flight excuses a 404 and a no-op delete; it is answered 503 and
    # no acknowledged write follows, so the final 404 is excused too. The topic decides.
    c = Checker([K])
    s0 = acked(c, 0.0, 1.0, 10, status=201)
    d, _ = c.begin_write(K, 2.0, delete=True)
    assert read(c, 3.0, 3.5, None) == "ok_404"
    _, noop = deleted(c, 4.0, 4.5, None)
    assert noop == "acked"
    assert c.end_write(K, d, 7.0, 503, None, True, code="write_timeout").kind == "unavailable"
    assert read(c, 7.5, 8.0, None, final=True) == "ok_404"
    assert audit_kinds(c, [(10, s0)]) == ["spurious_404", "spurious_noop", "lost_write"]
    assert audit_kinds(c, [(10, s0), (11, None)]) == []  # the delete landed
    # a 201 likewise
    c2 = Checker([K])
    s0 = acked(c2, 0.0, 1.0, 10, status=201)
    d, _ = c2.begin_write(K, 2.0, delete=True)
    s1, body = c2.begin_write(K, 3.0)
    assert c2.end_write(K, s1, 3.5, 201, '"3-12"', False, body).kind == "acked"
    c2.end_write(K, d, 7.0, None, None, False)
    assert audit_kinds(c2, [(10, s0), (12, s1)]) == ["spurious_create"]
    assert audit_kinds(c2, [(10, s0), (11, None), (12, s1)]) == []
    assert audit_kinds(c2, [(10, s0), (12, s1), (13, None)]) == ["spurious_create"]
    # a tombstone appended after a record of a write sent after the 404 was answered
    # was not there in time
    c3 = Checker([K])
    s0 = acked(c3, 0.0, 1.0, 10, status=201)
    d, _ = c3.begin_write(K, 2.0, delete=True)
    assert read(c3, 3.0, 3.5, None) == "ok_404"
    s2 = acked(c3, 4.0, 4.5, 11)
    c3.end_write(K, d, 6.0, 503, None, True, code="write_timeout")
    assert audit_kinds(c3, [(10, s0), (11, s2), (12, None)]) == ["spurious_404"]
    # in a compacted partition the tombstone may be gone: not judged again
    assert c3.audit({K: [(11, value_for(K, s2))]}, {3}) == []


def test_a_412_excused_by_a_write_of_unknown_fate_is_judged_again() -> None:
    c = Checker([K])
    s0 = acked(c, 1.0, 1.1, 10, status=201)
    amb = unsure(c, 2.0, 2.5)
    assert read(c, 3.0, 3.1, s0, 10) == "ok"
    cas, _ = c.begin_write(K, 4.0, if_match=10)
    assert c.end_write(K, cas, 4.1, 412, None, False).kind == "precondition_failed"
    s3 = acked(c, 5.0, 5.1, 20)
    assert audit_kinds(c, [(10, s0), (20, s3)]) == ["spurious_412"]  # it never landed
    assert audit_kinds(c, [(10, s0), (15, amb), (20, s3)]) == []  # it did, over 10
    # the answer-time rule: a write answered before an acked write at or below the
    # If-Match version began cannot be above that version
    c2 = Checker([K])
    acked(c2, 1.0, 1.1, 10, status=201)
    unsure(c2, 2.0, 2.5)
    acked(c2, 3.0, 3.1, 20)
    cas, _ = c2.begin_write(K, 4.0, if_match=20)
    assert c2.end_write(K, cas, 4.1, 412, None, False).kind == "late_ambiguous"


def closing_read(c: Checker, start: float, seq: int | None, offset: int = 0,
                 closing: bool = True) -> str:
    if seq is None:
        v = c.judge_read(K, start, start + 0.1, 404, b"{}", None, False, final=True,
                         closing=closing)
    else:
        v = c.judge_read(K, start, start + 0.1, 200, value_for(K, seq), f'"3-{offset}"',
                         False, final=True, closing=closing)
    c.record(v, node="n1", source="final")
    return v.kind


def test_final_reads_must_serve_the_topics_last_record() -> None:
    # An ambiguous put lands (the last record of the key), every node serves the older
    # value; an ambiguous delete lands, a node still serves the value.
    c = Checker([K])
    s0 = acked(c, 1.0, 1.1, 10, status=201)
    amb = unsure(c, 2.0, 2.5)
    assert closing_read(c, 9.0, s0, 10) == "ok"
    assert closing_read(c, 9.2, s0, 10) == "ok"
    assert audit_kinds(c, [(10, s0), (20, amb)]) == ["final_state_mismatch"] * 2
    assert audit_kinds(c, [(10, s0)]) == []
    c2 = Checker([K])
    s0 = acked(c2, 1.0, 1.1, 10, status=201)
    unsure(c2, 2.0, 2.5, delete=True)
    assert closing_read(c2, 9.0, s0, 10) == "ok"
    assert audit_kinds(c2, [(10, s0), (20, None)]) == ["final_state_mismatch"]
    assert audit_kinds(c2, [(10, s0)]) == []
    # a 404 the delete explains, though the key was written again after its tombstone
    c3 = Checker([K])
    s0 = acked(c3, 1.0, 1.1, 10, status=201)
    unsure(c3, 2.0, 7.0, delete=True)
    late = unsure(c3, 2.5, 3.0)
    assert closing_read(c3, 8.0, None) == "ok_404"
    assert audit_kinds(c3, [(10, s0), (11, None), (12, late)]) == ["final_state_mismatch"]
    assert audit_kinds(c3, [(10, s0), (11, None)]) == []
    # reads judged final but not of the final verification (after a cut) are not compared
    c4 = Checker([K])
    s0 = acked(c4, 1.0, 1.1, 10, status=201)
    amb = unsure(c4, 2.0, 2.5)
    assert closing_read(c4, 9.0, s0, 10, closing=False) == "ok"
    assert audit_kinds(c4, [(10, s0), (20, amb)]) == []
