"""kstate vs faust-streaming, same machine, same broker, same data, same run.

    just bench [--quick] [--users N] [--scale-users N] [--only kstate|faust|scale] ...
    (tools/bench/run.sh starts the broker, installs wrk and the peer's venv, then runs
    this module)

Loads N users into a fresh compacted topic, measures kstate (kstate_phases.py) and the
faust peer (faust_phases.py), then kstate's scale row (scale_phase.py: 1,000,000 users,
1 -> 3 members), prints one table with the issue's goals judged on this run (report.py,
rows.py) and writes every number to tools/bench/results/<run id>.json (logs and key
lists in tools/bench/results/<run id>/). Performance claims live here, printed side by
side, never in timed test assertions.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tools.bench import faust_phases, kstate_phases, report, rows, scale_phase
from tools.bench.config import Config
from tools.bench.load import Loaded, create_topic, load
from tools.bench.tools import BENCH, Load, machine, stop_all, wrk_available


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="just bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True, help="broker host:port (run.sh passes it)")
    p.add_argument("--quick", action="store_true",
                   help="100k users, 5 s wrk runs: for iterating, not for the record")
    p.add_argument("--users", type=int, help="users loaded (default 1,000,000; quick 100,000)")
    p.add_argument("--http-keys", type=int, default=10_000,
                   help="random users the HTTP runs pick from (default 10,000)")
    p.add_argument("--partitions", type=int, default=10)
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 10; quick 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of wrk before each run")
    p.add_argument("--connections", type=int, default=10, help="wrk -c (default 10)")
    p.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    p.add_argument("--client-tasks", type=int,
                   help="concurrent trio tasks of the routing-aware client vs random-member "
                        "GET runs (default: --connections)")
    p.add_argument("--session-timeout-ms", type=int, default=6_000,
                   help="group session timeout of kstate nodes and faust workers alike")
    p.add_argument("--phase-timeout", type=float,
                   help="seconds one replay/join/failover may take (default 1200; quick 300)")
    p.add_argument("--faust-standby", type=int, default=1,
                   help="faust table_standby_replicas (faust's default: 1)")
    p.add_argument("--scale-users", type=int,
                   help="users of the scale phase, kstate 1 -> 3 members (default 1,000,000; "
                        "quick 100,000; 0 skips it)")
    p.add_argument("--only", choices=["kstate", "faust", "scale"],
                   help="kstate: kstate's phases and the scale phase; faust: faust's "
                        "phases; scale: the scale phase alone")
    p.add_argument("--results", type=Path, default=BENCH / "results")
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> Config:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    users = args.users or (100_000 if args.quick else 1_000_000)
    seconds = args.duration or (5.0 if args.quick else 10.0)
    wrk_load = Load(connections=args.connections, threads=args.threads, seconds=seconds,
                    warmup=args.warmup)
    sides = {"kstate": ("kstate",), "faust": ("faust",), "scale": ()}.get(
        args.only or "", ("kstate", "faust"))
    scale = (100_000 if args.quick else 1_000_000) if args.scale_users is None \
        else args.scale_users
    if args.only == "faust":
        scale = 0
    return Config(
        bootstrap=args.bootstrap, users=users, http_keys=min(args.http_keys, users),
        partitions=args.partitions, load=wrk_load, put_load=wrk_load,
        session_timeout_ms=args.session_timeout_ms,
        phase_timeout=args.phase_timeout or (300.0 if args.quick else 1200.0),
        faust_standby=args.faust_standby, run_dir=args.results / run_id, run_id=run_id,
        sides=sides, client_tasks=args.client_tasks or args.connections,
        put_load_c1=Load(connections=1, threads=1, seconds=seconds, warmup=args.warmup),
        scale_users=scale)


async def _prepare(cfg: Config) -> Loaded | None:
    await create_topic(cfg.bootstrap, f"bench-empty-{cfg.run_id}", cfg.partitions)
    if not cfg.sides:
        return None
    return await load(cfg.bootstrap, cfg.topic, cfg.partitions, cfg.users, cfg.http_keys)


async def _side(name: str, side: dict[str, Any], fn: Callable[[], Awaitable[None]]) -> None:
    t0 = time.monotonic()
    try:
        await fn()
    except Exception as exc:  # one side failing must not hide the other's numbers
        side["error"] = f"{type(exc).__name__}: {exc}"[:3000]
        print(f"[{name}] FAILED: {side['error'][:500]}", flush=True)
    side["wall_seconds"] = round(time.monotonic() - t0, 1)


async def _measure(cfg: Config, data: Loaded | None, results: dict[str, Any]) -> None:
    # faust first: kstate's PUTs and owner-epoch markers go into the users topic, which
    # faust's agent would otherwise ingest too (more records than kstate replayed).
    for name, module in (("faust", faust_phases), ("kstate", kstate_phases)):
        if name in cfg.sides and data is not None:
            side: dict[str, Any] = {}
            results[name] = side
            await _side(name, side, partial(module.run, cfg, data, side))
    if cfg.scale_users > 0:
        kstate = results.setdefault("kstate", {})
        scale: dict[str, Any] = {}
        kstate["scale"] = scale
        idle = (kstate.get("idle") or {}).get("rss_bytes")
        await _side("scale", scale, partial(scale_phase.run, cfg, scale, idle))


def _interrupted(signum: int, _frame: object) -> None:
    # SIGTERM (run.sh's trap, a timeout) unwinds like Ctrl-C, so the finally below
    # stops every node and worker this run started.
    raise KeyboardInterrupt(f"signal {signum}")


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_interrupt(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt) or isinstance(
        exc.__cause__ or exc.__context__, KeyboardInterrupt)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    args = parse(sys.argv[1:] if argv is None else argv)
    cfg = config(args)
    wrk_available()
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"run_id": cfg.run_id, "config": cfg.to_json(),
                               "machine_start": machine()}
    out_path = args.results / f"{cfg.run_id}.json"
    started = time.monotonic()
    try:
        if cfg.sides:
            print(f"[bench] loading {cfg.users:,} users into {cfg.topic} "
                  f"({cfg.partitions} partitions, compacted) at {cfg.bootstrap}", flush=True)
        data = trio.run(_prepare, cfg)
        if data is not None:
            results["load"] = data.summary()
            print(f"[bench] loaded {data.records:,} records, {data.raw_bytes / 2**20:.1f} MiB "
                  f"raw key+value, in {data.seconds:.1f} s ({data.records_per_s:,.0f} "
                  f"records/s)", flush=True)
        trio.run(_measure, cfg, data, results)
    except BaseException as exc:
        if not _is_interrupt(exc):
            raise
        print(f"[bench] interrupted; partial results in {out_path}", flush=True)
        return 130
    finally:
        stop_all()
        results["machine_end"] = machine()
        results["wall_seconds"] = round(time.monotonic() - started, 1)
        results["table"] = report.rows(results, rows.TABLE, _context(cfg, results))
        results["goals"] = report.goals(results["table"])
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(_title(cfg, results))
    print(report.render(results["table"]))
    print()
    print(report.render_goals(results["goals"]))
    print(f"\nresults: {out_path}\nlogs:    {cfg.run_dir / 'logs'}")
    failed = [n for n in ("kstate", "faust") if "error" in results.get(n, {})]
    failed += ["scale"] if "error" in results.get("kstate", {}).get("scale", {}) else []
    return 1 if failed else 0


def _context(cfg: Config, results: dict[str, Any]) -> dict[str, object]:
    scale = results.get("kstate", {}).get("scale", {})
    return {"users": results.get("load", {}).get("records", cfg.users),
            "scale_users": scale.get("load", {}).get("records", cfg.scale_users),
            "connections": cfg.load.connections, "client_tasks": cfg.client_tasks,
            "session_ms": cfg.session_timeout_ms}


def _title(cfg: Config, results: dict[str, Any]) -> str:
    start, end = results["machine_start"], results["machine_end"]
    ran = ", then ".join([n for n in ("faust", "kstate") if n in cfg.sides]
                         + (["scale"] if cfg.scale_users else []))
    return (f"kstate vs faust-streaming ({ran}): {cfg.partitions} partitions, wrk "
            f"{cfg.load.seconds:g} s runs after {cfg.load.warmup:g} s warm-up, session timeout "
            f"{cfg.session_timeout_ms} ms, faust standby replicas {cfg.faust_standby}\n"
            f"machine: {start['cpus']} cpus, SHARED with other work: load average (1 min) "
            f"{start['loadavg_1m']} at start, {end['loadavg_1m']} at end; every number is "
            f"skewed by it, ratios come from this one run")


if __name__ == "__main__":
    sys.exit(main())
