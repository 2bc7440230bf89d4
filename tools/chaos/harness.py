"""One chaos run: Kafka + N nodes, a seeded schedule of faults, a bounded workload,
a checker for every answer, and the numbers. :func:`run_chaos` is the whole of it;
``python -m tools.chaos`` and ``tests/chaos/test_chaos_short.py`` call it.

Phases (all bounded):
1. Kafka (unless ``bootstrap`` is given) and ``nodes`` nodes; wait until the group is
   stable (every node ready, one routing table covering every partition).
   Before the nodes start, ``history`` filler records (other keys) are produced into
   the topic so that a partition that moves has something to replay: a node serving
   before it caught up would answer from a half-built state, and the window in which
   that shows is as long as the replay.
2. Seed: PUT every key once until acknowledged, so every key exists (no 404 is right).
3. Chaos for ``duration`` s: ``clients`` trio tasks send GET/PUT (and DELETE on the
   delete keys) to random ``up`` nodes at ``rate`` requests/s in total (``read_back`` of
   the acknowledged writes are read back at once through another random node; ``cas`` of
   the writes are If-Match the version a read just returned); a prober reads one key per
   partition every ``probe_interval`` s (rotating through the keys); events fire per the
   schedule (a ``cut`` isolates a node from Kafka: isolation.py). After each event the
   harness waits until the group is stable again over the nodes it believes up and a
   sweep has read every key correctly (``all_keys_s``); after a cut or a pause it also
   reads every key from every node; then it keeps the planned gap before the next event.
4. Final verification: workload stopped, group stable, every key read from every live
   node and judged against every acknowledged write (a wrong answer = ``lost_write``);
   then the whole topic is read from Kafka and audited (audit.py), and those reads
   compared with each key's last record in it.
5. Teardown: SIGTERM every node (must exit 0), stop the proxies and Kafka.
6. Porcupine (linearizability.py) checks the history every request was recorded in
   (history.py); both verdicts go into the JSON and the summary.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import trio

from actors.router import TABLE_WAIT
from kstate.bridge import KafkaConfig
from kstate.bridge.tooling import open_tooling
from kstate.core.partitioner import partition_for
from kstate.settings import Settings
from kstate.settings_help import env_name
from tools.chaos import linearizability
from tools.chaos.checker import Checker
from tools.chaos.cluster import Cluster, KafkaRun
from tools.chaos.history import History
from tools.chaos.phases import Run
from tools.chaos.schedule import Event, Kind, plan, slots_needed
from tools.chaos.slots import SlotProxies
from tools.procs import REPO

log = logging.getLogger("chaos")

# The harness's own slack on top of a node's answer bound (its event loop, loopback).
CLIENT_SLACK = 2.0
# The settings a node's answer bound depends on (kstate.settings, owner_worst_case).
TIMING = ("write_timeout", "catchup_timeout", "proxy_timeout")


def node_answer_bound(env: Mapping[str, str]) -> float:
    """Seconds a node started with ``env`` may take to answer a request: up to
    TABLE_WAIT for a routing table that knows the key's owner, then either its own
    answer as the owner or, forwarded, the owner's within ``proxy_deadline`` (else 503
    ``owner_no_answer``), which is never shorter than the owner's worst case."""
    values = {name: float(env[env_name(name)]) for name in TIMING if env_name(name) in env}
    return TABLE_WAIT + Settings(**values).proxy_deadline  # type: ignore[arg-type]


def client_timeout(cfg: ChaosConfig, bound: float) -> float:
    """``cfg.timeout``, else longer than the nodes' answer ``bound`` by CLIENT_SLACK."""
    return cfg.timeout if cfg.timeout is not None else bound + CLIENT_SLACK


