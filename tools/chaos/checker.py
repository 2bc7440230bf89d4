"""The chaos checker: a per-key history of writes and a verdict for every answer.

What is checked, and why it is sound
====================================
Before the chaos starts every key is written once and acknowledged (seq 0). Most keys
are never deleted, so they exist for the whole run; the *delete keys* (see phases.py)
also get deletes, conditional or not. Every put carries a value no other write carries:
``{"name": "<key>#<seq>", "email": "<key>"}``, with ``seq`` unique per key (deletes
take a seq too, but write no value), so a read names the write it returns. All times
are one clock (``time.monotonic()`` of the harness process): ``start`` when the request
is sent, ``end`` when its answer (or error) arrived.

Versions. A REST answer carries ``ETag: "<partition>-<offset>"`` (a delete that wrote
a tombstone answers 204 with the tombstone's ETag; one of a missing key writes nothing
and answers 204 without one: a *no-op delete*). Offsets of one key are totally ordered
(a key's partition never changes: the partition count is fixed), and that order is the
topic's order, i.e. the order in which writes took effect. The checker compares
versions by offset, never by ``seq``: a write that timed out may land later than a
write issued after it, and only the offset says which one won.

A write ends in one of (outcomes.py holds the one table of what an answer means):
- **acked**: 200/201 (put) or 204 (delete). Its offset is known (none for a no-op
  delete). It took effect no later than its ``end``.
- **refused**: 412 to a conditional write. Never applied.
- **failed**: any other 4xx, or a 503 whose code promises nothing was written
  (``not_owner``, ``catching_up``, ...). Never applied.
- **ambiguous**: a 503 whose code promises nothing, a code not in the table, a timeout,
  a dropped connection, any other answer. It may or may not take effect, at any later
  time (an old owner's producer may still be retrying it). Not a violation by itself.
A write still waiting for its answer is **pending**; it may already be visible.

The floor of a read. ``F(t)`` = the largest offset among writes acked (answer
received) before ``t``, puts and deletes alike. A read that began at ``rs`` must return
a version ``>= F(rs)``: that write finished before the read started, so the promise (a
write acknowledged by any node is visible to every later read on every node) requires
it. Writes acked while the read was in flight are concurrent with it: either answer is
right. The observed floor ``O(t)`` = the largest offset any read *returned* (a 200)
before ``t``; reads must not go back below it either (a committed record once served
stays).

Verdicts of a 200 ``{"name": "<key>#<seq>"}`` with offset ``o`` (violations in caps):
- the body must be a JSON object with this key as email and a name a put wrote: else
  PHANTOM_VALUE; that put must have started before the read ended: else FUTURE_VALUE;
  it must not have been refused (REFUSED_VISIBLE) or failed (FAILED_VISIBLE).
- one offset <-> one write: if ``seq`` has a known offset (acked or seen before) it
  must be ``o``, and ``o`` must not be known for another seq: else ETAG_MISMATCH.
  The partition in every ETag of a key must agree: else ETAG_PARTITION.
- ``o < F(rs)``: STALE (an acknowledged write or delete, finished before the read
  began, is not visible). ``o < O(rs)``: NON_MONOTONIC.
- ``o >= F(rs)`` and the write is ambiguous or pending: acceptable as a later value only
  if it was not over before the floor write began. An ambiguous write whose answer came
  *before* the floor write was even sent, and which now shows over it, took effect
  after a later write was acknowledged: LATE_AMBIGUOUS (kstate promises more than
  linearizability here: a write it answered 503 must not land over a write issued after
  that answer). The workload keeps one write per key in flight, so every earlier write
  of a key was over before the next began; the rule is exact either way.
- otherwise ok.
A 404 (and a no-op delete, which says the owner found the key missing, and a 201) is
judged by whether the key can have been absent: let ``m`` be the newest version known
before ``rs`` (``max(F(rs), O(rs))``). No ``m``, or ``m`` a tombstone: ok. ``m`` a put:
ok only if some delete can have put a tombstone above ``m`` before the answer, sent
before the answer and either acked with an offset above ``m``, or pending/ambiguous
(refused, failed and no-op deletes write nothing); else SPURIOUS_404 (a no-op delete:
SPURIOUS_NOOP, a 201: SPURIOUS_CREATE). The answer-time rule applies to deletes too:
an ambiguous delete answered before an acked write at or below ``m`` began cannot
land above ``m``; if only such deletes explain the answer, it is LATE_AMBIGUOUS (the
delete landed late, or the answer is wrong: either breaks a promise, and neither
shows to Porcupine, which lets an unknown write take effect at any time). An answer
that only a delete of unknown fate explains is ok for now and judged again by the
audit once the topic says whether and where that delete landed (a ``Recheck``).
The final verification reads every key from every live node after the workload
stopped and the group is stable; there a STALE or SPURIOUS_404 is a LOST_WRITE, and
the audit compares each of those reads (``closing``) with the key's last record in
the topic: FINAL_STATE_MISMATCH if a node serves anything else.

Verdicts of a write answer:
- put ack without ETag: NO_ETAG. Ack offset ``o <= F(ws)``, the floor when the write
  began: WRITE_REORDERED (a write issued after another was acknowledged must land after
  it). 201 Created although the key cannot have been absent (the 404 rule above, over
  the write's time): SPURIOUS_CREATE (the owner's state lacked a key that exists).
- 5xx other than 503, or 503 without Retry-After: BAD_5XX (the write is ambiguous too).
- any other unexpected status (the workload only sends valid requests): BAD_STATUS.
Conditional writes (``If-Match: "<p>-<base>"``, base = the version a read just
returned) are checked against the promise that the owner checks If-Match on its
caught-up state, serialized per key:
- 412: PRECONDITION_FAILED is fine if some other write of the key may have taken
  effect above ``base`` before the answer; if none can have (every other write is
  placed at or below ``base``, or began after the answer, or never applied),
  SPURIOUS_412; if only ambiguous writes answered before an acked write at or below
  ``base`` began can have (the answer-time rule), LATE_AMBIGUOUS. One excused by a
  write of unknown offset is judged again by the audit, with the writes' fates.
- the topic audit (audit.py) checks that the record right before a conditional write's
  record is ``base`` (acknowledged or not: a conditional write that lands over a
  version it did not see is a lost update): LOST_UPDATE.
Reads get the same status checks. Request errors are classified by the harness (a node
it just killed is ``node_down``, not a violation; an error from a node that was up for
the whole request is ERROR_ALIVE).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import orjson

from tools.chaos.outcomes import Op, classify

WriteState = Literal["pending", "acked", "ambiguous", "refused", "failed"]

ETAG_RE = re.compile(r'^"(\d+)-(\d+)"$')

# Verdict kinds that are fine; every other kind is a violation (VIOLATIONS lists the
# known ones; test_checker checks the list is complete).
OK_KINDS = frozenset({"ok", "ok_404", "acked", "unavailable", "ambiguous", "timeout",
                      "node_down", "no_node", "precondition_failed", "failed"})
VIOLATIONS = frozenset({
    "phantom_value", "future_value", "etag_mismatch", "etag_partition", "stale",
    "non_monotonic", "late_ambiguous", "spurious_404", "spurious_noop", "lost_write",
    "no_etag", "write_reordered", "spurious_create", "bad_5xx", "bad_status", "bad_body",
    "duplicate_write", "spurious_412", "refused_visible", "failed_visible", "lost_update",
    "final_state_mismatch", "answer_timeout", "error_alive", "node_crashed",
    "not_recovered", "shutdown_timeout", "start_failed", "unclean_exit", "linearizability",
    "checkers_disagree", "checker_error",
})
# The violations a single history can show to a linearizability checker: if the own
# checker finds one of these, Porcupine must find the history illegal too, and the other
# way round (report.py compares). The others are about the topic (the audit), about
# processes, or stricter than linearizability (late_ambiguous: kstate promises that a
# write answered 503 does not land over one issued after that answer).
HISTORY_VIOLATIONS = frozenset({
    "phantom_value", "future_value", "stale", "non_monotonic", "spurious_404",
    "spurious_noop", "lost_write", "write_reordered", "spurious_create", "spurious_412",
    "refused_visible", "failed_visible",
})


def value_for(key: str, seq: int) -> bytes:
    """The exact body the workload PUTs for write ``seq`` of ``key``."""
    return orjson.dumps({"name": f"{key}#{seq}", "email": key})


def parse_etag(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    m = ETAG_RE.match(raw.strip())
    return None if m is None else (int(m.group(1)), int(m.group(2)))


@dataclass(slots=True)
class WriteRec:
    seq: int
    start: float
    end: float | None = None
    state: WriteState = "pending"
    offset: int | None = None
    if_match: int | None = None  # conditional write: the offset it was based on
    delete: bool = False  # a delete (writes a tombstone, or nothing if the key is missing)

    @property
    def may_tombstone_above(self) -> bool:
        """A delete that can have written a tombstone at an offset not yet known."""
        return self.delete and self.state in ("pending", "ambiguous") and self.offset is None


@dataclass(slots=True)
class Recheck:
    """An answer that was right only if a write of unknown fate took effect (a 404, a
    201 or a no-op delete excused by a delete, a 412 by a write, whose offset is not
    known): judged again by the audit, once the topic says where those writes landed."""
    what: Literal["absent", "412"]  # the key was absent (404, 201, no-op delete); 412
    kind: str  # the violation if nothing in the topic explains it
    key: str
    start: float
    end: float
    since: int  # absent: the newest offset known before start (a put's); 412: If-Match
    seq: int | None  # the answer's own write (it explains nothing); None for a read
    detail: str
    failed: bool = False  # set by the audit
    context: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Closing:
    """What one node served at the final verification: compared by the audit with the
    key's last record in the topic (FINAL_STATE_MISMATCH)."""
    key: str
    offset: int | None  # the 200's ETag offset; None for a 404
    seq: int | None
    ok: bool  # judged right when it arrived (a wrong answer is reported already)
    recheck: Recheck | None  # a 404 excused by a delete the audit judges again
    context: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str
    detail: str = ""
    # What the audit must judge again (Checker.record attaches the answer's context).
    later: tuple[Recheck | Closing, ...] = field(default=(), compare=False, repr=False)

    @property
    def violation(self) -> bool:
        """Fail closed: anything not known to be fine is a violation."""
        return self.kind not in OK_KINDS


