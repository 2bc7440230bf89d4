"""Results of a chaos run: the JSON document and the summary table printed from it.

Per event, from the availability tracker (reads of every partition, see traffic.py):
- ``recover_s``: from the event until the last partition that failed after it answered
  correctly again (0 if nothing failed) — "time until every key answers again".
- ``outage_s``: the longest single partition outage after the event (for add/restart the
  outage starts when the new member joins, seconds after the process was started).
- ``all_keys_s``: from the event until the group was stable over the live nodes and a
  sweep had read every key correctly (the gate before the next event).
- ``write_recover_s``: from the event until the last workload write that was not
  acknowledged (before the next event); a broker kill shows here, not in reads.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from tools.chaos.checker import HISTORY_VIOLATIONS, VIOLATIONS

if TYPE_CHECKING:
    from tools.chaos.harness import ChaosConfig
    from tools.chaos.phases import Run
    from tools.chaos.schedule import Event
    from tools.chaos.traffic import Outage

TARGETS = {"kill9": 8.0, "term": 2.0, "remove": 2.0}
WITHIN = 2.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return round(s[i], 4)


def _hits(run: Run, i: int) -> list[Outage]:
    """Outages of event ``i``: their first failure arrived after it and before the
    next event (events fire only once the previous one was recovered from)."""
    events = run.events
    t_ev = events[i]["t_abs"]
    t_next = events[i + 1]["t_abs"] if i + 1 < len(events) else run.chaos_end
    return [o for o in run.traffic.avail.outages if t_ev <= o.seen < t_next]


def _windows(run: Run) -> list[dict[str, Any]]:
    out = []
    for i, rec in enumerate(run.events):
        t_ev = rec["t_abs"]
        row = {k: v for k, v in rec.items() if k != "t_abs"}
        row["t"] = run.rel(t_ev)
        if "skipped" not in rec:
            hit = _hits(run, i)
            row["recover_s"] = round(max((o.end for o in hit), default=t_ev) - t_ev, 3)
            row["outage_s"] = round(max((o.end - max(o.start, t_ev) for o in hit),
                                        default=0.0), 3)
            row["partitions_hit"] = len({o.partition for o in hit})
            t_next = (run.events[i + 1]["t_abs"] if i + 1 < len(run.events)
                      else run.chaos_end)
            failed = [end for end, ok in run.traffic.stats.writes
                      if not ok and t_ev <= end < t_next]
            row["writes_failed"] = len(failed)
            row["write_recover_s"] = round(max(failed, default=t_ev) - t_ev, 3)
        out.append(row)
    return out


def _event_windows(run: Run) -> list[tuple[float, float]]:
    """Per event: from the earlier of the event and the first failure it caused (a read
    in flight when a node was killed fails from its start) to the last recovery."""
    out = []
    for i, rec in enumerate(run.events):
        if "skipped" in rec:
            continue
        t_ev = rec["t_abs"]
        hit = _hits(run, i)
        out.append((min([t_ev] + [o.start for o in hit]), max([t_ev] + [o.end for o in hit])))
    return out


def _log_scan(run: Run) -> dict[str, dict[str, int]]:
    out = {}
    for m in run.cluster.members.values():
        text = m.node.log_text()
        errors = [line for line in text.splitlines()
                  if " ERROR " in line or "level=ERROR" in line]
        client = sum(1 for line in errors if "logger=aiokafka" in line)
        out[m.name] = {"starts": m.node.starts, "tracebacks": text.count("Traceback"),
                       "error_lines": len(errors) - client,
                       "aiokafka_error_lines": client}
    return out


def judge_checkers(run: Run, lin: dict[str, Any]) -> dict[str, Any]:
    """Both verdicts side by side; adds ``linearizability`` (Porcupine found a violation,
    or could not decide), ``checker_error`` and ``checkers_disagree`` violations. They
    disagree when one finds the history illegal and the other does not: the own checker
    counts only HISTORY_VIOLATIONS of answers (not the topic audit, not process problems,
    not late_ambiguous, which is stricter than linearizability)."""
    violations = run.checker.violations
    own_hist = [v for v in violations
                if v["kind"] in HISTORY_VIOLATIONS and v.get("source") != "audit"]
    history = run.traffic.history
    own_keys = sorted({str(v["key"]) for v in own_hist if "key" in v})
    por_keys: list[str] = list(lin.get("violating_keys") or [])
    own: dict[str, Any] = {
        "verdict": "FAIL" if violations else "PASS", "violations": len(violations),
        "history_violations": len(own_hist), "violating_keys": own_keys,
        "ops": history.ops, "keys": len(run.checker.keys),
        "seconds": round(run.traffic.check_seconds, 3)}
    verdict = lin.get("verdict")
    por: dict[str, Any] = {
        "verdict": verdict, "ops": lin.get("ops"), "ops_checked": lin.get("ops_checked"),
        "keys": lin.get("keys"), "seconds": lin.get("seconds"), "wall_s": lin.get("wall_s"),
        "unknown_ops": lin.get("unknown_ops"),
        "max_concurrency_per_key": lin.get("max_concurrency_per_key"),
        "violating_keys": por_keys, "timed_out_keys": lin.get("timed_out_keys") or [],
        "pictures": lin.get("picture_paths") or [], "summary": lin.get("summary"),
        "error": lin.get("error")}
    agree: bool | None = None
    if verdict == "violation":
        violations.append({"kind": "linearizability", "source": "porcupine",
                           "detail": f"{lin.get('summary')}; pictures: {por['pictures']}"})
    elif verdict == "unknown":
        violations.append({"kind": "linearizability", "source": "porcupine",
                           "detail": f"undecided: {lin.get('summary') or lin.get('error')}"})
    elif verdict != "linearizable":
        violations.append({"kind": "checker_error", "source": "porcupine",
                           "detail": str(lin.get("error"))[:2000]})
    if verdict in ("violation", "linearizable"):
        agree = bool(own_hist) == (verdict == "violation")
        if not agree:
            violations.append({
                "kind": "checkers_disagree", "source": "porcupine",
                "detail": f"own checker: {len(own_hist)} history violations "
                          f"(keys {own_keys[:10]}); porcupine: {verdict} "
                          f"(keys {por_keys[:10]})"})
    keys_own, keys_por = set(own_keys), set(por_keys)
    return {"own": own, "porcupine": por, "agree": agree,
            "keys_only_own": sorted(keys_own - keys_por),
            "keys_only_porcupine": sorted(keys_por - keys_own)}


def build_results(cfg: ChaosConfig, run: Run, schedule: list[Event], final: dict[str, Any],
                  started_at: str, out: Path, log_dir: Path, lin: dict[str, Any]
                  ) -> dict[str, Any]:
    from tools.chaos.harness import config_dict

    checkers = judge_checkers(run, lin)

    events = _windows(run)
    by_kind: dict[str, dict[str, Any]] = {}
    for row in events:
        if "skipped" in row:
            continue
        k = by_kind.setdefault(row["kind"], {"n": 0, "recover": [], "outage": [],
                                             "all_keys": [], "write": []})
        k["n"] += 1
        k["write"].append(row["write_recover_s"])
        k["recover"].append(row["recover_s"])
        k["outage"].append(row["outage_s"])
        if "all_keys_s" in row:
            k["all_keys"].append(row["all_keys_s"])
    kinds = {
        kind: {"n": k["n"], "worst_recover_s": max(k["recover"]),
               "median_recover_s": round(statistics.median(k["recover"]), 3),
               "worst_outage_s": max(k["outage"]),
               "worst_all_keys_s": max(k["all_keys"], default=None),
               "worst_write_recover_s": max(k["write"]),
               "target_s": TARGETS.get(kind)}
        for kind, k in sorted(by_kind.items())
    }
    stats = run.traffic.stats
    windows = _event_windows(run)
    reads = stats.reads
    good = sum(1 for _, sec, ok in reads if ok and sec <= WITHIN)
    calm = [(sec, ok) for s, sec, ok in reads if not any(a <= s <= b for a, b in windows)]
    calm_good = sum(1 for sec, ok in calm if ok and sec <= WITHIN)
    vcount = Counter(str(v["kind"]) for v in run.checker.violations)
    return {
        "passed": not run.checker.violations,
        "config": config_dict(cfg),
        "started_at": started_at,
        "topic": run.cluster.topic,
        "bootstrap": run.cluster.kafka.bootstrap,
        "results_file": str(out),
        "log_dir": str(log_dir),
        "elapsed_s": round(run.chaos_end - run.t0, 1),
        "chaos_s": round(run.chaos_end - run.chaos_start, 1),
        "schedule": [f"+{e.gap}s {e.label}" for e in schedule],
        "events": events,
        "event_kinds": kinds,
        "requests": {k: dict(sorted(v.items())) for k, v in sorted(stats.counts.items())},
        "latency_s": {op: {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99),
                           "max": pct(v, 100)} for op, v in sorted(stats.latency.items())},
        "timeouts": timeouts(run),
        "reads_correct_within_2s": {
            "reads": len(reads), "pct": round(100 * good / len(reads), 3) if reads else None,
            "outside_event_windows_reads": len(calm),
            "outside_event_windows_pct": round(100 * calm_good / len(calm), 3)
            if calm else None,
            "outside_event_windows_wrong_or_unanswered": sum(1 for _, ok in calm if not ok),
            "outside_event_windows_slow": sum(1 for sec, ok in calm if ok and sec > WITHIN)},
        "outages": [{"partition": o.partition, "t": run.rel(o.start),
                     "seconds": round(o.end - o.start, 3)} for o in run.traffic.avail.outages],
        "final": {k: v for k, v in final.items() if k != "t_abs"},
        "checkers": checkers,
        "history": run.traffic.history.statistics(),
        "violation_counts": dict(vcount),
        "violation_counts_by_node": dict(sorted(Counter(
            f"{v['kind']} {v.get('node', '-')} {v.get('source', '-')}"
            for v in run.checker.violations).items())),
        "violations": _examples(run.checker.violations, 500),
        "notes": run.cluster.notes,
        "node_logs": _log_scan(run),
    }


def timeouts(run: Run) -> dict[str, Any]:
    """Requests without an answer in the client timeout (latency figures leave them
    out): ``answer_timeout`` (a live node past its bound, a violation) and the others
    (connect or pool timeouts; any timeout when the client timeout is under the bound)."""
    counts = run.traffic.stats.counts.values()
    return {"client_timeout_s": round(run.traffic.timeout, 3),
            "node_answer_bound_s": round(run.traffic.bound, 3),
            "answer_timeout": sum(c["answer_timeout"] for c in counts),
            "timeout": sum(c["timeout"] for c in counts)}


def write_json(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def _f(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.2f}"
    return str(x)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    cells = [header] + [[_f(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]


OUTCOMES = ["ok", "ok_404", "acked", "precondition_failed", "failed", "unavailable",
            "ambiguous", "timeout", "node_down", "no_node"]
HEADINGS = ["ok", "ok_404", "acked", "412", "failed", "unavailable", "ambiguous", "timeout",
            "node_down", "no_node"]


def _examples(violations: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first violation of every kind, then the next ones, ``n`` in all."""
    kinds: set[str] = set()
    first = []
    for i, v in enumerate(violations):
        if v["kind"] not in kinds:
            kinds.add(v["kind"])
            first.append(i)
    rest = [i for i in range(len(violations)) if i not in set(first)]
    return [violations[i] for i in sorted((first + rest)[:n])]


