"""The scale row: kstate with ``cfg.scale_users`` users (1,000,000 by default), growing
from one member to three. kstate only (faust is measured on the main topic).

load the users into a topic of their own (tools/bench/load.py) →
member A replays them (seconds, records/s, RSS against raw key+value bytes, net of an
idle node's RSS) → GET local on A alone (wrk) → B joins (seconds until the group is
stable and B serves every partition's last key; its own catch-up) → GET through a
random member and routing-aware, 2 members (bench/routing_phase.py) → C joins → the
same with 3 members. Fresh nodes in their own group; every phase bounded and recorded
like the main ones, a failed phase does not hide the numbers before it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tools.bench import members, routing_phase
from tools.bench.config import Config
from tools.bench.load import Loaded, load
from tools.bench.members import PREFIX, phase
from tools.bench.tools import measure, rss_bytes, write_keys
from tools.procs import Node


def say(msg: str) -> None:
    print(f"[scale]  {msg}", flush=True)


async def prepare(cfg: Config) -> Loaded:
    """The scale phase's users, in a topic of their own. Never the main topic: the main
    phases' nodes wrote owner-epoch markers there under their group's generations, and
    a fresh group starts again at generation 1, whose epoch those markers supersede (its
    nodes would never serve)."""
    say(f"loading {cfg.scale_users:,} users into {cfg.scale_topic}")
    return await load(cfg.bootstrap, cfg.scale_topic, cfg.partitions, cfg.scale_users,
                      cfg.http_keys)


async def run(cfg: Config, out: dict[str, Any], idle_rss: int | None) -> None:
    """Fill ``out`` with the scale phase's results (``idle_rss``: a ready node's RSS on an
    empty topic, measured here when None)."""
    logs, keydir = cfg.run_dir / "logs", cfg.run_dir / "keys"
    group = f"bench-scale-{cfg.run_id}"
    extra = {"KSTATE_SESSION_TIMEOUT_MS": str(cfg.session_timeout_ms)}
    async with httpx.AsyncClient(trust_env=False) as client:
        if idle_rss is None and await phase(
                out, "idle", lambda: members.idle_rss(client, cfg, group, extra), say):
            idle_rss = int(out["idle"]["rss_bytes"])
        out["idle_rss_bytes"] = idle_rss

        async def _load() -> dict[str, Any]:
            data = await prepare(cfg)
            loaded.append(data)
            return data.summary()

        loaded: list[Loaded] = []
        if not await phase(out, "load", _load, say):
            return
        data = loaded[0]
        say(f"{data.records:,} users, {data.raw_bytes / 2**20:.1f} MiB raw key+value "
            f"({out['load']['records_per_s']:,} records/s loaded)")
        sample = [e for e, _ in data.sample]
        nodes = [Node(cfg.bootstrap, data.topic, group, logs, extra=dict(extra))
                 for _ in range(3)]
        try:
            await _grow(cfg, client, data, nodes, sample, keydir, out)
        finally:
            for node in reversed(nodes):
                node.stop_now()


async def _grow(cfg: Config, client: httpx.AsyncClient, data: Loaded, nodes: list[Node],
                sample: list[str], keydir: Path, out: dict[str, Any]) -> None:
    a = nodes[0]
    if not await phase(out, "replay", lambda: members.replay(client, a, cfg, data), say):
        return
    r = out["replay"]
    idle = out.get("idle_rss_bytes")
    r["rss_per_raw"] = round(r["rss_bytes"] / data.raw_bytes, 3)
    r["rss_net_per_raw"] = (round((r["rss_bytes"] - idle) / data.raw_bytes, 3)
                            if idle else None)
    say(f"replay: serving after {r['seconds']} s, {r['records_per_s']:,} records/s, "
        f"RSS {r['rss_bytes'] / 2**20:.0f} MiB = {r['rss_per_raw']} x raw")

    async def get_local() -> dict[str, Any]:
        keys = write_keys(keydir / "scale-all.txt", sample)
        assert a.proc is not None
        return (await measure(a.base, "get.lua", keys, PREFIX, cfg.load,
                              watch=[a.proc.pid])).to_json()

    if await phase(out, "get_local_1", get_local, say):
        say(f"GET local, 1 member: {out['get_local_1']['rps']} req/s")
    for n in (2, 3):
        new, before = nodes[n - 1], nodes[:n - 1]
        if not await phase(out, f"join_{n}",
                           partial(members.join, client, before, new, cfg, data), say):
            return
        j = out[f"join_{n}"]
        say(f"member {n} joins: stable after {j['stable_seconds']} s, serves all after "
            f"{j['seconds']} s ({j['records']:,} records replayed)")
        if await phase(out, f"get_{n}",
                       partial(routing_phase.compare, client, nodes[:n], sample, cfg.load,
                               keydir, f"scale-route{n}"), say):
            g = out[f"get_{n}"]
            say(f"GET {n} members: random member {g['random']['rps']} req/s, "
                f"routing-aware {g['routed']['rps']} req/s")
    out["rss_bytes_members"] = [rss_bytes(n.proc.pid) for n in nodes
                                if n.proc is not None and n.alive()]
