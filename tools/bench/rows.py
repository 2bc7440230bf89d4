"""The rows of the table and the goals they are judged against (the issue "Data plane at
peer speed"). Paths name keys of the results JSON: kstate's side under "kstate", faust's
under "faust" (bench/kstate_phases.py, bench/faust_phases.py, bench/scale_phase.py)."""

from __future__ import annotations

from tools.bench.report import (
    Calc,
    Goal,
    Row,
    Section,
    at,
    kstate_at_least,
    kstate_at_most,
    kstate_below,
    ratio,
    vs_faust,
    wrk,
)

MiB = 2**20
NO_WRITE = "n/a"  # faust's peer has no write path (tools/bench/peers/faust_app.py)

G1_LOCAL = Goal("G1 GET local >= 1.0x faust's table view", ">= 1.00x faust", vs_faust(1.0))
G1_P99 = Goal("G1 GET local p99 < 5 ms at c10", "< 5 ms", kstate_below(5.0))
G1_PROXIED = Goal("G1 GET proxied >= 1.0x faust's forwarded GET", ">= 1.00x faust",
                  vs_faust(1.0))
G1_HOP = Goal("G1 GET proxied p50 <= 1.5x local p50", "<= 1.50", kstate_at_most(1.5))
G2_RATE = Goal("G2 PUT acked after apply >= 2,000/s at c10", ">= 2,000/s",
               kstate_at_least(2000))
G2_P50 = Goal("G2 PUT acked after apply p50 <= 2 ms at c1", "<= 2 ms", kstate_at_most(2.0))
G3_RATIO = Goal("G3 routing-aware >= 2x a random member (wrk)", ">= 2.00",
                kstate_at_least(2.0))
G3_GEN = Goal("G3 load generator not the limit (wrk CPU <= 0.5 s/s per thread)", "<= 0.50",
              kstate_at_most(0.5))


def _wrk3(label: str, *path: str, faust: bool = True, goal_rps: Goal | None = None,
          goal_p99: Goal | None = None) -> list[Row]:
    f = (lambda field: wrk(*path, field=field)) if faust else (lambda _field: None)
    return [
        Row(f"{label}: req/s", "higher", wrk(*path, field="rps"), f("rps"), goal=goal_rps),
        Row(f"{label}: p50 ms", "lower", wrk(*path, field="p50_ms"), f("p50_ms"),
            fmt="{:,.2f}"),
        Row(f"{label}: p99 ms", "lower", wrk(*path, field="p99_ms"), f("p99_ms"),
            fmt="{:,.2f}", goal=goal_p99),
    ]


def _rss_per_raw(*path: str) -> Calc:
    return ratio(at(*path, "rss_bytes"), at(*path, "raw_bytes"))


def _net_per_raw(*path: str, idle: tuple[str, ...] = ("idle", "rss_bytes")) -> Calc:
    return Calc(lambda rss, idle_rss, raw: (rss - idle_rss) / raw if raw else None,
                (at(*path, "rss_bytes"), at(*idle), at(*path, "raw_bytes")))


def _busiest(*paths: tuple[str, ...], field: str = "wrk_cpu_share") -> Calc:
    """The highest of a number over the runs that have it."""
    return Calc(lambda *v: max(v), tuple(at(*p, field) for p in paths), skip_missing=True)


_KSTATE_ONLY = "n/a"
# from the kill/SIGTERM until the survivor served them all, whichever member answered
_failover_404s = Calc(lambda a, b: a + b, (at("failover_kill", "statuses", "404", default=0),
                                           at("failover_term", "statuses", "404", default=0)))
_ROUTED, _RANDOM = ("routing", "routed"), ("routing", "random")
_PY_CLIENT, _PY_RANDOM = ("client_vs_random", "client"), ("client_vs_random", "random")