def _checkers(r: dict[str, Any]) -> list[str]:
    c = r.get("checkers")
    if not c:
        return []
    own, por = c["own"], c["porcupine"]
    lines = ["checkers"]
    lines += _table(["checker", "verdict", "violations", "ops", "keys", "check_s"], [
        ["own", own["verdict"], f"{own['violations']} ({own['history_violations']} in answers)",
         own["ops"], own["keys"], own["seconds"]],
        ["porcupine", str(por["verdict"]).upper() if por["verdict"] != "linearizable"
         else "linearizable", len(por["violating_keys"] or []),
         f"{por['ops']} ({por['ops_checked']} checked)", por["keys"], por["seconds"]]])
    if c["agree"] is False:
        lines.append("  THE CHECKERS DISAGREE: one found the history illegal, the other not")
    if c["keys_only_own"] or c["keys_only_porcupine"]:
        lines.append(f"  keys only the own checker flagged: {c['keys_only_own'][:5]}; only "
                     f"porcupine: {c['keys_only_porcupine'][:5]}")
    for pic in por["pictures"][:5]:
        lines.append(f"  picture: {pic}")
    if por.get("error"):
        lines.append(f"  porcupine error: {str(por['error'])[:300]}")
    lines.append(f"  history: {r['history']['file']}")
    return lines


