"""The one table of a run: a row per number (kstate | faust | kstate/faust | goal | this
run), grouped in sections; and the goal lines under it. The rows themselves are in
bench/rows.py; this module reads them out of the results and renders them.

A number that could not be measured is ``-`` and the table's JSON says why (the phase's
error, a wrk run with more than 1% errors, a phase that did not run). A goal is ``met``
or ``missed`` by this run's numbers, ``unknown`` when one of them is missing: never
hidden, never judged across runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Side = dict[str, Any]
NOT_RUN = "not run"


class Getter(Protocol):
    def __call__(self, side: Side) -> float | None: ...
    def why(self, side: Side) -> str: ...


@dataclass(frozen=True)
class At:
    """The number at ``path`` in a side's results; with ``field``, ``path`` names a wrk
    (or Python client) run and the number is that run's ``field``, None when the run had
    more than 1% errors."""

    path: tuple[str, ...]
    field: str | None = None
    div: float = 1.0
    default: float | None = None  # when only the last key is absent (a count of 0)

    def _walk(self, side: Side) -> tuple[Any, str]:
        cur: Any = side
        for i, key in enumerate(self.path):
            if isinstance(cur, dict) and "error" in cur and key not in cur:
                return None, f"{'/'.join(self.path[:i]) or 'side'} failed: {cur['error'][:300]}"
            if (self.default is not None and i == len(self.path) - 1
                    and isinstance(cur, dict) and key not in cur):
                return self.default, ""
            if not isinstance(cur, dict) or key not in cur:
                return None, f"{'/'.join(self.path[:i + 1])}: {NOT_RUN}"
            cur = cur[key]
        if isinstance(cur, dict) and "error" in cur:
            return None, f"{'/'.join(self.path)} failed: {cur['error'][:300]}"
        return cur, ""

    def __call__(self, side: Side) -> float | None:
        cur, _ = self._walk(side)
        if self.field is not None:
            if not isinstance(cur, dict) or not cur.get("valid"):
                return None
            cur = cur.get(self.field)
        if cur is None or isinstance(cur, dict | list | str):
            return None
        return float(cur) / self.div

    def why(self, side: Side) -> str:
        cur, reason = self._walk(side)
        if reason:
            return reason
        if self.field is not None and isinstance(cur, dict) and not cur.get("valid"):
            return (f"{'/'.join(self.path)}: more than 1% errors ({cur.get('non_2xx', '?')} "
                    f"non-2xx, {cur.get('socket_errors', '?')} socket errors, "
                    f"{cur.get('requests', '?')} requests; outcomes "
                    f"{cur.get('outcomes', '-')})")
        return f"{'/'.join(self.path)}{'/' + self.field if self.field else ''}: not reported"


@dataclass(frozen=True)
class Calc:
    """A number computed from others of the same side, same run."""

    fn: Callable[..., float | None]
    args: tuple[Getter, ...]
    skip_missing: bool = False  # compute from the numbers there are (at least one)

    def __call__(self, side: Side) -> float | None:
        vals = [a(side) for a in self.args]
        if self.skip_missing:
            vals = [v for v in vals if v is not None]
            return self.fn(*vals) if vals else None
        return None if any(v is None for v in vals) else self.fn(*vals)

    def why(self, side: Side) -> str:
        reasons = [a.why(side) for a in self.args if a(side) is None]
        return "; ".join(reasons) or "not computable (a zero divisor)"


def at(*path: str, div: float = 1.0, default: float | None = None) -> At:
    return At(path, None, div, default)


def wrk(*path: str, field: str) -> At:
    return At(path, field)


def ratio(num: Getter, den: Getter) -> Calc:
    return Calc(lambda n, d: n / d if d else None, (num, den))


@dataclass(frozen=True)
class Goal:
    """A target of the issue, judged on one row of this run."""

    key: str  # the goal line this row counts towards
    target: str  # as shown in the table
    test: Callable[[float | None, float | None], bool | None]  # (kstate, faust) -> met?


def vs_faust(at_least: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda k, f: None if k is None or not f else k / f >= at_least


def kstate_at_most(limit: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda k, _f: None if k is None else k <= limit


def kstate_below(limit: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda k, _f: None if k is None else k < limit


def kstate_at_least(limit: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda k, _f: None if k is None else k >= limit


@dataclass(frozen=True)
class Row:
    metric: str  # with its unit
    better: str  # "higher" | "lower" | "" (information)
    kstate: Getter
    faust: Getter | None = None  # None: faust has no such number
    na: str = "n/a"  # the faust cell when faust is None
    fmt: str = "{:,.0f}"
    goal: Goal | None = None


@dataclass(frozen=True)
class Section:
    title: str  # str.format'ed with the run's context (users, scale_users, ...)


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def rows(results: dict[str, Any], table: list[Row | Section],
         context: dict[str, object]) -> list[dict[str, Any]]:
    """The table as data (also written into the JSON)."""
    k_side = results.get("kstate") or {}
    f_side = results.get("faust") or {}
    out: list[dict[str, Any]] = []
    section = ""
    for row in table:
        if isinstance(row, Section):
            section = row.title.format(**context)
            out.append({"section": section})
            continue
        k = row.kstate(k_side)
        f = row.faust(f_side) if row.faust is not None else None
        why: dict[str, str] = {}
        if k is None:
            why["kstate"] = row.kstate.why(k_side) if "kstate" in results else NOT_RUN
        if row.faust is None:
            ratio_text, faust_text = "", row.na
        else:
            faust_text = _cell(f, row.fmt)
            if f is None:
                why["faust"] = row.faust.why(f_side) if "faust" in results else NOT_RUN
            ratio_text = "-" if k is None or not f else f"{k / f:.2f}x"
        met: bool | None = None
        status = ""
        if row.goal is not None:
            met = row.goal.test(k, f)
            status = "unknown" if met is None else "met" if met else "missed"
        out.append({"in_section": section, "metric": row.metric.format(**context),
                    "better": row.better,
                    "kstate": k, "faust": f, "ratio": ratio_text,
                    "goal": row.goal.target if row.goal else "",
                    "goal_key": row.goal.key if row.goal else "", "met": met,
                    "status": status, "kstate_text": _cell(k, row.fmt),
                    "faust_text": faust_text, "why_missing": why})
    return out


def goals(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per goal: met when every row judged for it met it, missed when any
    missed it, else unknown (a number missing)."""
    keys = list(dict.fromkeys(r["goal_key"] for r in table if r.get("goal_key")))
    out = []
    for key in keys:
        judged = [r for r in table if r.get("goal_key") == key]
        if any(r["met"] is False for r in judged):
            status = "missed"
        elif all(r["met"] is True for r in judged):
            status = "met"
        else:
            status = "unknown"
        detail = "; ".join(f"{r['metric']}: {r['kstate_text']}"
                           + (f" vs faust {r['faust_text']} = {r['ratio']}"
                              if r["ratio"] and r["ratio"] != "-" else "")
                           + f" ({r['status']})" for r in judged)
        out.append({"goal": key, "status": status, "rows": detail})
    return out


