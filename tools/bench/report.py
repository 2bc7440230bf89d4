"""One table from the results: a row per metric, kstate | faust | ratio (kstate/faust)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MiB = 2**20
NO_WRITE = "n/a: faust has no write path"


@dataclass(frozen=True)
class Row:
    metric: str
    better: str  # "higher" | "lower" | "" (information)
    kstate: Callable[[dict[str, Any]], float | None]
    faust: Callable[[dict[str, Any]], float | None] | None
    na: str = ""  # why there is no ratio for this row
    fmt: str = "{:,.0f}"


def at(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def get(side: dict[str, Any]) -> float | None:
        cur: Any = side
        for key in path:
            if not isinstance(cur, dict) or key not in cur:
                return None
            cur = cur[key]
        return None if cur is None or isinstance(cur, dict) else float(cur)
    return get


def wrk_at(*path: str, field: str) -> Callable[[dict[str, Any]], float | None]:
    """A wrk number, or None when the run had more than 1% errors (see its JSON)."""
    def get(side: dict[str, Any]) -> float | None:
        cur: Any = side
        for key in path:
            if not isinstance(cur, dict) or key not in cur:
                return None
            cur = cur[key]
        if not isinstance(cur, dict) or not cur.get("valid"):
            return None
        return float(cur[field])
    return get


def mib(*path: str) -> Callable[[dict[str, Any]], float | None]:
    raw = at(*path)
    return lambda side: None if raw(side) is None else raw(side) / MiB  # type: ignore[operator]


def rss_per_raw(side: dict[str, Any]) -> float | None:
    rss, raw = at("replay", "rss_bytes")(side), at("replay", "raw_bytes")(side)
    return rss / raw if rss and raw else None


def grown_per_raw(side: dict[str, Any]) -> float | None:
    rss, raw = at("replay", "rss_bytes")(side), at("replay", "raw_bytes")(side)
    idle = at("idle", "rss_bytes")(side)
    return (rss - idle) / raw if rss and raw and idle else None


def status_count(phase: str, status: str) -> Callable[[dict[str, Any]], float | None]:
    def get(side: dict[str, Any]) -> float | None:
        st = side.get(phase, {}).get("statuses") if isinstance(side.get(phase), dict) else None
        return None if st is None else float(st.get(status, 0))
    return get


def failover_404s(side: dict[str, Any]) -> float | None:
    """404s for existing keys from the kill/SIGTERM until the survivor served them all
    (whichever member answered them)."""
    counts = [status_count(p, "404")(side) for p in ("failover_kill", "failover_term")]
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def wrk_cpu(side: dict[str, Any]) -> float | None:
    """The busiest wrk run's CPU seconds per second: well under 1 = wrk had headroom."""
    runs = [side.get("get_local_1"), side.get("put_1")]
    if isinstance(side.get("get_2"), dict):
        runs += [side["get_2"].get("local"), side["get_2"].get("proxied")]
    shares = [r["wrk_cpu_share"] for r in runs if isinstance(r, dict) and "wrk_cpu_share" in r]
    return max(shares) if shares else None


def proxied_over_local(side: dict[str, Any]) -> float | None:
    local = wrk_at("get_2", "local", field="p50_ms")(side)
    proxied = wrk_at("get_2", "proxied", field="p50_ms")(side)
    return proxied / local if local and proxied else None


def _wrk_rows(label: str, *path: str) -> list[Row]:
    return [
        Row(f"{label}: req/s", "higher", wrk_at(*path, field="rps"),
            wrk_at(*path, field="rps")),
        Row(f"{label}: p50 ms", "lower", wrk_at(*path, field="p50_ms"),
            wrk_at(*path, field="p50_ms"), fmt="{:,.2f}"),
        Row(f"{label}: p99 ms", "lower", wrk_at(*path, field="p99_ms"),
            wrk_at(*path, field="p99_ms"), fmt="{:,.2f}"),
    ]


ROWS: list[Row] = [
    Row("first start: s to serve all (kstate replay; faust ingest)", "lower",
        at("replay", "seconds"), at("ingest", "seconds"), fmt="{:,.2f}"),
    Row("replay, new member: s to serve all (faust: restore)", "lower",
        at("replay", "seconds"), at("replay", "seconds"), fmt="{:,.2f}"),
    Row("replay, new member: records/s", "higher",
        at("replay", "records_per_s"), at("replay", "records_per_s")),
    Row("replay in-process (assign -> caught up): records/s", "higher",
        at("replay", "inprocess_records_per_s"), None,
        "n/a: faust logs no catch-up time"),
    Row("404s for existing keys during replay", "lower",
        status_count("replay", "404"), status_count("replay", "404")),
    Row("RSS after replay, MiB", "lower", mib("replay", "rss_bytes"),
        mib("replay", "rss_bytes"), fmt="{:,.1f}"),
    Row("RSS / raw key+value bytes", "lower", rss_per_raw, rss_per_raw, fmt="{:,.2f}"),
    Row("(RSS - idle RSS) / raw bytes", "lower", grown_per_raw, grown_per_raw,
        fmt="{:,.2f}"),
    Row("2nd member joins: s until both serve all", "lower",
        at("join", "seconds"), at("join", "seconds"), fmt="{:,.2f}"),
    Row("2nd member joins: records replayed (faust +standby)", "",
        at("join", "records"), at("join", "records")),
    *_wrk_rows("GET local, 1 member", "get_local_1"),
    *_wrk_rows("GET local, 2 members", "get_2", "local"),
    *_wrk_rows("GET proxied, 2 members", "get_2", "proxied"),
    Row("proxied p50 / local p50 (2 members)", "lower", proxied_over_local,
        proxied_over_local, fmt="{:,.2f}"),
    Row("load generator: wrk CPU s per s, busiest run", "", wrk_cpu, wrk_cpu, fmt="{:,.2f}"),
    Row("PUT acked, 1 member: acks/s", "higher", wrk_at("put_1", field="rps"), None,
        NO_WRITE),
    Row("PUT acked, 1 member: p50 ms", "lower", wrk_at("put_1", field="p50_ms"), None,
        NO_WRITE, fmt="{:,.2f}"),
    Row("PUT acked, 1 member: p99 ms", "lower", wrk_at("put_1", field="p99_ms"), None,
        NO_WRITE, fmt="{:,.2f}"),
    Row("failover kill -9: s until the survivor serves", "lower",
        at("failover_kill", "seconds"), at("failover_kill", "seconds"), fmt="{:,.2f}"),
    Row("killed member back: s until both serve", "lower",
        at("rejoin", "seconds"), at("rejoin", "seconds"), fmt="{:,.2f}"),
    Row("failover SIGTERM: s until the survivor serves", "lower",
        at("failover_term", "seconds"), at("failover_term", "seconds"), fmt="{:,.2f}"),
    Row("404s for existing keys during failovers", "lower",
        failover_404s, failover_404s),
]


