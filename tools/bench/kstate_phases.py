"""kstate's side of the benchmark, phase by phase, against real node processes.

idle node (empty topic: baseline memory) → node A replays the loaded topic (seconds to
serving, records/s, RSS) → GET (all keys local) on A alone → the write floor (the
node's producer alone, bench/write_floor.py) → PUT (c1, then c10) on A alone →
node B joins (its replay) → GET owner-local and proxied through A → routing-aware vs
random member, both with wrk (bench/routing_phase.py) → the Python client vs random
members (bench/client_phase.py) → kill -9 B: seconds until B's keys answer through A →
B back → SIGTERM B: the same. Each phase is bounded by ``cfg.phase_timeout``; a failed
phase is recorded and the later ones still try.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tools.bench import client_phase, members, routing_phase, write_floor
from tools.bench.config import Config
from tools.bench.load import Loaded, create_topic
from tools.bench.members import PREFIX, groupinfo, phase
from tools.bench.tools import Probe, measure, track, wait_keys, write_keys
from tools.procs import Node, wait_stable


def say(msg: str) -> None:
    print(f"[kstate] {msg}", flush=True)


def _pid(node: Node) -> list[int]:
    return [node.proc.pid] if node.proc is not None and node.alive() else []


async def run(cfg: Config, data: Loaded, out: dict[str, Any]) -> None:
    logs = cfg.run_dir / "logs"
    keydir = cfg.run_dir / "keys"
    group = f"bench-kstate-{cfg.run_id}"
    extra = {"KSTATE_SESSION_TIMEOUT_MS": str(cfg.session_timeout_ms)}
    sample = [e for e, _ in data.sample]
    all_keys = write_keys(keydir / "kstate-all.txt", sample)
    a = Node(cfg.bootstrap, cfg.topic, group, logs, extra=dict(extra))
    b = Node(cfg.bootstrap, cfg.topic, group, logs, extra=dict(extra))

    async with httpx.AsyncClient(trust_env=False) as client:

        async def get_local_1() -> dict[str, Any]:
            return (await measure(a.base, "get.lua", all_keys, PREFIX, cfg.load,
                                  watch=_pid(a))).to_json()

        async def floor() -> dict[str, Any]:
            topic = f"bench-floor-{cfg.run_id}"
            await create_topic(cfg.bootstrap, topic, cfg.partitions)
            return {"topic": topic,
                    "put_c1": await write_floor.run(cfg.bootstrap, topic, cfg.partitions,
                                                    cfg.put_load_c1),
                    "put_1": await write_floor.run(cfg.bootstrap, topic, cfg.partitions,
                                                   cfg.put_load)}

        async def put_c1() -> dict[str, Any]:
            return (await measure(a.base, "put.lua", all_keys, PREFIX, cfg.put_load_c1,
                                  watch=_pid(a))).to_json()

        async def put_1() -> dict[str, Any]:
            return (await measure(a.base, "put.lua", all_keys, PREFIX, cfg.put_load,
                                  watch=_pid(a))).to_json()

        async def get_two() -> dict[str, Any]:
            owners = await groupinfo(client, a)
            local = [e for e, p in data.sample if owners.get(p) == a.url]
            remote = [e for e, p in data.sample if owners.get(p) == b.url]
            local_f = write_keys(keydir / "kstate-a-local.txt", local)
            remote_f = write_keys(keydir / "kstate-a-remote.txt", remote)
            pids = _pid(a) + _pid(b)
            res_local = await measure(a.base, "get.lua", local_f, PREFIX, cfg.load, watch=pids)
            res_remote = await measure(a.base, "get.lua", remote_f, PREFIX, cfg.load,
                                       watch=pids)
            return {"local": res_local.to_json(), "proxied": res_remote.to_json()}

        async def routing() -> dict[str, Any]:
            await wait_stable(client, [a, b], cfg.partitions, timeout=cfg.phase_timeout)
            return await routing_phase.compare(client, [a, b], sample, cfg.load, keydir,
                                               "kstate-route2")

        async def client_vs_random() -> dict[str, Any]:
            await wait_stable(client, [a, b], cfg.partitions, timeout=cfg.phase_timeout)
            return await client_phase.run([a, b], sample, tasks=cfg.client_tasks,
                                          seconds=cfg.load.seconds, warmup=cfg.load.warmup)

        async def failover(how: str) -> dict[str, Any]:
            owners = await groupinfo(client, a)
            moved = sorted(p for p, url in owners.items() if url == b.url)
            if not moved:
                raise RuntimeError(f"B owns no partition: {owners}")
            keys = [data.last_key[p] for p in moved if p in data.last_key]

            async def a_owns_all() -> bool:
                try:
                    table = await groupinfo(client, a)
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
            if await phase(out, "idle", lambda: members.idle_rss(client, cfg, group, extra),
                           say):
                say(f"idle RSS {out['idle']['rss_bytes'] / 2**20:.1f} MiB")
            if not await phase(out, "replay", lambda: members.replay(client, a, cfg, data),
                               say):
                return
            r = out["replay"]
            say(f"replay: serving after {r['seconds']} s, {r['records']} records, "
                f"{r['records_per_s']}/s, RSS {r['rss_bytes'] / 2**20:.1f} MiB")
            if await phase(out, "get_local_1", get_local_1, say):
                say(f"GET local, 1 node: {out['get_local_1']['rps']} req/s")
            if await phase(out, "floor", floor, say):
                f1, fn = out["floor"]["put_c1"], out["floor"]["put_1"]
                say(f"write floor (the node's producer alone): c1 {f1['rps']} acks/s, p50 "
                    f"{f1['p50_ms']} ms; c{cfg.put_load.connections} {fn['rps']} acks/s")
            if await phase(out, "put_c1", put_c1, say):
                p = out["put_c1"]
                say(f"PUT c1, 1 node: {p['rps']} acks/s, p50 {p['p50_ms']} ms")
            if await phase(out, "put_1", put_1, say):
                say(f"PUT c{cfg.put_load.connections}, 1 node: {out['put_1']['rps']} acks/s")
            if not await phase(out, "join", lambda: members.join(client, [a], b, cfg, data),
                               say):
                return
            say(f"join: B serving after {out['join']['seconds']} s "
                f"({out['join']['records']} records)")
            if await phase(out, "get_2", get_two, say):
                say(f"GET 2 nodes: local {out['get_2']['local']['rps']} req/s, proxied "
                    f"{out['get_2']['proxied']['rps']} req/s")
            if await phase(out, "routing", routing, say):
                rr, rc = out["routing"]["random"], out["routing"]["routed"]
                say(f"GET 2 nodes, wrk: routing-aware {rc['rps']} req/s, random member "
                    f"{rr['rps']} req/s ({rr['forwarded_share']} forwarded); wrk CPU "
                    f"{rc['wrk_cpu_share']} / {rr['wrk_cpu_share']} s/s")
            if await phase(out, "client_vs_random", client_vs_random, say):
                c, r = out["client_vs_random"]["client"], out["client_vs_random"]["random"]
                say(f"GET 2 nodes, Python, {cfg.client_tasks} trio tasks: kstate.client "
                    f"{c['rps']} req/s p50 {c['p50_ms']} ms; random member {r['rps']} req/s "
                    f"p50 {r['p50_ms']} ms ({r['proxied_share']} proxied)")
            if await phase(out, "failover_kill", lambda: failover("kill"), say):
                say(f"failover kill -9: {out['failover_kill']['seconds']} s")
            if await phase(out, "rejoin", rejoin, say):
                say(f"rejoin after kill: {out['rejoin']['seconds']} s")
                if await phase(out, "failover_term", lambda: failover("term"), say):
                    say(f"failover SIGTERM: {out['failover_term']['seconds']} s")
        finally:
            for node in (b, a):
                node.stop_now()