HEAD = ("metric", "kstate", "faust", "kstate/faust", "goal", "this run")
FOOTER = ("↑ higher is better, ↓ lower is better. '-' = not measured (the reason is in the "
          "JSON: table[].why_missing): a failed phase, a phase that did not run, or a wrk run "
          "with > 1% errors. 'n/a' = faust has no such number. Goals: met / missed by this "
          "run's numbers; unknown when one is missing.")


def _sections(table: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    out: list[tuple[str, list[dict[str, Any]]]] = [("", [])]
    for r in table:
        if "section" in r:
            out.append((r["section"], []))
        else:
            out[-1][1].append(r)
    return [(title, rs) for title, rs in out if title or rs]


def _not_run(rs: list[dict[str, Any]]) -> bool:
    """Nothing of this section was run on either side (e.g. --only): one line for it."""
    return all(r["kstate"] is None and r["faust"] is None
               and all(w.endswith(NOT_RUN) for w in r["why_missing"].values())
               for r in rs)


def render(table: list[dict[str, Any]]) -> str:
    arrow = {"higher": " (↑)", "lower": " (↓)", "": ""}
    lines = [(r["metric"] + arrow[r["better"]], r["kstate_text"], r["faust_text"],
              r["ratio"], r["goal"], r["status"]) for r in table if "section" not in r]
    w = [max(len(x[i]) for x in [HEAD, *lines]) for i in range(len(HEAD))]

    def fmt(cells: tuple[str, ...]) -> str:
        return " | ".join(c.ljust(w[i]) if i in (0, 4, 5) else c.rjust(w[i])
                          for i, c in enumerate(cells)).rstrip()

    out = [fmt(HEAD), "-+-".join("-" * n for n in w)]
    for title, rs in _sections(table):
        skipped = _not_run(rs)
        if title:
            title += ": not run" if skipped else ""
            out.append(f"-- {title} " + "-" * max(0, sum(w) + 15 - len(title)))
        if skipped:
            continue
        out.extend(fmt((r["metric"] + arrow[r["better"]], r["kstate_text"], r["faust_text"],
                        r["ratio"], r["goal"], r["status"])) for r in rs)
    out.append(FOOTER)
    return "\n".join(out)


def render_goals(lines: list[dict[str, Any]]) -> str:
    if not lines:
        return ""
    w = max(len(g["goal"]) for g in lines)
    return "\n".join(["goals, judged on this run only:"]
                     + [f"  {g['goal'].ljust(w)}  {g['status'].upper():7}  {g['rows']}"
                        for g in lines])