def format_summary(r: dict[str, Any]) -> str:
    if not r:
        return "chaos: no results (the run failed before it finished)"
    c = r["config"]
    lines = [f"== kstate chaos: mode={c['mode']} seed={c['seed']} nodes={c['nodes']} "
             f"clients={c['clients']} keys={c['keys']} duration={c['duration']}s "
             f"standby={c.get('standby', False)} "
             f"(chaos {r['chaos_s']}s, total {r['elapsed_s']}s) =="]
    lines.append("events")
    rows = [[k, v["n"], v["worst_recover_s"], v["median_recover_s"], v["worst_outage_s"],
             v["worst_all_keys_s"], v["worst_write_recover_s"],
             "-" if v["target_s"] is None else
             ("ok" if v["worst_recover_s"] <= v["target_s"] else "MISSED")
             + f" (<= {v['target_s']:.0f}s)"] for k, v in r["event_kinds"].items()]
    lines += _table(["kind", "n", "worst_recover_s", "median_recover_s", "worst_outage_s",
                     "worst_all_keys_s", "worst_write_recover_s", "target"], rows)
    skipped = [e["label"] for e in r["events"] if "skipped" in e]
    if skipped:
        lines.append(f"  skipped: {', '.join(skipped)}")
    for e in r["events"]:
        if e.get("cut_traffic") is not None:
            lines.append(f"  {e['label']} at t={e['t']:.1f}s for {e.get('cut_s', '-')}s, "
                         f"partitions {e.get('cut_partitions')}: {e['cut_traffic']}")
    lines.append("requests")
    rows = []
    for name, counts in r["requests"].items():
        bad = sum(n for k, n in counts.items() if k in VIOLATIONS)
        rows.append([name, sum(counts.values())] + [counts.get(k, 0) for k in OUTCOMES]
                    + [bad])
    lines += _table(["op/source", "total", *HEADINGS, "violations"], rows)
    lat = r["latency_s"]
    lines.append("latency (answered requests, s)")
    lines += _table(["op", "n", "p50", "p99", "max"],
                    [[op, v["n"], v["p50"], v["p99"], v["max"]] for op, v in lat.items()])
    t = r.get("timeouts")
    if t:
        lines.append(f"unanswered in the client timeout ({t['client_timeout_s']:.1f} s; the "
                     f"nodes answer within {t['node_answer_bound_s']:.1f} s): "
                     f"{t['answer_timeout']} past a node's bound (answer_timeout), "
                     f"{t['timeout']} other timeouts")
    w = r["reads_correct_within_2s"]
    lines.append(f"workload reads answered correctly within 2 s: {_f(w['pct'])}% of "
                 f"{w['reads']}; outside event windows: {_f(w['outside_event_windows_pct'])}%"
                 f" of {w['outside_event_windows_reads']} (there: "
                 f"{w['outside_event_windows_slow']} correct but slower than 2 s, "
                 f"{w['outside_event_windows_wrong_or_unanswered']} not answered correctly)")
    a = r["final"].get("audit")
    if a:
        lines.append(f"topic audit: {a['records']} records ({a['chaos_key_records']} of the "
                     f"checked keys), {a['violations']} violations, compacted partitions: "
                     f"{a['compacted_partitions'] or 'none'}")
    lines += _checkers(r)
    vc = r["violation_counts"]
    lines.append("violations: " + (", ".join(f"{k}={n}" for k, n in sorted(vc.items()))
                                   if vc else "0"))
    for v in _examples(r["violations"], 15):
        lines.append(f"  - {v['kind']}: {str(v.get('detail', ''))[:300]}")
    for n in r.get("notes", []):
        lines.append(f"  note: {n['kind']} {n.get('node', '')}: {str(n.get('detail'))[:200]}")
    logs = {n: d for n, d in r["node_logs"].items() if d["tracebacks"] or d["error_lines"]}
    if logs:
        lines.append(f"node logs with errors: {logs} (in {r['log_dir']})")
    lines.append(f"results: {r['results_file']}")
    lines.append("PASS" if r["passed"] else "FAIL")
    return "\n".join(lines)
