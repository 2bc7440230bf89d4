"""kstate's side of the benchmark, phase by phase, against real node processes.

idle node (empty topic: baseline memory) → node A replays the loaded topic (seconds to
serving, records/s, RSS) → GET (all keys local) and PUT on A alone → node B joins (its
replay) → GET owner-local and proxied through A → GET with the routing-aware
client vs plain requests to random members (bench/client_phase.py) → kill -9 B: seconds
until B's keys answer through A → B back → SIGTERM B: the same. Each phase is bounded by
``cfg.phase_timeout``; a failed phase is recorded and the later ones still try.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from tools.bench import client_phase
from tools.bench.config import Config
from tools.bench.load import Loaded
from tools.bench.tools import Probe, measure, rss_bytes, track, wait_keys, write_keys
from tools.procs import Node, wait_ready, wait_stable

PREFIX = "/users/"


def say(msg: str) -> None:
    print(f"[kstate] {msg}", flush=True)


async def phase(out: dict[str, Any], name: str, fn: Callable[[], Awaitable[dict[str, Any]]],
                say: Callable[[str], None] = say) -> dict[str, Any] | None:
    """Run one phase; keep its result (or its error) under ``out[name]``."""
    t0 = time.monotonic()
    try:
        out[name] = await fn()
        out[name]["phase_seconds"] = round(time.monotonic() - t0, 3)
        return out[name]
    except Exception as exc:  # one failed phase must not hide the others' numbers
        out[name] = {"error": f"{type(exc).__name__}: {exc}"[:3000]}
        say(f"{name} FAILED: {out[name]['error'][:500]}")
        return None


def owners_of(table: dict[str, str]) -> dict[int, str]:
    return {int(k.rsplit("-", 1)[1]): url for k, url in table.items()}


async def _groupinfo(client: httpx.AsyncClient, node: Node) -> dict[int, str]:
    r = await client.get(f"{node.base}/groupinfo", timeout=5)
    r.raise_for_status()
    return owners_of(r.json())


def _replayed(ready: dict[str, Any], partitions: set[int] | None = None) -> int:
    parts = ready.get("partitions", {})
    return sum(int(s.get("replayed") or 0) for p, s in parts.items()
               if partitions is None or int(p) in partitions)


def _catchup(ready: dict[str, Any]) -> float | None:
    secs = [s.get("catchup_seconds") for s in ready.get("partitions", {}).values()]
    known = [float(s) for s in secs if s is not None]
    return max(known) if known else None


def _rate(records: int, seconds: float | None) -> int | None:
    return round(records / seconds) if seconds else None


async def run(cfg: Config, data: Loaded, out: dict[str, Any]) -> None:
    logs = cfg.run_dir / "logs"
    keydir = cfg.run_dir / "keys"
    group = f"bench-kstate-{cfg.run_id}"
    extra = {"KSTATE_SESSION_TIMEOUT_MS": str(cfg.session_timeout_ms)}
    probes = [data.last_key[p] for p in sorted(data.last_key)]
    all_keys = write_keys(keydir / "kstate-all.txt", (e for e, _ in data.sample))
    a = Node(cfg.bootstrap, cfg.topic, group, logs, extra=dict(extra))
    b = Node(cfg.bootstrap, cfg.topic, group, logs, extra=dict(extra))

    async with httpx.AsyncClient(trust_env=False) as client:

        async def idle() -> dict[str, Any]:
            node = Node(cfg.bootstrap, f"bench-empty-{cfg.run_id}", f"{group}-idle", logs,
                        extra=dict(extra))
            track(node.start().proc)  # type: ignore[arg-type]
            try:
                await wait_ready(client, node, timeout=cfg.phase_timeout)
                await trio.sleep(1.0)
                assert node.proc is not None
                return {"rss_bytes": rss_bytes(node.proc.pid)}
            finally:
                node.stop_now()

        async def replay() -> dict[str, Any]:
            t0 = time.monotonic()
            track(a.start().proc)  # type: ignore[arg-type]
            ready_at: list[float] = []

            async def _readyz() -> None:
                while True:
                    try:
                        r = await client.get(f"{a.base}/readyz", timeout=5)
                        if r.status_code == 200:
                            ready_at.append(time.monotonic() - t0)
                            return
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                nursery.cancel_scope.deadline = trio.current_time() + cfg.phase_timeout
                nursery.start_soon(_readyz)
                probe = await wait_keys(client, a.base, PREFIX, probes, t0=t0,
                                        within=cfg.phase_timeout, alive=a.alive)
            if probe.seconds is None:
                raise RuntimeError(f"not serving after {cfg.phase_timeout}s: {probe.statuses}")
            ready = await wait_ready(client, a, timeout=30)
            assert a.proc is not None
            records = _replayed(ready)
            return {"seconds": probe.seconds, "ready_seconds": ready_at[0] if ready_at else None,
                    "records": records, "records_per_s": round(records / probe.seconds),
                    "inprocess_seconds": _catchup(ready),
                    "inprocess_records_per_s": _rate(records, _catchup(ready)),
                    "statuses": probe.statuses, "rss_bytes": rss_bytes(a.proc.pid),
                    "rss_peak_bytes": rss_bytes(a.proc.pid, "VmHWM"),
                    "raw_bytes": data.raw_bytes}

        async def get_local_1() -> dict[str, Any]:
            return (await measure(a.base, "get.lua", all_keys, PREFIX, cfg.load)).to_json()

        async def put_1() -> dict[str, Any]:
            return (await measure(a.base, "put.lua", all_keys, PREFIX, cfg.put_load)).to_json()

        async def join() -> dict[str, Any]:
            t0 = time.monotonic()
            track(b.start().proc)  # type: ignore[arg-type]
            table = await wait_stable(client, [a, b], cfg.partitions,
                                      timeout=cfg.phase_timeout)
            probe = await wait_keys(client, b.base, PREFIX, probes, t0=t0,
                                    within=cfg.phase_timeout, alive=b.alive)
            if probe.seconds is None:
                raise RuntimeError(f"B not serving every key: {probe.statuses}")
            owners = owners_of(table)
            mine = {p for p, url in owners.items() if url == b.url}
            ready_b = await wait_ready(client, b, timeout=30)
            records = _replayed(ready_b, mine)
            return {"seconds": probe.seconds, "records": records,
                    "records_per_s": round(records / probe.seconds) if probe.seconds else None,
                    "inprocess_seconds": _catchup(ready_b),
                    "inprocess_records_per_s": _rate(records, _catchup(ready_b)),
                    "partitions_moved": sorted(mine), "statuses": probe.statuses}

        async def get_two() -> dict[str, Any]:
            owners = await _groupinfo(client, a)
            local = [e for e, p in data.sample if owners.get(p) == a.url]
            remote = [e for e, p in data.sample if owners.get(p) == b.url]
            local_f = write_keys(keydir / "kstate-a-local.txt", local)
            remote_f = write_keys(keydir / "kstate-a-remote.txt", remote)
            res_local = await measure(a.base, "get.lua", local_f, PREFIX, cfg.load)
            res_remote = await measure(a.base, "get.lua", remote_f, PREFIX, cfg.load)
            return {"local": res_local.to_json(), "proxied": res_remote.to_json()}

        async def client_vs_random() -> dict[str, Any]:
            await wait_stable(client, [a, b], cfg.partitions, timeout=cfg.phase_timeout)
            return await client_phase.run([a, b], [e for e, _ in data.sample],
                                          tasks=cfg.client_tasks, seconds=cfg.load.seconds,
                                          warmup=cfg.load.warmup)

        async def failover(how: str) -> dict[str, Any]:
            owners = await _groupinfo(client, a)
            moved = sorted(p for p, url in owners.items() if url == b.url)
            if not moved:
                raise RuntimeError(f"B owns no partition: {owners}")
            keys = [data.last_key[p] for p in moved if p in data.last_key]

            async def a_owns_all() -> bool:
                try:
                    table = await _groupinfo(client, a)
                except httpx.HTTPError:
                    return False
                return len(table) == cfg.partitions and set(table.values()) == {a.url}

            t0 = time.monotonic()
            if how == "kill":
                b.kill()
            else:
                b.term()
            probe: Probe = await wait_keys(client, a.base, PREFIX, keys, t0=t0,
                                           within=cfg.phase_timeout, alive=a.alive,
                                           moved=a_owns_all)
            res: dict[str, Any] = probe.to_json()
            res["partitions"] = moved
            if how == "term":
                res["exit_code"] = await b.wait_exit(30)
            return res

        async def rejoin() -> dict[str, Any]:
            t0 = time.monotonic()
            track(b.start().proc)  # type: ignore[arg-type]
            await wait_stable(client, [a, b], cfg.partitions, timeout=cfg.phase_timeout)
            return {"seconds": round(time.monotonic() - t0, 3)}

        try:
            if await phase(out, "idle", idle):
                say(f"idle RSS {out['idle']['rss_bytes'] / 2**20:.1f} MiB")
            if not await phase(out, "replay", replay):
                return
            r = out["replay"]
            say(f"replay: serving after {r['seconds']} s, {r['records']} records, "
                f"{r['records_per_s']}/s, RSS {r['rss_bytes'] / 2**20:.1f} MiB")
            if await phase(out, "get_local_1", get_local_1):
                say(f"GET local, 1 node: {out['get_local_1']['rps']} req/s")
            if await phase(out, "put_1", put_1):
                say(f"PUT, 1 node: {out['put_1']['rps']} acks/s")
            if not await phase(out, "join", join):
                return
            say(f"join: B serving after {out['join']['seconds']} s "
                f"({out['join']['records']} records)")
            if await phase(out, "get_2", get_two):
                say(f"GET 2 nodes: local {out['get_2']['local']['rps']} req/s, proxied "
                    f"{out['get_2']['proxied']['rps']} req/s")
            if await phase(out, "client_vs_random", client_vs_random):
                c, r = out["client_vs_random"]["client"], out["client_vs_random"]["random"]
                say(f"GET 2 nodes, {cfg.client_tasks} trio tasks: routing-aware client "
                    f"{c['rps']} req/s p50 {c['p50_ms']} ms; random member {r['rps']} req/s "
                    f"p50 {r['p50_ms']} ms ({r['proxied_share']} proxied)")
            if await phase(out, "failover_kill", lambda: failover("kill")):
                say(f"failover kill -9: {out['failover_kill']['seconds']} s")
            if await phase(out, "rejoin", rejoin):
                say(f"rejoin after kill: {out['rejoin']['seconds']} s")
                if await phase(out, "failover_term", lambda: failover("term")):
                    say(f"failover SIGTERM: {out['failover_term']['seconds']} s")
        finally:
            for node in (b, a):
                node.stop_now()