@dataclass
class ChaosConfig:
    duration: float = 120.0
    nodes: int = 3
    seed: int = 1
    mode: Literal["single", "cluster"] = "single"
    clients: int = 8
    keys: int = 200
    rate: float = 60.0  # workload requests per second, all clients together
    write_ratio: float = 0.3
    read_back: float = 0.5  # share of acknowledged writes read back at once
    cas: float = 0.3  # share of writes sent with If-Match: the version just read
    hot: float = 0.2  # share of workload requests that go to the 5 hot keys
    partitions: int = 10
    history: int = 20_000  # filler records put in the topic before the nodes start
    bootstrap: str | None = None
    gap: tuple[float, float] = (15.0, 25.0)
    events: list[Kind] = field(default_factory=list)  # forced kinds, in order
    max_nodes: int | None = None
    pauses: bool = False  # draw "pause" events (SIGSTOP/SIGCONT) too
    netcuts: bool = False  # draw "cut" events (a node's Kafka traffic blackholed) too
    standby: bool = False  # nodes keep standby copies (KSTATE_STANDBY)
    pause: float = 10.0  # seconds a paused node stays frozen (> session timeout 6 s)
    cut: float | None = None  # seconds a cut lasts (default: session timeout + 4)
    session_timeout: float = 6.0  # the nodes' group session timeout (seconds)
    delete_keys: float = 0.2  # share of the keys that also get deletes
    delete_ratio: float = 0.4  # share of the writes of a delete key that are deletes
    lin_timeout: float = 120.0  # Porcupine's limit (its verdict is "unknown" past it)
    # client timeout per request; None: the nodes' answer bound + CLIENT_SLACK, so that
    # a timeout means a node broke its bound (a violation, answer_timeout)
    timeout: float | None = None
    probe_interval: float = 0.25
    recover_timeout: float = 60.0  # an event not recovered from by then: not_recovered
    out: Path | None = None
    log_dir: Path | None = None


    @property
    def cut_for(self) -> float:
        return self.cut if self.cut is not None else self.session_timeout + 4.0


def schedule_of(cfg: ChaosConfig) -> list[Event]:
    return plan(cfg.seed, nodes=cfg.nodes, duration=cfg.duration,
                cluster=cfg.mode == "cluster" and cfg.bootstrap is None, gap=cfg.gap,
                forced=cfg.events, max_nodes=cfg.max_nodes, pauses=cfg.pauses,
                netcuts=cfg.netcuts)


def _default_paths(cfg: ChaosConfig) -> tuple[Path, Path]:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = REPO / "chaos-results"
    out = cfg.out or base / f"{stamp}-{cfg.mode}-s{cfg.seed}.json"
    logs = cfg.log_dir or out.with_suffix("")
    return out, logs


async def prefill(bootstrap: str, topic: str, cfg: ChaosConfig, tag: str) -> None:
    """Create the topic as a node would and produce ``cfg.history`` filler users."""
    config = KafkaConfig(bootstrap=bootstrap, topic=topic, partitions=cfg.partitions,
                         replication=3 if cfg.mode == "cluster" else 1,
                         group=f"prefill-{tag}", request_timeout_ms=30_000)
    async with open_tooling(config) as bridge:
        await bridge.ensure_topic()
        batch: list[tuple[int, bytes | None, bytes | None]] = []
        for i in range(cfg.history):
            key = f"h{i % 2000:04d}-{tag}@history.test"
            batch.append((partition_for(key.encode(), cfg.partitions), key.encode(),
                          orjson.dumps({"name": f"history {i}", "email": key})))
            if len(batch) == 5000 or i == cfg.history - 1:
                await bridge.produce_many(batch)
                batch = []


