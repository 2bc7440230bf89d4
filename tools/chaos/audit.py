"""The topic audit: after the run, the checked keys' records as Kafka holds them, judged
against every write the harness sent (checker.py keeps those).

Per key, in offset order:
- a value record must be a put we sent (PHANTOM_VALUE), at the offset its ETag said
  (ETAG_MISMATCH), once (DUPLICATE_WRITE: a produce retried into a second record), and
  not one answered 412 (REFUSED_VISIBLE) or failed (FAILED_VISIBLE);
- a tombstone (null value) is a delete we sent: the one acknowledged at that offset, or
  else one of the deletes whose fate is unknown (each explains one tombstone); a
  tombstone nothing can explain is a PHANTOM_VALUE;
- a conditional write's record must come right after the version it was based on
  (LOST_UPDATE: it landed over a version it never saw; not judged in a compacted
  partition, where records are missing);
- every acknowledged write (a delete's tombstone too) must be there (LOST_WRITE; in a
  compacted partition only the newest acknowledged write of a key is sure to be);
- no ambiguous write may sit after an acknowledged write that began after its answer
  (LATE_AMBIGUOUS: an older owner's late write over a newer acknowledged one, whether
  or not a reader happened to see it): a put by its value; a tombstone that no
  acknowledged delete wrote, when every delete of unknown fate that could have written
  it was answered before an acknowledged write below it began.
Then, with the fates of the writes known:
- every answer the checker let pass only because a write of unknown fate may have taken
  effect (checker.Recheck) is judged again: a 404, a 201 or a no-op delete needs a
  tombstone above the newest version known before it began, a 412 a record above its
  If-Match, in either case one that can have been written before the answer (not in a
  compacted partition, where records are missing): else SPURIOUS_404 (LOST_WRITE at
  the final verification), SPURIOUS_CREATE, SPURIOUS_NOOP, SPURIOUS_412;
- every read of the final verification must have served the key's last record: its
  offset and value, or a 404 for a tombstone or a key without records
  (FINAL_STATE_MISMATCH; a read already judged wrong is not counted twice).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kstate.core.messages import Record
from kstate.core.records import VERSION_HEADER, Ignored, Marker, Upsert, decide
from tools.chaos.checker import Closing, KeyHistory, Recheck, Verdict, WriteRec

if TYPE_CHECKING:
    from tools.chaos.checker import Checker


def as_applied(raw: Mapping[int, Sequence[Record]], partitions: int, keys: set[str]
               ) -> tuple[dict[str, list[tuple[int, bytes | None]]], set[int], Counter[str]]:
    """The topic as the nodes apply it (kstate/core/records.py): ``keys``' records that
    changed state, as (offset, value) in offset order; the partitions compaction left
    gaps in; what was not applied, by reason. Owners' markers raise the epoch; fenced
    writes (a zombie's) and conditional writes whose condition failed change nothing;
    a repair restates what is there: the value and its version, or the key's absence
    (a tombstone of a key that is not there: the writer never produces such a delete)."""
    by_key: defaultdict[str, list[tuple[int, bytes | None]]] = defaultdict(list)
    compacted: set[int] = set()
    not_applied: Counter[str] = Counter()
    for p, recs in raw.items():
        if recs and (recs[0].offset != 0 or recs[-1].offset + 1 != len(recs)):
            compacted.add(p)
        epoch = -1
        versions: dict[bytes, int] = {}
        for r in recs:
            d = decide(r, p, partitions, epoch, versions.get)
            if isinstance(d, Marker):
                epoch = max(epoch, d.epoch)
                continue
            if isinstance(d, Ignored):
                not_applied[d.reason] += 1
                continue
            if isinstance(d, Upsert):
                versions[d.key] = d.version
                if any(name == VERSION_HEADER for name, _ in r.headers):
                    not_applied["repair"] += 1
                    continue
            elif d.key not in versions and p not in compacted:
                # (in a compacted partition the key's earlier records may be gone)
                not_applied["repair"] += 1
                continue
            else:
                versions.pop(d.key, None)
            key = r.key.decode(errors="replace") if r.key is not None else ""
            if key in keys:
                by_key[key].append((r.offset, r.value))
    return dict(by_key), compacted, not_applied


def audit(checker: Checker, records: Mapping[str, Sequence[tuple[int, bytes | None]]],
          compacted: set[int]) -> list[Verdict]:
    """``records`` maps each key to its (offset, value) in offset order; ``compacted``
    partitions have gaps. Returns every violation found."""
    out: list[Verdict] = []
    rechecks: defaultdict[str, list[Recheck]] = defaultdict(list)
    for rc in checker.rechecks:
        rechecks[rc.key].append(rc)
    closing: defaultdict[str, list[Closing]] = defaultdict(list)
    for c in checker.closing:
        closing[c.key].append(c)
    for key, h in checker.hist.items():
        recs = records.get(key, [])
        out += _audit_key(checker, h, recs, compacted)
        if h.partition not in compacted:
            out += [v for rc in rechecks[key] if (v := _recheck(checker, h, rc, recs))]
        out += [v for c in closing[key] if (v := _closing(checker, h, c, recs))]
    return out


def _where(context: Mapping[str, object]) -> str:
    """`` (node=n1, source=workload, t=12.5)``: where the answer came from, if known."""
    parts = [f"{k}={context[k]}" for k in ("node", "source", "t") if k in context]
    return f" ({', '.join(parts)})" if parts else ""


def _recheck(checker: Checker, h: KeyHistory, rc: Recheck,
             recs: Sequence[tuple[int, bytes | None]]) -> Verdict | None:
    """None if a record above ``rc.since`` can explain the answer, else its violation.
    Offsets grow in the order records are appended: from the first record above
    ``since`` written by a write that began after the answer (or by the answer's own
    write), nothing can have been there in time; a record whose writer began before
    may still have landed after the answer (not knowable: let it explain)."""
    for off, value in recs:
        if off <= rc.since:
            continue
        if value is None:
            seq = h.by_offset.get(off)
            if seq is None:
                # a tombstone of a delete of unknown fate (the audit matched them)
                if any(d.may_tombstone_above and d.seq != rc.seq and d.start < rc.end
                       for d in h.writes.values()):
                    return None
                break  # written by a delete sent after the answer (or by none of ours)
        else:
            seq = checker.seq_of(h, value)
            if seq is None:
                continue  # a phantom, reported by the audit
        w = h.writes[seq]
        if w.start >= rc.end or seq == rc.seq:
            break  # (a 201 says the key was absent below its own record)
        if rc.what == "412" or w.delete:
            return None
    rc.failed = True
    return Verdict(rc.kind, f"{rc.detail}{_where(rc.context)}, but the topic holds no "
                            f"record above offset {rc.since} that can have been written "
                            "before the answer and explain it")


def _closing(checker: Checker, h: KeyHistory, c: Closing,
             recs: Sequence[tuple[int, bytes | None]]) -> Verdict | None:
    """A read of the final verification against the key's last record."""
    if not c.ok or (c.recheck is not None and c.recheck.failed):
        return None  # reported already
    last = recs[-1] if recs else None
    if last is None or last[1] is None:
        want: tuple[int | None, int | None] = (None, None)
    else:
        want = (last[0], checker.seq_of(h, last[1]))
    if (c.offset, c.seq) == want:
        return None
    served = "404" if c.offset is None else f"seq={c.seq}@{c.offset}"
    topic = ("no record" if last is None else f"a tombstone@{last[0]}" if last[1] is None
             else f"seq={want[1]}@{want[0]}")
    return Verdict("final_state_mismatch",
                   f"final GET {h.key}{_where(c.context)} served {served}, but the "
                   f"topic's last applied record of the key is {topic}")


def _audit_key(checker: Checker, h: KeyHistory, recs: Sequence[tuple[int, bytes | None]],
               compacted: set[int]) -> list[Verdict]:
    out: list[Verdict] = []
    key = h.key
    at: dict[int, int] = {}  # seq -> offset in the topic
    prev: int | None = None  # offset of the key's record before this one
    unsure = sum(1 for w in h.writes.values() if w.may_tombstone_above)
    for off, value in recs:
        if value is None:
            seq = h.by_offset.get(off)
            if seq is not None and not h.writes[seq].delete:
                out.append(Verdict("etag_mismatch", f"topic {key}@{off}: a tombstone where "
                                                    f"put seq={seq} was answered"))
                prev = off
                continue
            if seq is None:
                if unsure == 0:
                    out.append(Verdict("phantom_value",
                                       f"topic {key}@{off}: a tombstone no delete of ours "
                                       "can have written"))
                else:
                    late = _late_tombstone(h, off)
                    if late is not None:
                        out.append(late)
                unsure -= 1
                prev = off
                continue
        else:
            seq = checker.seq_of(h, value)
            if seq is None:
                out.append(Verdict("phantom_value", f"topic {key}@{off}: {value!r:.120}"))
                continue
        if seq in at:
            out.append(Verdict("duplicate_write",
                               f"topic {key}: seq={seq} at {at[seq]} and {off}"))
            continue
        w = h.writes[seq]
        if w.state in ("refused", "failed"):
            out.append(Verdict(f"{w.state}_visible",
                               f"topic {key}@{off}: seq={seq} was answered as {w.state}"))
        if w.if_match is not None and prev != w.if_match and h.partition not in compacted:
            out.append(Verdict(
                "lost_update",
                f"topic {key}@{off}: seq={seq} ({w.state}) was written If-Match "
                f"{w.if_match}, but the record before it is at {prev}"))
        prev = off
        at[seq] = off
        if w.offset is not None and w.offset != off:
            out.append(Verdict("etag_mismatch",
                               f"topic {key}: seq={seq} at {off}, ETag said {w.offset}"))
    newest = checker.last_acked(key)
    acked: list[tuple[int, WriteRec]] = sorted(
        ((w.offset, w) for w in h.writes.values()
         if w.state == "acked" and w.offset is not None), key=lambda pair: pair[0])
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


def _late_tombstone(h: KeyHistory, off: int) -> Verdict | None:
    """LATE_AMBIGUOUS when every delete of unknown fate that could have written the
    tombstone at ``off`` was answered before an acknowledged write below ``off`` began
    (the put rule above, for a record that does not name its write)."""
    late: list[tuple[WriteRec, WriteRec]] = []
    for d in h.writes.values():
        if not d.may_tombstone_above:
            continue
        a = h.overtaken(d, off - 1)
        if a is None:
            return None
        late.append((d, a))
    if not late:
        return None
    d, a = late[-1]
    return Verdict("late_ambiguous",
                   f"topic {h.key}: a tombstone at {off} that only deletes answered before "
                   f"an acked write below it began can have written (e.g. {d.state} "
                   f"seq={d.seq}, answered {a.start - (d.end or 0):.3f}s before acked "
                   f"seq={a.seq}@{a.offset} began)")
