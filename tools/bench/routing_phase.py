"""Routing-aware vs a random member, both driven by wrk: GET req/s and latency.

The members of a stable cluster, the same keys, the same wrk layout for both sides: one
wrk thread per member, connected only to that member, ``load.connections`` in all
(rounded to a multiple of the members). The only difference is which keys a thread asks:

- **routing-aware**: the keys its member owns. The key -> owner mapping is the client
  library's own routing decision (``kstate.client.Table.parse`` of ``/groupinfo``, then
  ``Table.owner``): what ``KstateClient`` does per request, done once up front so the
  load generator is C, not Python;
- **random member**: every key, so a key meets a member at random and about
  (members - 1) / members of the GETs are forwarded by a non-owner.

Each side runs twice for half the time, in the order random, routed, routed, random, so
that drift in the (shared) machine's load hits both alike; the halves are combined
(:func:`combine`). wrk's CPU share (its CPU seconds per wall second), the members' CPU
share and the busy cores of the whole machine are recorded with each run: a reader can
see whether wrk or the cluster was the limit. The members' ``forwards`` counters
(``/readyz``) around each measured run give the share of GETs that really took the
proxy hop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tools.bench.members import PREFIX, routing_table
from tools.bench.tools import Load, WrkResult, run_wrk, write_keys
from tools.procs import Node


async def forwards(client: httpx.AsyncClient, nodes: list[Node]) -> int:
    """Sum of the members' router ``forwards`` counters."""
    total = 0
    for n in nodes:
        r = await client.get(f"{n.base}/readyz", timeout=5)
        total += int(r.json()["router"]["forwards"])
    return total


async def compare(client: httpx.AsyncClient, nodes: list[Node], keys: list[str], load: Load,
                  keydir: Path, tag: str) -> dict[str, Any]:
    """Measure both sides against ``nodes`` (a stable cluster), in :data:`ORDER`.
    Raises when the routing table does not name exactly them."""
    table = await routing_table(client, nodes[0])
    urls = {n.url for n in nodes}
    if table.partitions == 0 or set(table.members) != urls:
        raise RuntimeError(f"routing table does not cover {sorted(urls)}: {table}")
    owned: dict[str, list[str]] = {n.url: [] for n in nodes}
    for key in keys:
        owner = table.owner(key.encode())
        assert owner is not None  # the table covers every partition
        owned[owner].append(key)
    if any(not ks for ks in owned.values()):
        raise RuntimeError(f"a member owns none of the {len(keys)} keys: "
                           f"{ {u: len(k) for u, k in owned.items()} }")
    every = write_keys(keydir / f"{tag}-all.txt", keys)
    routed = [(n.base, write_keys(keydir / f"{tag}-owned-{n.port}.txt", owned[n.url]))
              for n in nodes]
    anywhere = [(n.base, every) for n in nodes]
    pids = [n.proc.pid for n in nodes if n.proc is not None]
    out: dict[str, Any] = {"members": len(nodes), "generation": table.generation,
                           "keys_per_member": {u: len(k) for u, k in owned.items()},
                           "order": [name for name, _ in ORDER]}
    sides = {"random": anywhere, "routed": routed}
    rounds: dict[str, list[WrkResult]] = {"random": [], "routed": []}
    sent = {"random": 0, "routed": 0}
    half = Load(load.connections, load.threads, max(2.0, load.seconds / 2), load.warmup)
    for name, warm in ORDER:
        if warm and load.warmup > 0:
            await run_wrk(nodes[0].base, "route.lua", None, PREFIX, half,
                          seconds=load.warmup, targets=sides[name])
        before = await forwards(client, nodes)  # around the measured run only
        rounds[name].append(await run_wrk(nodes[0].base, "route.lua", None, PREFIX, half,
                                          targets=sides[name], watch=pids))
        sent[name] += await forwards(client, nodes) - before
    for name, runs in rounds.items():
        side = combine(runs)
        side["node_forwards"] = sent[name]
        side["forwarded_share"] = (round(sent[name] / side["requests"], 4)
                                   if side["requests"] else None)
        out[name] = side
    r, c = out["random"], out["routed"]
    if r["valid"] and c["valid"] and r["rps"]:
        out["routed_over_random_rps"] = round(c["rps"] / r["rps"], 3)
    return out


# ABBA: drift of the machine's load (it is shared) hits both sides alike; each side
# warms up before its first half only (the second follows a run of the same side, or
# its pools are still warm).
ORDER = (("random", True), ("routed", True), ("routed", False), ("random", False))


def combine(runs: list[WrkResult]) -> dict[str, Any]:
    """Two halves of one side as one run: counts and seconds add up; CPU shares are
    per wall second over both; p50/p90/p99 are the request-weighted means of the
    halves' (wrk reports percentiles, not histograms), max is the max."""
    n = sum(r.requests for r in runs)
    secs = sum(r.seconds for r in runs)

    def weighted(field: str) -> float | None:
        vals = [(getattr(r, field), r.requests) for r in runs]
        if n == 0 or any(v is None for v, _ in vals):
            return None
        return round(float(sum(v * k for v, k in vals)) / n, 3)

    def per_second(field: str) -> float | None:
        vals = [(getattr(r, field), r.seconds) for r in runs]
        if not secs or any(v is None for v, _ in vals):
            return None
        return round(float(sum(v * t for v, t in vals)) / secs, 3)

    non_2xx = sum(r.non_2xx for r in runs)
    socket_errors = sum(r.socket_errors for r in runs)
    per_target: dict[str, int] = {}
    for r in runs:
        for url, count in r.per_target.items():
            per_target[url] = per_target.get(url, 0) + count
    threads = runs[0].threads
    wrk_cpu = per_second("wrk_cpu_share")
    return {
        "requests": n, "seconds": round(secs, 3), "rps": round(n / secs, 1) if secs else 0.0,
        "p50_ms": weighted("p50_ms"), "p90_ms": weighted("p90_ms"),
        "p99_ms": weighted("p99_ms"), "max_ms": max(r.max_ms for r in runs),
        "non_2xx": non_2xx, "socket_errors": socket_errors,
        "timeouts": sum(r.timeouts for r in runs),
        "error_share": round((non_2xx + socket_errors) / max(1, n), 5),
        "valid": n > 0 and (non_2xx + socket_errors) / n <= 0.01,
        "threads": threads, "connections": runs[0].connections, "keys": runs[0].keys,
        "wrk_cpu_share": wrk_cpu,
        "wrk_cpu_per_thread": round(wrk_cpu / threads, 3) if wrk_cpu is not None else None,
        "servers_cpu_share": per_second("servers_cpu_share"),
        "machine_busy_cores": per_second("machine_busy_cores"),
        "per_target": per_target, "halves": [r.to_json() for r in runs],
    }
