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
- no ambiguous put may sit after an acknowledged write that began after its answer
  (LATE_AMBIGUOUS: an older owner's late write over a newer acknowledged one, whether
  or not a reader happened to see it).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kstate.core.messages import Record
from kstate.core.records import VERSION_HEADER, Ignored, Marker, Upsert, decide
from tools.chaos.checker import KeyHistory, Verdict, WriteRec

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
    for key, h in checker.hist.items():
        out += _audit_key(checker, h, records.get(key, []), compacted)
    return out


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