OK = Verdict("ok")


class _Floor:
    """Offsets stamped with the time they became known; times arrive non-decreasing,
    so the floor at ``t`` is a prefix maximum found by bisection."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.maxes: list[int] = []
        self.seqs: list[int] = []  # seq holding the running maximum

    def add(self, t: float, offset: int, seq: int) -> None:
        if self.times and t < self.times[-1]:
            t = self.times[-1]  # same-tick completions; keep the list sorted
        if self.maxes and self.maxes[-1] >= offset:
            offset, seq = self.maxes[-1], self.seqs[-1]
        self.times.append(t)
        self.maxes.append(offset)
        self.seqs.append(seq)

    def before(self, t: float) -> tuple[int, int] | None:
        """(offset, seq) of the largest version known strictly before ``t``."""
        i = bisect.bisect_left(self.times, t)
        return None if i == 0 else (self.maxes[i - 1], self.seqs[i - 1])


@dataclass(slots=True)
class KeyHistory:
    key: str
    writes: dict[int, WriteRec] = field(default_factory=dict)
    next_seq: int = 0
    partition: int | None = None
    acked: _Floor = field(default_factory=_Floor)
    observed: _Floor = field(default_factory=_Floor)
    by_offset: dict[int, int] = field(default_factory=dict)  # offset -> seq

    def newest_before(self, t: float) -> tuple[int, int] | None:
        """(offset, seq) of the newest version acked or read before ``t``."""
        a, o = self.acked.before(t), self.observed.before(t)
        if a is None or o is None:
            return a or o
        return a if a[0] >= o[0] else o

    def overtaken(self, w: WriteRec, at_most: int) -> WriteRec | None:
        """An acknowledged write at an offset ``<= at_most`` that began after ``w``
        (not acknowledged) was answered: ``w`` may not land above it (the answer-time
        rule), so not above ``at_most`` either. None if there is none."""
        if w.end is None or w.state == "acked":
            return None
        for a in self.writes.values():
            if (a.state == "acked" and a.offset is not None and a.offset <= at_most
                    and a.start > w.end):
                return a
        return None


class Checker:
    """Holds every key's history; judges answers. Synchronous: the harness calls it
    from its single trio thread, in the order answers arrive."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = list(keys)
        self.hist = {k: KeyHistory(k) for k in keys}
        self.violations: list[dict[str, object]] = []
        self.rechecks: list[Recheck] = []  # judged again by the audit
        self.closing: list[Closing] = []  # the final verification's reads

    # -- writes ----------------------------------------------------------------
    def begin_write(self, key: str, start: float, if_match: int | None = None,
                    delete: bool = False) -> tuple[int, bytes | None]:
        """A new write of ``key``: its seq and the body to PUT (None for a delete)."""
        h = self.hist[key]
        seq = h.next_seq
        h.next_seq += 1
        h.writes[seq] = WriteRec(seq, start, if_match=if_match, delete=delete)
        return seq, None if delete else value_for(key, seq)

    def end_write(self, key: str, seq: int, end: float, status: int | None,
                  etag: str | None, retry_after: bool, body: bytes = b"",
                  code: str | None = None) -> Verdict:
        """``status`` None = request error or timeout (the harness classifies those;
        here they only make the write ambiguous). ``code``: the error code of the body."""
        h = self.hist[key]
        w = h.writes[seq]
        w.end = end
        op: Op = "delete" if w.delete else "put"
        if not w.delete and status in (200, 201):
            return self._acked(h, w, end, status, etag, body)
        if w.delete and status == 204:
            return self._acked_delete(h, w, end, etag)
        if status == 412 and w.if_match is not None:
            return self._refused(h, w)
        w.state = "failed" if classify(op, status, code) == "fail" else "ambiguous"
        if status is None:
            return Verdict("ambiguous")
        verdict = self._status_verdict(status, retry_after)
        if verdict is None:
            return Verdict("bad_status", f"{op} {key} seq={seq} answered {status} {code}")
        if verdict.kind == "unavailable" and w.state == "failed":
            return Verdict("failed")
        return verdict

    def _refused(self, h: KeyHistory, w: WriteRec) -> Verdict:
        """412 to ``If-Match: <base>``: right if ``base`` is a tombstone (an absent key
        matches no ETag), or if another write may have taken effect over ``base`` before
        the answer: one acked or seen at a later offset, or one whose offset is unknown
        (not known to have failed) and that the answer-time rule lets land above
        ``base``; the latter is judged again by the audit."""
        w.state = "refused"
        base = w.if_match
        assert base is not None
        assert w.end is not None
        known = h.by_offset.get(base)
        if known is not None and h.writes[known].delete:
            return Verdict("precondition_failed")
        unknown: WriteRec | None = None
        late: tuple[WriteRec, WriteRec] | None = None
        for other in h.writes.values():
            if other is w or other.state in ("refused", "failed") or other.start >= w.end:
                continue
            if other.state == "acked" and other.delete and other.offset is None:
                continue  # a no-op delete wrote nothing
            if other.offset is not None:
                if other.offset > base:
                    return Verdict("precondition_failed")
                continue
            a = h.overtaken(other, base)
            if a is None:
                unknown = other
            elif late is None:
                late = (other, a)
        what = f"{self._op(w)} {h.key} seq={w.seq} If-Match {base}"
        if unknown is not None:
            rc = self._recheck("412", "spurious_412", h, w.start, w.end, base, w.seq,
                               f"{what}: 412, excused by writes of unknown fate")
            return Verdict("precondition_failed", later=(rc,))
        if late is not None:
            x, a = late
            return Verdict("late_ambiguous",
                           f"{what}: 412, which only {x.state} seq={x.seq} landing above "
                           f"{base} explains, but it was answered {a.start - (x.end or 0):.3f}"
                           f"s before acked seq={a.seq}@{a.offset} began")
        return Verdict("spurious_412",
                       f"{what}: 412, but no other write of the key can be newer than "
                       f"offset {base}")

    def _acked(self, h: KeyHistory, w: WriteRec, end: float, status: int,
               etag: str | None, body: bytes) -> Verdict:
        w.state = "acked"
        parsed = parse_etag(etag)
        if parsed is None:
            w.state = "ambiguous"  # cannot place it; judged as ambiguous from now on
            return Verdict("no_etag", f"PUT {h.key} seq={w.seq} {status} ETag={etag!r}")
        part, off = parsed
        bad = self._place(h, w.seq, part, off, "PUT")
        floor = h.acked.before(w.start)
        h.acked.add(end, off, w.seq)
        if bad is not None:
            return bad
        if body and body != value_for(h.key, w.seq):
            return Verdict("bad_body", f"PUT {h.key} seq={w.seq} echoed {body[:120]!r}")
        if floor is not None and off <= floor[0]:
            return Verdict("write_reordered",
                           f"PUT {h.key} seq={w.seq} acked at offset {off}, but seq="
                           f"{floor[1]} at offset {floor[0]} was acked before it began")
        if status == 201:
            return self._absent(h, w.start, end, w, "acked", "spurious_create",
                                f"PUT {h.key} seq={w.seq} answered 201 Created")
        return Verdict("acked")

    def _acked_delete(self, h: KeyHistory, w: WriteRec, end: float,
                      etag: str | None) -> Verdict:
        w.state = "acked"
        parsed = parse_etag(etag)
        if parsed is None:
            # Nothing written: the owner found the key missing.
            return self._absent(h, w.start, end, w, "acked", "spurious_noop",
                                f"DELETE {h.key} seq={w.seq} wrote nothing (key missing)")
        part, off = parsed
        bad = self._place(h, w.seq, part, off, "DELETE")
        floor = h.acked.before(w.start)
        h.acked.add(end, off, w.seq)
        if bad is not None:
            return bad
        if floor is not None and off <= floor[0]:
            return Verdict("write_reordered",
                           f"DELETE {h.key} seq={w.seq} acked at offset {off}, but seq="
                           f"{floor[1]} at offset {floor[0]} was acked before it began")
        return Verdict("acked")

    def _absent(self, h: KeyHistory, start: float, end: float, w: WriteRec | None,
                ok: str, wrong: str, what: str, final: bool = False) -> Verdict:
        """The verdict of an answer saying the key was absent in [start, end] (a 404, a
        201, a no-op delete ``w``): ``ok`` if it can have been (see the 404 rule in the
        module docstring), then judged again by the audit if only a delete of unknown
        fate explains it; LATE_AMBIGUOUS if only a delete the answer-time rule keeps
        below the newest version explains it; else ``wrong``."""
        newest = h.newest_before(start)
        if newest is None or h.writes[newest[1]].delete:
            return Verdict(ok)
        top = newest[0]
        unknown = False
        late: tuple[WriteRec, WriteRec] | None = None
        for d in h.writes.values():
            if d is w or not d.delete or d.start >= end:
                continue
            if d.state == "acked" and d.offset is not None and d.offset > top:
                return Verdict(ok)
            if d.may_tombstone_above:
                a = h.overtaken(d, top)
                if a is None:
                    unknown = True
                elif late is None:
                    late = (d, a)
        if unknown:
            rc = self._recheck("absent", wrong, h, start, end, top,
                               None if w is None else w.seq,
                               f"{what}; newest before: seq={newest[1]}@{top}; excused by "
                               "deletes of unknown fate", final)
            return Verdict(ok, later=(rc,))
        if late is not None:
            d, a = late
            return Verdict("late_ambiguous",
                           f"{what}; newest before: seq={newest[1]}@{top}; only {d.state} "
                           f"DELETE seq={d.seq} can explain it, but it was answered "
                           f"{a.start - (d.end or 0):.3f}s before acked seq={a.seq}@"
                           f"{a.offset} began")
        return Verdict(wrong, f"{what}, but the key existed (acked before: "
                              f"{h.acked.before(start)}, seen before: "
                              f"{h.observed.before(start)}) and no delete can have "
                              "removed it")

    def _recheck(self, what: Literal["absent", "412"], kind: str, h: KeyHistory,
                 start: float, end: float, since: int, seq: int | None, detail: str,
                 final: bool = False) -> Recheck:
        rc = Recheck(what, "lost_write" if final else kind, h.key, start, end, since, seq,
                     detail)
        self.rechecks.append(rc)
        return rc

    def _place(self, h: KeyHistory, seq: int, part: int, off: int, what: str
               ) -> Verdict | None:
        """Record that write ``seq`` sits at ``part``/``off``; a verdict if that
        contradicts what is known."""
        if h.partition is None:
            h.partition = part
        elif h.partition != part:
            return Verdict("etag_partition",
                           f"{what} {h.key} seq={seq}: partition {part}, before {h.partition}")
        w = h.writes[seq]
        other = h.by_offset.get(off)
        if other is not None and other != seq:
            return Verdict("etag_mismatch",
                           f"{what} {h.key}: offset {off} is seq={seq} now, seq={other} before")
        if w.offset is not None and w.offset != off:
            return Verdict("etag_mismatch",
                           f"{what} {h.key} seq={seq}: offset {off} now, {w.offset} before")
        w.offset = off
        h.by_offset[off] = seq
        return None

    # -- reads -----------------------------------------------------------------
    def judge_read(self, key: str, start: float, end: float, status: int,
                   body: bytes, etag: str | None, retry_after: bool,
                   final: bool = False, closing: bool = False) -> Verdict:
        """``final``: the workload has stopped (a wrong answer is a LOST_WRITE);
        ``closing``: a read of the final verification, whose 200 or 404 the audit also
        compares with the key's last record in the topic."""
        v = self._judge_read(key, start, end, status, body, etag, retry_after, final)
        if not closing or status not in (200, 404):
            return v
        h = self.hist[key]
        parsed = parse_etag(etag) if status == 200 else None
        rc = next((x for x in v.later if isinstance(x, Recheck)), None)
        c = Closing(key, None if parsed is None else parsed[1],
                    self.seq_of(h, body) if status == 200 else None,
                    not v.violation, rc)
        self.closing.append(c)
        return replace(v, later=(*v.later, c))

    def _judge_read(self, key: str, start: float, end: float, status: int,
                    body: bytes, etag: str | None, retry_after: bool, final: bool
                    ) -> Verdict:
        h = self.hist[key]
        if status == 404:
            return self._judge_404(h, start, end, final)
        if status != 200:
            return self._status_verdict(status, retry_after) or Verdict(
                "bad_status", f"GET {key} answered {status}: {body[:200]!r}")
        seq = self.seq_of(h, body)
        if seq is None:
            return Verdict("phantom_value", f"GET {key} returned {body[:200]!r}")
        w = h.writes[seq]
        if w.start >= end:
            return Verdict("future_value", f"GET {key} returned seq={seq} written after it")
        if w.state in ("refused", "failed"):
            return Verdict(f"{w.state}_visible",
                           f"GET {key} returned seq={seq}, which was answered as {w.state}")
        parsed = parse_etag(etag)
        if parsed is None:
            return Verdict("no_etag", f"GET {key} 200 ETag={etag!r}")
        part, off = parsed
        bad = self._place(h, seq, part, off, "GET")
        floor = h.acked.before(start)
        seen = h.observed.before(start)
        h.observed.add(end, off, seq)
        if bad is not None:
            return bad
        if floor is not None and off < floor[0]:
            kind = "lost_write" if final else "stale"
            what = "delete" if h.writes[floor[1]].delete else "write"
            return Verdict(kind, f"GET {key} returned seq={seq}@{off}; {what} seq={floor[1]}@"
                                 f"{floor[0]} was acked before the read began")
        if seen is not None and off < seen[0]:
            kind = "lost_write" if final else "non_monotonic"
            return Verdict(kind, f"GET {key} returned seq={seq}@{off}; seq={seen[1]}@"
                                 f"{seen[0]} was returned by a read that ended before")
        if w.state != "acked" and floor is not None and off > floor[0]:
            floor_write = h.writes[floor[1]]
            if w.end is not None and w.end < floor_write.start:
                return Verdict("late_ambiguous",
                               f"GET {key} returned {w.state} seq={seq}@{off} (answered "
                               f"{floor_write.start - w.end:.3f}s before acked seq="
                               f"{floor[1]}@{floor[0]} began) after that ack")
        return OK

    def _judge_404(self, h: KeyHistory, start: float, end: float, final: bool) -> Verdict:
        kind = "lost_write" if final else "spurious_404"
        return self._absent(h, start, end, None, "ok_404", kind, f"GET {h.key} answered 404",
                            final)

    def seq_of(self, h: KeyHistory, body: bytes) -> int | None:
        """The seq of the put whose exact value ``body`` is, else None."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict) or doc.get("email") != h.key or set(doc) != {
                "name", "email"}:
            return None
        name = doc.get("name")
        prefix = h.key + "#"
        if not isinstance(name, str) or not name.startswith(prefix):
            return None
        tail = name[len(prefix):]
        if not tail.isdigit() or int(tail) not in h.writes or h.writes[int(tail)].delete:
            return None
        seq = int(tail)
        return seq if body == value_for(h.key, seq) else None

    @staticmethod
    def _op(w: WriteRec) -> str:
        return "DELETE" if w.delete else "PUT"

    @staticmethod
    def _status_verdict(status: int, retry_after: bool) -> Verdict | None:
        if status == 503:
            return Verdict("unavailable") if retry_after else Verdict(
                "bad_5xx", "503 without Retry-After")
        if status >= 500:
            return Verdict("bad_5xx", f"status {status}")
        return None

    # -- the topic itself ---------------------------------------------------------------
    def audit(self, records: Mapping[str, Sequence[tuple[int, bytes | None]]],
              compacted: set[int]) -> list[Verdict]:
        """Judge the topic as Kafka holds it after the run (see audit.py)."""
        from tools.chaos.audit import audit

        return audit(self, records, compacted)

    # -- bookkeeping -------------------------------------------------------------
    def record(self, verdict: Verdict, **context: object) -> None:
        for later in verdict.later:
            later.context.update(context)
        if verdict.violation:
            self.violations.append({"kind": verdict.kind, "detail": verdict.detail,
                                    **context})

    def last_acked(self, key: str) -> tuple[int, int] | None:
        """(offset, seq) of the newest acknowledged write of ``key``."""
        return self.hist[key].acked.before(float("inf"))

    def partition_of(self, key: str) -> int | None:
        return self.hist[key].partition
