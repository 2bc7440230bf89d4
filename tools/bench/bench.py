"""kstate vs faust-streaming, same machine, same broker, same data, same run.

    just bench [--quick] [--users N] [--only kstate|faust] ...   (bench/run.sh starts
    the broker, installs wrk and the peer's venv, then runs this module)

Loads N users into a fresh compacted topic, measures kstate (bench/kstate_phases.py) and
the faust peer (bench/faust_phases.py), prints one table (bench/report.py) and writes
every number to bench/results/<run id>.json (logs and key lists in bench/results/<run id>/).
Performance claims live here, printed side by side, never in timed test assertions.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from tools.bench import faust_phases, kstate_phases, report
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
    p.add_argument("--only", choices=["kstate", "faust"], help="measure one side only")
    p.add_argument("--results", type=Path, default=BENCH / "results")
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> Config:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    users = args.users or (100_000 if args.quick else 1_000_000)
    seconds = args.duration or (5.0 if args.quick else 10.0)
    wrk_load = Load(connections=args.connections, threads=args.threads, seconds=seconds,
                    warmup=args.warmup)
    sides = (args.only,) if args.only else ("kstate", "faust")
    return Config(
        bootstrap=args.bootstrap, users=users, http_keys=min(args.http_keys, users),
        partitions=args.partitions, load=wrk_load, put_load=wrk_load,
        session_timeout_ms=args.session_timeout_ms,
        phase_timeout=args.phase_timeout or (300.0 if args.quick else 1200.0),
        faust_standby=args.faust_standby, run_dir=args.results / run_id, run_id=run_id,
        sides=sides, client_tasks=args.client_tasks or args.connections)


async def _prepare(cfg: Config) -> Loaded:
    data = await load(cfg.bootstrap, cfg.topic, cfg.partitions, cfg.users, cfg.http_keys)
    await create_topic(cfg.bootstrap, f"bench-empty-{cfg.run_id}", cfg.partitions)
    return data


async def _measure(cfg: Config, data: Loaded, results: dict[str, Any]) -> None:
    for name, module in (("kstate", kstate_phases), ("faust", faust_phases)):
        if name not in cfg.sides:
            continue
        side: dict[str, Any] = {}
        results[name] = side
        t0 = time.monotonic()
        try:
            await module.run(cfg, data, side)
        except Exception as exc:  # one side failing must not hide the other's numbers
            side["error"] = f"{type(exc).__name__}: {exc}"[:3000]
            print(f"[{name}] FAILED: {side['error'][:500]}", flush=True)
        side["wall_seconds"] = round(time.monotonic() - t0, 1)


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
        print(f"[bench] loading {cfg.users:,} users into {cfg.topic} "
              f"({cfg.partitions} partitions, compacted) at {cfg.bootstrap}", flush=True)
        data = trio.run(_prepare, cfg)
        results["load"] = data.summary()
        print(f"[bench] loaded {data.records:,} records, {data.raw_bytes / 2**20:.1f} MiB raw "
              f"key+value, in {data.seconds:.1f} s ({data.records_per_s:,.0f} records/s)",
              flush=True)
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
        results["table"] = report.rows(results)
        results["client_table"] = report.client_rows(results)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2, default=str))
    load_info = results.get("load", {})
    print()
    print(f"kstate vs faust-streaming — {load_info.get('records', 0):,} users, "
          f"{cfg.partitions} partitions, wrk -t{cfg.load.threads} -c{cfg.load.connections} "
          f"{cfg.load.seconds:g} s, session timeout {cfg.session_timeout_ms} ms, faust "
          f"standby replicas {cfg.faust_standby}; {cfg.load.warmup:g} s warm-up per wrk run")
    start, end = results["machine_start"], results["machine_end"]
    print(f"machine: {start['cpus']} cpus, load average (1 min) {start['loadavg_1m']} at start, "
          f"{end['loadavg_1m']} at end: other work on this machine skews every number")
    print(report.render(results["table"]))
    if results["client_table"]:
        print(f"\nrouting-aware client (kstate/client.py) vs plain httpx GETs to a random member, "
              f"2 members, {cfg.client_tasks} trio tasks, {cfg.load.seconds:g} s each "
              f"(alternating slices), Python load generator in the bench process")
        print(report.render(results["client_table"], report.CLIENT_HEAD,
                            report.CLIENT_FOOTER))
    print(f"\nresults: {out_path}\nlogs:    {cfg.run_dir / 'logs'}")
    failed = [n for n in cfg.sides if "error" in results.get(n, {})]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
