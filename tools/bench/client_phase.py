"""Routing-aware client vs plain requests to random members: GET throughput and latency.

Two kstate members, the same keys, the same number of concurrent trio tasks, the same
duration, in this process (a Python load generator, unlike wrk):

- **client**: kstate/client.py's :class:`KstateClient` (hashes the key, sends the GET to
  the owner the cached routing table names, pooled keep-alive);
- **random**: one plain ``httpx.AsyncClient`` (pooled keep-alive too) sending each GET to
  a member picked at random, so about half the requests are proxied by a non-owner.

Each task sends one request at a time, key picked at random. The two sides alternate in
``rounds`` slices (client, random, client, random ...) so that drift in the machine's
load hits both alike; every slice starts with an unmeasured warm-up. Latency is from
just before the call until the answer is parsed (the client's own work included).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from kstate.client import KstateClient, Table, user_path
from tools.bench.tools import quantile
from tools.procs import Node

Get = Callable[[str], Awaitable[str]]  # key -> outcome ("200", "404", "error:...")


@dataclass
class Run:
    """One side's measured requests, over all its slices."""

    tasks: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # this process's CPU while measuring (load generator + client)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        n = len(lat)

        def pct(q: float) -> float | None:
            return round(quantile(lat, q), 3) if n else None

        errors = sum(c for k, c in self.outcomes.items() if k != "200")
        return {
            "tasks": self.tasks, "requests": n, "seconds": round(self.seconds, 3),
            "rps": round(n / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 3) if n else None,
            "outcomes": dict(self.outcomes), "error_share": round(errors / max(1, n), 5),
            "valid": n > 0 and errors / n <= 0.01,
            "loadgen_cpu_share": round(self.cpu_seconds / self.seconds, 3)
            if self.seconds else None,
            **self.extra,
        }


async def drive(get: Get, keys: list[str], run: Run, seconds: float, warmup: float,
                seed: int) -> None:
    """``run.tasks`` tasks GET random keys for ``warmup`` + ``seconds``; only the last
    ``seconds`` are recorded into ``run``."""
    recording = False

    async def task(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        while True:
            key = rng.choice(keys)
            t0 = time.perf_counter()
            outcome = await get(key)
            if recording:
                run.latencies_ms.append((time.perf_counter() - t0) * 1000)
                run.outcomes[outcome] += 1

    async with trio.open_nursery() as nursery:
        for i in range(run.tasks):
            nursery.start_soon(task, i)
        await trio.sleep(warmup)
        recording = True
        cpu0, t0 = time.process_time(), time.monotonic()
        await trio.sleep(seconds)
        recording = False
        run.seconds += time.monotonic() - t0
        run.cpu_seconds += time.process_time() - cpu0
        nursery.cancel_scope.cancel()


async def _forwards(http: httpx.AsyncClient, nodes: list[Node]) -> int:
    total = 0
    for n in nodes:
        r = await http.get(f"{n.base}/readyz", timeout=5)
        total += int(r.json()["router"]["forwards"])
    return total


async def run(nodes: list[Node], keys: list[str], *, tasks: int, seconds: float,
              warmup: float, rounds: int = 2) -> dict[str, Any]:
    """Measure both sides against ``nodes`` (a stable cluster) and return both runs."""
    client_run, random_run = Run(tasks), Run(tasks)
    urls = [n.url for n in nodes]
    proxied = Counter[str]()
    slice_s = seconds / rounds
    async with KstateClient([nodes[0].base], max_connections=tasks * 2) as kc, \
            httpx.AsyncClient(trust_env=False, timeout=5.0,
                              limits=httpx.Limits(max_connections=tasks * 2,
                                                  max_keepalive_connections=tasks * 2)
                              ) as http, \
            httpx.AsyncClient(trust_env=False, timeout=5.0) as ops:
        table: Table | None = kc.table()
        if table is None or table.partitions == 0 or set(table.members) != set(urls):
            raise RuntimeError(f"no complete routing table over {urls}: {table}")
        owner = {k: table.owner(k.encode()) for k in keys}
        rng = random.Random(7)

        async def with_client(key: str) -> str:
            try:
                return "200" if await kc.get(key) is not None else "404"
            except Exception as exc:
                return f"error:{type(exc).__name__}"

        async def at_random(key: str) -> str:
            url = rng.choice(urls)
            proxied["proxied" if owner[key] != url else "direct"] += 1
            try:
                r = await http.get(f"http://{url}{user_path(key)}")
            except httpx.HTTPError as exc:
                return f"error:{type(exc).__name__}"
            r.json()  # parse, as the client does
            return str(r.status_code)

        before = kc.statistics()
        fwd: dict[str, int] = {"client": 0, "random": 0}
        for i in range(rounds):
            for name, get, side in (("client", with_client, client_run),
                                    ("random", at_random, random_run)):
                f0 = await _forwards(ops, nodes)
                await drive(get, keys, side, slice_s, warmup, seed=i * 2 + (name == "random"))
                fwd[name] += await _forwards(ops, nodes) - f0
        after = kc.statistics()

    sent = sum(proxied.values())
    random_run.extra = {"proxied_share": round(proxied["proxied"] / sent, 4) if sent else None,
                        "node_forwards": fwd["random"]}
    client_run.extra = {
        "node_forwards": fwd["client"],
        "client_stats": {k: getattr(after, k) - getattr(before, k)
                         for k in after.__dataclass_fields__},
    }
    return {"client": client_run.to_json(), "random": random_run.to_json(),
            "rounds": rounds, "keys": len(keys),
            "note": "node_forwards: sum of the members' router 'forwards' counters over the "
                    "run, warm-ups included (a forwarded fast-path GET counts 2 today)"}