TABLE: list[Row | Section] = [
    Section("replay and memory, {users:,} users"),
    Row("first start: s to serve all (kstate replay; faust ingest)", "lower",
        at("replay", "seconds"), at("ingest", "seconds"), fmt="{:,.2f}"),
    Row("replay, new member: s to serve all (faust: restore)", "lower",
        at("replay", "seconds"), at("replay", "seconds"), fmt="{:,.2f}"),
    Row("replay, new member: records/s", "higher",
        at("replay", "records_per_s"), at("replay", "records_per_s")),
    Row("replay in-process (assign -> caught up): records/s", "higher",
        at("replay", "inprocess_records_per_s"), None),
    Row("404s for existing keys during replay", "lower",
        at("replay", "statuses", "404", default=0), at("replay", "statuses", "404", default=0)),
    Row("RSS after replay: MiB", "lower", at("replay", "rss_bytes", div=MiB),
        at("replay", "rss_bytes", div=MiB), fmt="{:,.1f}"),
    Row("RSS / raw key+value bytes: B/B", "lower", _rss_per_raw("replay"),
        _rss_per_raw("replay"), fmt="{:,.2f}"),
    Row("(RSS - idle RSS) / raw bytes: B/B", "lower", _net_per_raw("replay"),
        _net_per_raw("replay"), fmt="{:,.2f}"),
    Row("2nd member joins: s until both serve all", "lower",
        at("join", "seconds"), at("join", "seconds"), fmt="{:,.2f}"),
    Row("2nd member joins: records replayed (faust +standby)", "",
        at("join", "records"), at("join", "records")),

    Section("GET, wrk -t1 -c{connections}, one member answers"),
    *_wrk3("GET local, 1 member", "get_local_1", goal_rps=G1_LOCAL, goal_p99=G1_P99),
    *_wrk3("GET local, 2 members", "get_2", "local", goal_rps=G1_LOCAL, goal_p99=G1_P99),
    *_wrk3("GET proxied, 2 members", "get_2", "proxied", goal_rps=G1_PROXIED),
    Row("proxied p50 / local p50, 2 members", "lower",
        ratio(wrk("get_2", "proxied", field="p50_ms"), wrk("get_2", "local", field="p50_ms")),
        ratio(wrk("get_2", "proxied", field="p50_ms"), wrk("get_2", "local", field="p50_ms")),
        fmt="{:,.2f}", goal=G1_HOP),
    Row("members' CPU s per s, GET local 2 members", "",
        at("get_2", "local", "servers_cpu_share"), at("get_2", "local", "servers_cpu_share"),
        fmt="{:,.2f}"),
    Row("wrk CPU s per s, busiest GET run", "",
        _busiest(("get_local_1",), ("get_2", "local"), ("get_2", "proxied")),
        _busiest(("get_local_1",), ("get_2", "local"), ("get_2", "proxied")), fmt="{:,.2f}"),

    Section("PUT acknowledged after the owner applied it, 1 member, wrk -t1"),
    Row("PUT c1: acks/s", "higher", wrk("put_c1", field="rps"), None, NO_WRITE),
    Row("PUT c1: p50 ms", "lower", wrk("put_c1", field="p50_ms"), None, NO_WRITE,
        fmt="{:,.2f}", goal=G2_P50),
    Row("PUT c1: p99 ms", "lower", wrk("put_c1", field="p99_ms"), None, NO_WRITE,
        fmt="{:,.2f}"),
    Row("PUT c{connections}: acks/s", "higher", wrk("put_1", field="rps"), None, NO_WRITE,
        goal=G2_RATE),
    Row("PUT c{connections}: p50 ms", "lower", wrk("put_1", field="p50_ms"), None, NO_WRITE,
        fmt="{:,.2f}"),
    Row("PUT c{connections}: p99 ms", "lower", wrk("put_1", field="p99_ms"), None, NO_WRITE,
        fmt="{:,.2f}"),
    Row("write floor c1 (the node's producer alone): acks/s", "higher",
        at("floor", "put_c1", "rps"), None, NO_WRITE),
    Row("write floor c1: p50 ms", "lower", at("floor", "put_c1", "p50_ms"), None, NO_WRITE,
        fmt="{:,.2f}"),
    Row("write floor c{connections}: acks/s", "higher", at("floor", "put_1", "rps"), None,
        NO_WRITE),
    Row("PUT c1 p50 / write floor c1 p50", "lower",
        ratio(wrk("put_c1", field="p50_ms"), at("floor", "put_c1", "p50_ms")), None, NO_WRITE,
        fmt="{:,.2f}"),
    Row("PUT c{connections} acks/s / write floor c{connections}", "higher",
        ratio(wrk("put_1", field="rps"), at("floor", "put_1", "rps")), None, NO_WRITE,
        fmt="{:,.2f}"),

    Section("routing-aware vs a random member, 2 members, wrk: one thread per member, "
            "c{connections} in all"),
    *_wrk3("routing-aware (each key to its owner)", *_ROUTED, faust=False),
    *_wrk3("random member (about half forwarded)", *_RANDOM, faust=False),
    Row("routing-aware / random member: req/s ratio", "higher",
        ratio(wrk(*_ROUTED, field="rps"), wrk(*_RANDOM, field="rps")), None, _KSTATE_ONLY,
        fmt="{:,.2f}", goal=G3_RATIO),
    Row("GETs a member forwarded: share, random member", "",
        at(*_RANDOM, "forwarded_share"), None, _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("GETs a member forwarded: share, routing-aware", "",
        at(*_ROUTED, "forwarded_share"), None, _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("wrk CPU s per s (its process), busier of the two", "",
        _busiest(_ROUTED, _RANDOM), None, _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("wrk CPU s per s per thread, busier of the two", "lower",
        _busiest(_ROUTED, _RANDOM, field="wrk_cpu_per_thread"), None, _KSTATE_ONLY,
        fmt="{:,.2f}", goal=G3_GEN),
    Row("members' CPU s per s: routing-aware", "", at(*_ROUTED, "servers_cpu_share"), None,
        _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("members' CPU s per s: random member", "", at(*_RANDOM, "servers_cpu_share"), None,
        _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("busy cores of the machine (all work): random member", "",
        at(*_RANDOM, "machine_busy_cores"), None, _KSTATE_ONLY, fmt="{:,.2f}"),

    Section("Python client (kstate.client) vs httpx to a random member, 2 members, "
            "{client_tasks} trio tasks in the bench process"),
    *_wrk3("kstate.client (Python)", *_PY_CLIENT, faust=False),
    *_wrk3("httpx, random member (Python)", *_PY_RANDOM, faust=False),
    Row("kstate.client / random member: req/s ratio", "higher",
        ratio(wrk(*_PY_CLIENT, field="rps"), wrk(*_PY_RANDOM, field="rps")), None,
        _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("Python load generator: CPU s per s, busier side", "",
        _busiest(_PY_CLIENT, _PY_RANDOM, field="loadgen_cpu_share"), None, _KSTATE_ONLY,
        fmt="{:,.2f}"),

    Section("failover, 2 members, session timeout {session_ms} ms"),
    Row("failover kill -9: s until the survivor serves", "lower",
        at("failover_kill", "seconds"), at("failover_kill", "seconds"), fmt="{:,.2f}"),
    Row("killed member back: s until both serve", "lower",
        at("rejoin", "seconds"), at("rejoin", "seconds"), fmt="{:,.2f}"),
    Row("failover SIGTERM: s until the survivor serves", "lower",
        at("failover_term", "seconds"), at("failover_term", "seconds"), fmt="{:,.2f}"),
    Row("404s for existing keys during failovers", "lower",
        _failover_404s, _failover_404s),

    Section("scale: {scale_users:,} users, kstate 1 -> 2 -> 3 members, wrk c{connections}"),
    Row("bulk load (tools/bench/load.py): records/s", "higher",
        at("scale", "load", "records_per_s"), None, _KSTATE_ONLY),
    Row("member 1 replays: s to serve all", "lower", at("scale", "replay", "seconds"), None,
        _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("member 1 replays: records/s", "higher", at("scale", "replay", "records_per_s"),
        None, _KSTATE_ONLY),
    Row("member 1 RSS: MiB", "lower", at("scale", "replay", "rss_bytes", div=MiB), None,
        _KSTATE_ONLY, fmt="{:,.0f}"),
    Row("member 1 RSS / raw key+value bytes: B/B", "lower", _rss_per_raw("scale", "replay"),
        None,
        _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("member 1 (RSS - idle RSS) / raw bytes: B/B", "lower",
        _net_per_raw("scale", "replay", idle=("scale", "idle_rss_bytes",)), None,
        _KSTATE_ONLY, fmt="{:,.2f}"),
    *_wrk3("GET local, member 1 alone", "scale", "get_local_1", faust=False),
    Row("member 2 joins: s until stable and serving all", "lower",
        at("scale", "join_2", "seconds"), None, _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("member 2 joins: its own catch-up, s", "lower",
        at("scale", "join_2", "inprocess_seconds"), None, _KSTATE_ONLY, fmt="{:,.2f}"),
    *_wrk3("GET random member, 2 members", "scale", "get_2", "random", faust=False),
    Row("GET routing-aware, 2 members: req/s", "higher",
        wrk("scale", "get_2", "routed", field="rps"), None, _KSTATE_ONLY),
    Row("member 3 joins: s until stable and serving all", "lower",
        at("scale", "join_3", "seconds"), None, _KSTATE_ONLY, fmt="{:,.2f}"),
    Row("member 3 joins: its own catch-up, s", "lower",
        at("scale", "join_3", "inprocess_seconds"), None, _KSTATE_ONLY, fmt="{:,.2f}"),
    *_wrk3("GET random member, 3 members", "scale", "get_3", "random", faust=False),
    Row("GET routing-aware, 3 members: req/s", "higher",
        wrk("scale", "get_3", "routed", field="rps"), None, _KSTATE_ONLY),
    Row("wrk CPU s per s per thread, busiest scale run", "",
        _busiest(("scale", "get_2", "random"), ("scale", "get_2", "routed"),
                 ("scale", "get_3", "random"), ("scale", "get_3", "routed"),
                 field="wrk_cpu_per_thread"), None, _KSTATE_ONLY, fmt="{:,.2f}"),
]
