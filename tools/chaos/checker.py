"""The chaos checker: a per-key history of writes and a verdict for every answer.

What is checked, and why it is sound
====================================
The workload never deletes. Before the chaos starts every key is written once and
acknowledged (seq 0), so every key exists for the whole run. Every write carries a
value no other write carries: ``{"name": "<key>#<seq>", "email": "<key>"}``, with ``seq``
unique per key, so a read names the write it returns. All times are one clock
(``time.monotonic()`` of the harness process): ``start`` when the request is sent,
``end`` when its answer (or error) arrived.

Versions. A REST answer carries ``ETag: "<partition>-<offset>"``. Offsets of one key
are totally ordered (a key's partition never changes: the partition count is fixed),
and that order is the topic's order, i.e. the order in which writes took effect.
The checker compares versions by offset, never by ``seq``: a write that timed out may
land later than a write issued after it, and only the offset says which one won.

A write ends in one of:
- **acked**: 200/201 with an ETag. Its offset is known. It took effect no later than
  its ``end``.
- **ambiguous**: 503 (+Retry-After), a timeout, a dropped connection, or any other
  answer that is not an ack. It may or may not take effect, at any later time (an
  old owner's producer may still be retrying it). It is *not* a violation by itself.
A write still waiting for its answer is **pending**; it may already be visible.

The floor of a read. ``F(t)`` = the largest offset among writes acked (answer
received) before ``t``. A read that began at ``rs`` must return a version ``>= F(rs)``:
that write finished before the read started, so the promise (§5 rule 2: a write
acknowledged by any node is visible to every later read on every node) requires it.
Writes acked while the read was in flight are concurrent with it: either answer is
right. The observed floor ``O(t)`` = the largest offset any read *returned* before
``t``; reads must not go back below it either (a committed record once served stays).

Verdicts of a 200 ``{"name": "<key>#<seq>"}`` with offset ``o`` (violations in caps):
- the body must be a JSON object with this key as email and a name we wrote:
  else PHANTOM_VALUE; the write must have started before the read ended: else
  FUTURE_VALUE.
- one offset <-> one write: if ``seq`` has a known offset (acked or seen before) it
  must be ``o``, and ``o`` must not be known for another seq: else ETAG_MISMATCH.
  The partition in every ETag of a key must agree: else ETAG_PARTITION.
- ``o < F(rs)``: STALE (an acknowledged write, finished before the read began, is not
  visible). ``o < O(rs)``: NON_MONOTONIC (a reader saw a newer committed version
  earlier).
- ``o >= F(rs)`` and the write is ambiguous or pending: acceptable as a later value only
  if it was not over before the floor write began (the brief's rule: it was written
  after the last acked write began, or concurrently with it). An ambiguous write whose
  answer (503/timeout) came *before* the floor write was even sent, and which now shows
  over it, took effect after a later write was acknowledged: LATE_AMBIGUOUS. (The
  workload keeps one write per key in flight, so every earlier write of a key was over
  before the next began; the rule is exact either way.)
- otherwise ok.
A 404: SPURIOUS_404 if ``F(rs)`` or ``O(rs)`` exists (the key exists: no deletes), else ok
(cannot happen after the seeding phase, but kept exact).
The final verification reads every key from every live node after the workload
stopped and the group is stable; there a STALE or SPURIOUS_404 is a LOST_WRITE.

Verdicts of a write answer:
- ack without ETag: NO_ETAG. Ack offset ``o <= F(ws)``, the floor when the write began:
  WRITE_REORDERED (a write issued after another was acknowledged must land after it).
  201 Created although ``F(ws)`` or ``O(ws)`` exists: SPURIOUS_CREATE (the owner's state
  lacked a key that exists: a lost write seen from the inside).
- 5xx other than 503, or 503 without Retry-After: BAD_5XX (the write is ambiguous too).
- any other unexpected status (the workload only sends valid requests): BAD_STATUS.
Conditional writes (``If-Match: "<p>-<base>"``, base = the version a read just
returned) are checked against the promise that the owner checks If-Match on its
caught-up state, serialized per key:
- 412: PRECONDITION_FAILED is fine if some other write of the key may have taken
  effect above ``base`` before the answer; if none can have (every other write is
  placed at or below ``base``, or began after the answer), SPURIOUS_412.
- a refused (412) write must never be visible: REFUSED_VISIBLE.
- in the topic, the record right before a conditional write's record must be
  ``base`` (acknowledged or not: a conditional write that lands over a version it did
  not see is a lost update): LOST_UPDATE.
Reads get the same status checks. Request errors are classified by the harness (a node
it just killed is ``node_down``, not a violation; an error from a node that was up for
the whole request is ERROR_ALIVE).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson

WriteState = Literal["pending", "acked", "ambiguous", "refused"]

ETAG_RE = re.compile(r'^"(\d+)-(\d+)"$')

# Verdict kinds that are fine; every other kind is a violation (VIOLATIONS lists the
# known ones; test_checker checks the list is complete).
OK_KINDS = frozenset({"ok", "ok_404", "acked", "unavailable", "ambiguous", "timeout",
                      "node_down", "no_node", "precondition_failed"})
VIOLATIONS = frozenset({
    "phantom_value", "future_value", "etag_mismatch", "etag_partition", "stale",
    "non_monotonic", "late_ambiguous", "spurious_404", "lost_write", "no_etag",
    "write_reordered", "spurious_create", "bad_5xx", "bad_status", "bad_body",
    "duplicate_write", "spurious_412", "refused_visible", "lost_update",
    "error_alive", "node_crashed", "not_recovered", "shutdown_timeout", "start_failed",
    "unclean_exit",
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


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str
    detail: str = ""

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


class Checker:
    """Holds every key's history; judges answers. Synchronous: the harness calls it
    from its single trio thread, in the order answers arrive."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = list(keys)
        self.hist = {k: KeyHistory(k) for k in keys}
        self.violations: list[dict[str, object]] = []

    # -- writes ----------------------------------------------------------------
    def begin_write(self, key: str, start: float, if_match: int | None = None
                    ) -> tuple[int, bytes]:
        h = self.hist[key]
        seq = h.next_seq
        h.next_seq += 1
        h.writes[seq] = WriteRec(seq, start, if_match=if_match)
        return seq, value_for(key, seq)

    def end_write(self, key: str, seq: int, end: float, status: int | None,
                  etag: str | None, retry_after: bool, body: bytes = b"") -> Verdict:
        """``status`` None = request error or timeout (the harness classifies those;
        here they only make the write ambiguous)."""
        h = self.hist[key]
        w = h.writes[seq]
        w.end = end
        if status in (200, 201):
            return self._acked(h, w, end, status, etag, body)
        if status == 412 and w.if_match is not None:
            return self._refused(h, w)
        w.state = "ambiguous"
        if status is None:
            return Verdict("ambiguous")
        return self._status_verdict(status, retry_after) or Verdict(
            "bad_status", f"PUT {key} seq={seq} answered {status}")

    def _refused(self, h: KeyHistory, w: WriteRec) -> Verdict:
        """412 to ``If-Match: <base>``: right only if another write may have taken
        effect over ``base`` before the answer (acked or seen at a later offset, or
        not known to have failed and not placed below it)."""
        w.state = "refused"
        base = w.if_match
        assert base is not None
        assert w.end is not None
        for other in h.writes.values():
            if other is w or other.state == "refused" or other.start >= w.end:
                continue
            if other.offset is None or other.offset > base:
                return Verdict("precondition_failed")
        return Verdict("spurious_412",
                       f"PUT {h.key} seq={w.seq} If-Match {base}: 412, but no other write "
                       f"of the key can be newer than offset {base}")

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
        seen = h.observed.before(w.start)
        h.acked.add(end, off, w.seq)
        if bad is not None:
            return bad
        if body and body != value_for(h.key, w.seq):
            return Verdict("bad_body", f"PUT {h.key} seq={w.seq} echoed {body[:120]!r}")
        if floor is not None and off <= floor[0]:
            return Verdict("write_reordered",
                           f"PUT {h.key} seq={w.seq} acked at offset {off}, but seq="
                           f"{floor[1]} at offset {floor[0]} was acked before it began")
        if status == 201 and (floor is not None or seen is not None):
            return Verdict("spurious_create",
                           f"PUT {h.key} seq={w.seq} answered 201 Created, but the key "
                           f"existed (acked {floor}, seen {seen})")
        return Verdict("acked")

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
                   final: bool = False) -> Verdict:
        h = self.hist[key]
        if status == 404:
            return self._judge_404(h, start, final)
        if status != 200:
            return self._status_verdict(status, retry_after) or Verdict(
                "bad_status", f"GET {key} answered {status}: {body[:200]!r}")
        seq = self._seq_of(h, body)
        if seq is None:
            return Verdict("phantom_value", f"GET {key} returned {body[:200]!r}")
        w = h.writes[seq]
        if w.start >= end:
            return Verdict("future_value", f"GET {key} returned seq={seq} written after it")
        if w.state == "refused":
            return Verdict("refused_visible", f"GET {key} returned seq={seq}, refused with 412")
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
            return Verdict(kind, f"GET {key} returned seq={seq}@{off}; seq={floor[1]}@"
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

    def _judge_404(self, h: KeyHistory, start: float, final: bool) -> Verdict:
        floor = h.acked.before(start)
        seen = h.observed.before(start)
        if floor is None and seen is None:
            return Verdict("ok_404")
        kind = "lost_write" if final else "spurious_404"
        return Verdict(kind, f"GET {h.key} answered 404; acked before: {floor}, "
                             f"seen before: {seen}")

    @staticmethod
    def _seq_of(h: KeyHistory, body: bytes) -> int | None:
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
        if not tail.isdigit() or int(tail) not in h.writes:
            return None
        seq = int(tail)
        return seq if body == value_for(h.key, seq) else None

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
        """Judge the topic as Kafka holds it, after the run: ``records`` maps each key
        to its (offset, value) in offset order; ``compacted`` partitions have gaps.

        Every record of a key must be a write we sent (PHANTOM_VALUE), at the offset
        its ETag said (ETAG_MISMATCH), once (DUPLICATE_WRITE: a produce retried into a
        second record). Every acknowledged write must be there (LOST_WRITE; in a
        compacted partition only the newest acknowledged write of a key is sure to be).
        No ambiguous write may sit after a write that began after its answer
        (LATE_AMBIGUOUS, whether or not a reader happened to see it)."""
        out: list[Verdict] = []
        for key, h in self.hist.items():
            at: dict[int, int] = {}  # seq -> offset in the topic
            prev: int | None = None  # offset of the key's record before this one
            for off, value in records.get(key, []):
                seq = None if value is None else self._seq_of(h, value)
                if seq is None:
                    out.append(Verdict("phantom_value", f"topic {key}@{off}: {value!r:.120}"))
                    continue
                if seq in at:
                    out.append(Verdict("duplicate_write",
                                       f"topic {key}: seq={seq} at {at[seq]} and {off}"))
                    continue
                w = h.writes[seq]
                if w.state == "refused":
                    out.append(Verdict("refused_visible",
                                       f"topic {key}@{off}: seq={seq} was refused with 412"))
                if (w.if_match is not None and prev != w.if_match
                        and h.partition not in compacted):
                    out.append(Verdict(
                        "lost_update",
                        f"topic {key}@{off}: seq={seq} ({w.state}) was written If-Match "
                        f"{w.if_match}, but the record before it is at {prev}"))
                prev = off
                at[seq] = off
                if w.offset is not None and w.offset != off:
                    out.append(Verdict("etag_mismatch",
                                       f"topic {key}: seq={seq} at {off}, ETag said {w.offset}"))
            newest = self.last_acked(key)
            acked = sorted(((w.offset, w) for w in h.writes.values()
                            if w.state == "acked" and w.offset is not None),
                           key=lambda pair: pair[0])
            for off, w in acked:
                if w.seq not in at and (h.partition not in compacted
                                        or (newest is not None and newest[1] == w.seq)):
                    out.append(Verdict("lost_write",
                                       f"topic {key}: acked seq={w.seq}@{off} is not there"))
            for seq, off in at.items():
                x = h.writes[seq]
                if x.state == "acked" or x.end is None:
                    continue
                later = [a for a_off, a in acked if a_off < off and x.end < a.start]
                if later:
                    out.append(Verdict(
                        "late_ambiguous",
                        f"topic {key}: {x.state} seq={seq} landed at {off}, after acked "
                        f"seq={later[-1].seq}@{later[-1].offset} that began "
                        f"{later[-1].start - x.end:.3f}s after seq={seq} was answered"))
        return out

    # -- bookkeeping -------------------------------------------------------------
    def record(self, verdict: Verdict, **context: object) -> None:
        if verdict.violation:
            self.violations.append({"kind": verdict.kind, "detail": verdict.detail,
                                    **context})

    def last_acked(self, key: str) -> tuple[int, int] | None:
        """(offset, seq) of the newest acknowledged write of ``key``."""
        return self.hist[key].acked.before(float("inf"))

    def partition_of(self, key: str) -> int | None:
        return self.hist[key].partition