async def run_chaos(cfg: ChaosConfig) -> dict[str, Any]:
    """Run the whole thing; return the results (see report.py). Never leaves a
    process behind: nodes, proxies and the Kafka it started are stopped on every exit
    path. Raises if Kafka, a proxy or the first nodes cannot start."""
    out, log_dir = _default_paths(cfg)
    log_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    schedule = schedule_of(cfg)
    # Before anything starts: a run whose history cannot be checked is not worth making.
    await trio.to_thread.run_sync(linearizability.ensure_built)
    kafka = KafkaRun(cfg.mode, f"chaos-{tag}", cfg.bootstrap,
                     slots=slots_needed(schedule, cfg.nodes))
    extra = {"KSTATE_PARTITIONS": str(cfg.partitions),
             "KSTATE_SESSION_TIMEOUT_MS": str(round(cfg.session_timeout * 1000))}
    if cfg.mode == "cluster":
        extra["KSTATE_REPLICATION"] = "3"
    if cfg.standby:
        extra["KSTATE_STANDBY"] = "true"
    keys = [f"u{i:04d}-{tag}@chaos.test" for i in range(cfg.keys)]
    # the nodes inherit this process's environment (tools/procs.py), then ``extra``
    bound = node_answer_bound({**os.environ, **extra})
    timeout_s = client_timeout(cfg, bound)
    checker = Checker(keys)
    cluster = Cluster(kafka, f"chaos-{tag}", f"chaos-{tag}", log_dir, extra,
                      problems=checker.violations)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100,
                          keepalive_expiry=5.0)
    timeout = httpx.Timeout(timeout_s, connect=2.0)
    history = History(out.with_suffix(".history.jsonl"), time.monotonic(),
                      {"topic": cluster.topic, "seed": cfg.seed, "mode": cfg.mode,
                       "started_at": started_at})
    proxies: SlotProxies | None = None
    done: tuple[Run, dict[str, Any]] | None = None
    try:
        log.info("kafka (%s) starting", cfg.mode if kafka.owned else cfg.bootstrap)
        await kafka.start()
        log.info("kafka at %s; schedule: %s", kafka.bootstrap,
                 " ".join(f"+{e.gap:.0f}s {e.label}" for e in schedule))
        if kafka.slots:
            proxies = SlotProxies(kafka.slot_routes, log_dir)
            await proxies.start()
            cluster.bootstraps = {slot - 1: proxies.bootstrap(slot) for slot in kafka.slot_routes}
        if cfg.history:
            await prefill(kafka.bootstrap, cluster.topic, cfg, tag)
            log.info("%d history records in topic %s", cfg.history, cluster.topic)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
            run = Run(cfg, cluster, client, checker, history, proxies,
                      timeout=timeout_s, bound=bound)
            async with trio.open_nursery() as outer:
                outer.start_soon(run.crash_watch)
                await run.start_nodes()
                log.info("t=%.1f %d nodes stable; seeding %d keys (%d also get deletes)",
                         time.monotonic() - run.t0, cfg.nodes, cfg.keys, len(run.delete_keys))
                await run.seed()
                log.info("t=%.1f seeded; chaos for %.0f s", time.monotonic() - run.t0,
                         cfg.duration)
                await run.chaos(schedule)
                log.info("t=%.1f chaos over; final verification", time.monotonic() - run.t0)
                final = await run.final_check()
                log.info("t=%.1f final verification done: %s", time.monotonic() - run.t0,
                         {k: v for k, v in final.items() if k != "t_abs"})
                t = time.perf_counter()
                final["audit"] = await run.audit_topic()
                run.traffic.check_seconds += time.perf_counter() - t
                log.info("t=%.1f topic audit: %s", time.monotonic() - run.t0, final["audit"])
                outer.cancel_scope.cancel()
            # Every node still up must stop cleanly on SIGTERM.
            async with trio.open_nursery() as n:
                for m in cluster.up():
                    n.start_soon(cluster.term, m)
        done = (run, final)
    finally:
        with trio.CancelScope(shield=True):
            history.close()
            await trio.to_thread.run_sync(cluster.stop_all_now)
            if proxies is not None:
                await proxies.stop()
            await trio.to_thread.run_sync(kafka.stop_now)
    assert done is not None  # else the exception is on its way
    run, final = done
    log.info("porcupine: checking %d operations of %s", history.ops, history.path)
    lin = await linearizability.check(history.path, log_dir / "linearizability",
                                      cfg.lin_timeout)
    log.info("%s", lin.get("summary") or lin.get("error"))
    from tools.chaos.report import build_results, write_json

    result = build_results(cfg, run, schedule, final, started_at, out, log_dir, lin)
    write_json(result, out)
    return result


def config_dict(cfg: ChaosConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["out"] = str(cfg.out) if cfg.out else None
    d["cut_for"] = cfg.cut_for
    d["log_dir"] = str(cfg.log_dir) if cfg.log_dir else None
    return d
