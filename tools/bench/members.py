"""Steps on real kstate members that more than one benchmark phase takes: start a node
and time its replay, add a member and time its join, read the routing table.

Each step returns a plain dict for the results JSON and raises when its member does not
get there within ``cfg.phase_timeout``; :func:`phase` records either.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from kstate.client import Table
from tools.bench.config import Config
from tools.bench.load import Loaded
from tools.bench.tools import Probe, rss_bytes, track, wait_keys
from tools.procs import Node, wait_ready, wait_stable

PREFIX = "/users/"


async def phase(out: dict[str, Any], name: str, fn: Callable[[], Awaitable[dict[str, Any]]],
                say: Callable[[str], None]) -> dict[str, Any] | None:
    """Run one phase; keep its result (or its error) under ``out[name]``."""
    t0 = time.monotonic()
    try:
        res = await fn()
        res["phase_seconds"] = round(time.monotonic() - t0, 3)
        out[name] = res
        return res
    except Exception as exc:  # one failed phase must not hide the others' numbers
        out[name] = {"error": f"{type(exc).__name__}: {exc}"[:3000]}
        say(f"{name} FAILED: {out[name]['error'][:500]}")
        return None


def owners_of(table: dict[str, str]) -> dict[int, str]:
    return {int(k.rsplit("-", 1)[1]): url for k, url in table.items()}


async def groupinfo(client: httpx.AsyncClient, node: Node) -> dict[int, str]:
    r = await client.get(f"{node.base}/groupinfo", timeout=5)
    r.raise_for_status()
    return owners_of(r.json())


async def routing_table(client: httpx.AsyncClient, node: Node) -> Table:
    """The routing table as kstate's own client reads it (``Table.parse``)."""
    r = await client.get(f"{node.base}/groupinfo", timeout=5)
    r.raise_for_status()
    return Table.parse(r.json(), int(r.headers.get("kstate-generation") or 0), node.url)


def replayed(ready: dict[str, Any], partitions: set[int] | None = None) -> int:
    parts = ready.get("partitions", {})
    return sum(int(s.get("replayed") or 0) for p, s in parts.items()
               if partitions is None or int(p) in partitions)


def catchup(ready: dict[str, Any]) -> float | None:
    secs = [s.get("catchup_seconds") for s in ready.get("partitions", {}).values()]
    known = [float(s) for s in secs if s is not None]
    return max(known) if known else None


def rate(records: int, seconds: float | None) -> int | None:
    return round(records / seconds) if seconds else None


def warnings(node: Node, last: int = 3) -> str:
    """The node's last WARNING/ERROR log lines: why it did not get there."""
    lines = [ln for ln in node.log_text().splitlines()
             if "level=WARNING" in ln or "level=ERROR" in ln]
    return f"last warnings in {node.log_path.name}: {lines[-last:]}" if lines else \
        f"no warnings in {node.log_path.name}"


def probes(data: Loaded) -> list[str]:
    """The last key written to each partition: it answers 200 only once the partition
    is replayed to its end."""
    return [data.last_key[p] for p in sorted(data.last_key)]


async def idle_rss(client: httpx.AsyncClient, cfg: Config, group: str,
                   extra: dict[str, str]) -> dict[str, Any]:
    """RSS of a ready node on the empty topic: the baseline memory of a member."""
    node = Node(cfg.bootstrap, f"bench-empty-{cfg.run_id}", f"{group}-idle",
                cfg.run_dir / "logs", extra=dict(extra))
    track(node.start().proc)  # type: ignore[arg-type]
    try:
        await wait_ready(client, node, timeout=cfg.phase_timeout)
        await trio.sleep(1.0)
        assert node.proc is not None
        return {"rss_bytes": rss_bytes(node.proc.pid)}
    finally:
        node.stop_now()


async def replay(client: httpx.AsyncClient, node: Node, cfg: Config, data: Loaded
                 ) -> dict[str, Any]:
    """Start ``node`` alone on the loaded topic: seconds until the last key of every
    partition answers 200, records/s, and its memory then."""
    t0 = time.monotonic()
    track(node.start().proc)  # type: ignore[arg-type]
    ready_at: list[float] = []

    async def _readyz() -> None:
        while True:
            try:
                r = await client.get(f"{node.base}/readyz", timeout=5)
                if r.status_code == 200:
                    ready_at.append(time.monotonic() - t0)
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)

    probe: Probe | None = None
    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + cfg.phase_timeout + 10
        nursery.start_soon(_readyz)
        probe = await wait_keys(client, node.base, PREFIX, probes(data), t0=t0,
                                within=cfg.phase_timeout, alive=node.alive)
        nursery.cancel_scope.cancel()
    if probe is None or probe.seconds is None:
        raise RuntimeError(f"{node.url} not serving after {cfg.phase_timeout}s: "
                           f"{probe.statuses if probe else '-'}; {warnings(node)}")
    ready = await wait_ready(client, node, timeout=30)
    assert node.proc is not None
    records = replayed(ready)
    return {"seconds": probe.seconds, "ready_seconds": ready_at[0] if ready_at else None,
            "records": records, "records_per_s": round(records / probe.seconds),
            "inprocess_seconds": catchup(ready),
            "inprocess_records_per_s": rate(records, catchup(ready)),
            "statuses": probe.statuses, "rss_bytes": rss_bytes(node.proc.pid),
            "rss_peak_bytes": rss_bytes(node.proc.pid, "VmHWM"),
            "raw_bytes": data.raw_bytes}


async def join(client: httpx.AsyncClient, members: list[Node], new: Node, cfg: Config,
               data: Loaded) -> dict[str, Any]:
    """Start ``new`` next to ``members``: seconds until the group is stable over all of
    them and ``new`` answers 200 for the last key of every partition (through itself:
    its own partitions replayed, the others forwarded), and what it replayed."""
    t0 = time.monotonic()
    track(new.start().proc)  # type: ignore[arg-type]
    table = await wait_stable(client, [*members, new], cfg.partitions,
                              timeout=cfg.phase_timeout)
    stable = round(time.monotonic() - t0, 3)
    probe = await wait_keys(client, new.base, PREFIX, probes(data), t0=t0,
                            within=cfg.phase_timeout, alive=new.alive)
    if probe.seconds is None:
        raise RuntimeError(f"{new.url} not serving every key: {probe.statuses}; "
                           f"{warnings(new)}")
    mine = {p for p, url in owners_of(table).items() if url == new.url}
    ready = await wait_ready(client, new, timeout=30)
    records = replayed(ready, mine)
    assert new.proc is not None
    return {"seconds": probe.seconds, "stable_seconds": stable, "records": records,
            "records_per_s": rate(records, probe.seconds),
            "inprocess_seconds": catchup(ready),
            "inprocess_records_per_s": rate(records, catchup(ready)),
            "partitions_moved": sorted(mine), "statuses": probe.statuses,
            "rss_bytes": rss_bytes(new.proc.pid)}