def _cell(value: float | None, fmt: str, missing: str) -> str:
    return missing if value is None else fmt.format(value)


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table as data (also written into the JSON)."""
    k_side = results.get("kstate") or {}
    f_side = results.get("faust") or {}
    out = []
    for row in ROWS:
        k = row.kstate(k_side)
        f = row.faust(f_side) if row.faust is not None else None
        if row.faust is None:
            ratio: str = row.na
        elif "kstate" not in results or "faust" not in results:
            ratio = "n/a: one side not run (--only)"
        elif k is None or f is None:
            ratio = "n/a: not measured (see JSON)"
        elif f == 0:
            ratio = "n/a: faust 0"
        else:
            ratio = f"{k / f:.2f}x"
        out.append({"metric": row.metric, "better": row.better, "kstate": k, "faust": f,
                    "ratio": ratio,
                    "kstate_text": _cell(k, row.fmt, "-"),
                    "faust_text": _cell(f, row.fmt, "n/a" if row.faust is None else "-")})
    return out


# -- routing-aware client vs random members (bench/client_phase.py) -------------------

CLIENT_HEAD = ("metric", "client", "random member", "client/random")


@dataclass(frozen=True)
class ClientRow:
    metric: str
    better: str
    field: str
    fmt: str = "{:,.0f}"
    ratio: bool = True
    always: bool = False  # shown even when the run had > 1% errors


CLIENT_ROWS = [
    ClientRow("GET 2 members: req/s", "higher", "rps"),
    ClientRow("GET 2 members: p50 ms", "lower", "p50_ms", "{:,.2f}"),
    ClientRow("GET 2 members: p99 ms", "lower", "p99_ms", "{:,.2f}"),
    ClientRow("share of requests a member proxied (client: none)", "", "proxied_share",
              "{:,.2f}", ratio=False, always=True),
    ClientRow("members' forwards counter over the run", "", "node_forwards", ratio=False,
              always=True),
    ClientRow("non-200 answers or errors, share", "lower", "error_share", "{:,.4f}",
              ratio=False, always=True),
    ClientRow("load generator: CPU s per s (this process)", "", "loadgen_cpu_share",
              "{:,.2f}", ratio=False, always=True),
]


def client_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The client-vs-random table as data; [] when that phase did not run."""
    phase = (results.get("kstate") or {}).get("client_vs_random")
    if not isinstance(phase, dict) or "client" not in phase:
        return []
    out = []
    for row in CLIENT_ROWS:
        vals = []
        for side_name in ("client", "random"):
            side = phase[side_name]
            raw = side.get(row.field)
            if side_name == "client" and row.field == "proxied_share":
                raw = 0.0 if phase["client"].get("node_forwards") == 0 else None
            ok = row.always or side.get("valid")
            vals.append(float(raw) if ok and isinstance(raw, int | float) else None)
        c, r = vals
        if not row.ratio:
            ratio = ""
        elif c is None or r is None:
            ratio = "n/a: not measured or > 1% errors (see JSON)"
        elif r == 0:
            ratio = "n/a: random 0"
        else:
            ratio = f"{c / r:.2f}x"
        out.append({"metric": row.metric, "better": row.better, "kstate": c, "faust": r,
                    "ratio": ratio, "kstate_text": _cell(c, row.fmt, "-"),
                    "faust_text": _cell(r, row.fmt, "-")})
    return out


WRK_FOOTER = ("(↑ higher is better, ↓ lower is better; '-' = not measured or the wrk run had "
              "> 1% errors: see the JSON)")
CLIENT_FOOTER = ("(↑ higher is better, ↓ lower is better; '-' = not measured or the run had "
                 "> 1% non-200 answers: see the JSON)")


def render(table: list[dict[str, Any]],
           head: tuple[str, str, str, str] = ("metric", "kstate", "faust", "kstate/faust"),
           footer: str = WRK_FOOTER) -> str:
    arrow = {"higher": " (↑)", "lower": " (↓)", "": ""}
    lines = [(r["metric"] + arrow[r["better"]], r["kstate_text"], r["faust_text"], r["ratio"])
             for r in table]
    w = [max(len(x[i]) for x in [head, *lines]) for i in range(4)]
    sep = "-+-".join("-" * n for n in w)
    out = [" | ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) if i < 3 else h
                      for i, h in enumerate(head)), sep]
    for line in lines:
        out.append(" | ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) if i < 3 else c
                              for i, c in enumerate(line)))
    out.append(footer)
    return "\n".join(out)
