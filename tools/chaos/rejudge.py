"""``python -m tools.chaos.rejudge chaos-results/<run>.history.jsonl``: judge a saved
history again with the checker as it is now, in the order the run judged it, and list
every answer whose verdict differs from the one the run recorded, then every violation.
Exits 0 if the verdicts are the same and nothing is a violation, else 1.

The history holds what the checker saw of each answer (history.py) except:
- the topic: the audit (audit.py) and what it judges again (the answers only writes of
  unknown fate excused, the final reads against the topic's last records) need the
  run's topic, and a run with a Kafka of its own deletes it. Not re-judged here.
- the body a put's acknowledgement echoed (``bad_body``) and whether a 5xx carried
  Retry-After: taken from the recorded verdict (``bad_5xx`` or not).
- request errors: the harness judges those (``node_down``, ``timeout``, ...); the checker
  only learns that the write is ambiguous, so their verdicts are not compared.

Writes are begun in the order of their ids (the order the run began them, so each gets
the seq its value names) before the first answer that arrived after their call;
answers are judged in the order of the file, which is the order the run judged them.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tools.chaos.checker import Checker, Verdict, value_for

FINAL_SOURCES = frozenset({"verify", "final"})  # read with final=True (phases.py)


def _etag(op: dict[str, Any]) -> str | None:
    result = op.get("result")
    version = result.get("version") if isinstance(result, dict) else None
    return None if version is None else f'"{version}"'


def _body(key: str, value: str | None) -> bytes:
    """The body a get 200 returned, rebuilt from the history's ``value``."""
    if value is None:
        return b""
    prefix = key + "#"
    if value.startswith(prefix) and value[len(prefix):].isdigit():
        return value_for(key, int(value[len(prefix):]))
    return value.encode()  # a value no put wrote: history.py stored the body itself


def rejudge(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Replay ``lines`` (the history without its meta line); the differences, the
    violations and the verdict counts."""
    ops = [op for op in lines if op.get("type") != "meta"]
    checker = Checker(sorted({op["key"] for op in ops}))
    writes = sorted((op for op in ops if op["op"] != "get"), key=lambda op: op["id"])
    seqs: dict[int, int] = {}  # history id -> seq
    begun = 0
    differ: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    bad_seq = 0

    def begin_until(t: float, last_id: int) -> None:
        nonlocal begun, bad_seq
        while begun < len(writes) and (writes[begun]["call"] <= t
                                        or writes[begun]["id"] <= last_id):
            w = writes[begun]
            begun += 1
            if_match = w.get("if_match")
            base = None if if_match is None else int(if_match.strip('"').split("-")[1])
            seq, _ = checker.begin_write(w["key"], w["call"], base,
                                         delete=w["op"] == "delete")
            seqs[w["id"]] = seq
            if w["value"] is not None and w["value"] != f"{w['key']}#{seq}":
                bad_seq += 1

    for op in ops:
        if op["return"] is None:
            continue  # never answered (the run ended): a write stays pending
        begin_until(op["return"], op["id"] if op["op"] != "get" else -1)
        key, status = op["key"], op["status"]
        retry_after = op["verdict"] != "bad_5xx"
        v: Verdict
        if op["op"] == "get":
            if status is None:
                continue  # a request error: the harness's verdict
            v = checker.judge_read(key, op["call"], op["return"], status,
                                   _body(key, (op.get("result") or {}).get("value")),
                                   _etag(op), retry_after,
                                   final=op["source"] in FINAL_SOURCES,
                                   closing=op["source"] == "final")
        else:
            v = checker.end_write(key, seqs[op["id"]], op["return"], status,
                                  _etag(op), retry_after, code=op["code"])
            if status is None:
                continue
        checker.record(v, id=op["id"], key=key, source=op["source"], node=op["node"],
                       t=op["call"])
        kinds[v.kind] += 1
        if v.kind != op["verdict"]:
            differ.append({"id": op["id"], "key": key, "source": op["source"],
                           "recorded": op["verdict"], "now": v.kind, "detail": v.detail})
    return {"ops": len(ops), "verdicts": dict(kinds), "differ": differ,
            "violations": checker.violations, "seq_mismatches": bad_seq,
            "rechecks": [(rc.kind, rc.detail, rc.context) for rc in checker.rechecks]}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    lines = [orjson.loads(raw) for raw in Path(args[0]).read_bytes().splitlines() if raw]
    r = rejudge(lines)
    print(f"{r['ops']} operations; verdicts now: {dict(sorted(r['verdicts'].items()))}")
    if r["seq_mismatches"]:
        print(f"{r['seq_mismatches']} writes replayed with another seq than their value "
              "names: the replay is not faithful")
    print(f"{len(r['differ'])} verdicts differ from the run's")
    for d in r["differ"][:50]:
        print(f"  id={d['id']} {d['source']} {d['key']}: {d['recorded']} -> {d['now']}: "
              f"{d['detail'][:300]}")
    print(f"{len(r['rechecks'])} answers only writes of unknown fate excused (the audit "
          "judges them again with the run's topic, not here)")
    for kind, detail, context in r["rechecks"][:20]:
        print(f"  if nothing in the topic explains it, {kind}: {detail[:200]} {context}")
    print(f"{len(r['violations'])} violations")
    for v in r["violations"][:50]:
        print(f"  {v['kind']}: {str(v['detail'])[:300]}")
    clean = not (r["differ"] or r["violations"] or r["seq_mismatches"])
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
