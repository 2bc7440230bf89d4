"""The faust-streaming peer's side of the benchmark (bench/peers/faust_app.py).

idle worker (empty topic: baseline memory) → worker 1 ingests the loaded topic through
its agent (first start) → worker 1 stops (commits) and a fresh worker 1 process
restores the table from the changelog: faust's replay, comparable to a kstate node
starting → GET on it alone → worker 2 joins → GET owner-local and via table_route's
forwarding → kill -9 worker 2 → worker 2 back → SIGTERM worker 2. The workers run
from the separate venv .cache/bench-venv (faust pins its own aiokafka).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from tools.bench.config import Config
from tools.bench.load import Loaded
from tools.bench.members import phase
from tools.bench.tools import BENCH, Probe, measure, rss_bytes, track, wait_keys, write_keys
from tools.procs import REPO, free_port

PREFIX = "/user/"
FAUST = REPO / ".cache" / "bench-venv" / "bin" / "faust"


def say(msg: str) -> None:
    print(f"[faust]  {msg}", flush=True)


@dataclass
class Worker:
    """One ``faust worker`` process of the peer app on 127.0.0.1:<port>."""

    cfg: Config
    app_id: str
    topic: str
    name: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.cfg.run_dir / "logs" / f"faust-{self.name}.log"

    def start(self) -> Worker:
        assert not self.alive(), "already running"
        env = {k: v for k, v in os.environ.items()
               if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
        datadir = self.cfg.run_dir / "faust" / f"{self.name}-{self.starts}"
        datadir.mkdir(parents=True, exist_ok=True)
        env.update({
            "BENCH_BOOTSTRAP": self.cfg.bootstrap, "BENCH_TOPIC": self.topic,
            "BENCH_PARTITIONS": str(self.cfg.partitions), "BENCH_APP_ID": self.app_id,
            "BENCH_DATADIR": str(datadir), "BENCH_STANDBY": str(self.cfg.faust_standby),
            "BENCH_SESSION_TIMEOUT": str(self.cfg.session_timeout_ms / 1000),
            "PYTHONUNBUFFERED": "1",
        })
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts} ----\n".encode())
            log.flush()
            self.proc = track(subprocess.Popen(
                [str(FAUST), "-A", "faust_app", "worker", "--web-host", "127.0.0.1",
                 "--web-port", str(self.port), "-l", "info"],
                env=env, cwd=BENCH / "peers", stdout=log, stderr=subprocess.STDOUT))
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def term(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, within: float = 30.0) -> int | None:
        """Exit code, or None if it had to be killed after ``within`` seconds."""
        proc = self.proc
        assert proc is not None
        try:
            return int(await trio.to_thread.run_sync(proc.wait, within))
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def stop_now(self) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pids(*workers: Worker) -> list[int]:
    return [w.proc.pid for w in workers if w.proc is not None and w.alive()]


async def owners(client: httpx.AsyncClient, w: Worker) -> dict[int, str]:
    r = await client.get(f"{w.base}/bench/owners", timeout=5)
    r.raise_for_status()
    return {int(p): url for p, url in r.json().items()}


async def wait_owned(client: httpx.AsyncClient, workers: list[Worker], partitions: int,
                     within: float) -> dict[int, str]:
    """Until every worker reports the same owner table, covering every partition and
    owned by exactly these workers."""
    urls = {w.base for w in workers}
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"faust worker {w.name} exited; see {w.log_path}")
        try:
            tables = [await owners(client, w) for w in workers]
            if (all(t == tables[0] for t in tables) and len(tables[0]) == partitions
                    and set(tables[0].values()) == urls):
                return tables[0]
            last = tables
        except httpx.HTTPError as exc:
            last = exc
        await trio.sleep(0.1)
    raise RuntimeError(f"faust workers not settled after {within}s: {last!r}")


async def run(cfg: Config, data: Loaded, out: dict[str, Any]) -> None:
    if not FAUST.exists():
        raise RuntimeError(f"{FAUST} is missing: bench/run.sh installs faust-streaming there")
    keydir = cfg.run_dir / "keys"
    app_id = f"bench-faust-{cfg.run_id}"
    probes = [data.last_key[p] for p in sorted(data.last_key)]
    all_keys = write_keys(keydir / "faust-all.txt", (e for e, _ in data.sample))
    w1 = Worker(cfg, app_id, cfg.topic, "w1")
    w2 = Worker(cfg, app_id, cfg.topic, "w2")

    async with httpx.AsyncClient(trust_env=False) as client:

        async def serve_all(w: Worker, t0: float, keys: list[str] | None = None,
                            moved: Callable[[], Awaitable[bool]] | None = None) -> Probe:
            probe = await wait_keys(client, w.base, PREFIX, probes if keys is None else keys,
                                    t0=t0, within=cfg.phase_timeout, alive=w.alive,
                                    moved=moved)
            if probe.seconds is None:
                raise RuntimeError(f"{w.name} not serving after {cfg.phase_timeout}s: "
                                   f"{probe.statuses}")
            return probe

        async def idle() -> dict[str, Any]:
            w = Worker(cfg, f"{app_id}-idle", f"bench-empty-{cfg.run_id}", "idle")
            w.start()
            try:
                await wait_owned(client, [w], cfg.partitions, cfg.phase_timeout)
                deadline = time.monotonic() + cfg.phase_timeout
                while time.monotonic() < deadline:  # serving: an unknown key is a 404
                    r = await client.get(f"{w.base}{PREFIX}nobody@bench.kstate.test", timeout=5)
                    if r.status_code == 404:
                        break
                    await trio.sleep(0.1)
                await trio.sleep(1.0)
                assert w.proc is not None
                return {"rss_bytes": rss_bytes(w.proc.pid)}
            finally:
                w.stop_now()

        async def ingest() -> dict[str, Any]:
            t0 = time.monotonic()
            w1.start()
            probe = await serve_all(w1, t0)
            assert w1.proc is not None
            return {"seconds": probe.seconds, "records": data.records,
                    "records_per_s": round(data.records / probe.seconds),
                    "statuses": probe.statuses, "rss_bytes": rss_bytes(w1.proc.pid)}

        async def replay() -> dict[str, Any]:
            # Stop the ingesting worker (it commits its source offsets and leaves), then a
            # fresh process of the same app restores its table from the changelog.
            w1.term()
            code = await w1.wait_exit(60)
            t0 = time.monotonic()
            w1.start()
            probe = await serve_all(w1, t0)
            assert w1.proc is not None
            return {"seconds": probe.seconds, "records": data.records,
                    "records_per_s": round(data.records / probe.seconds),
                    "statuses": probe.statuses, "rss_bytes": rss_bytes(w1.proc.pid),
                    "rss_peak_bytes": rss_bytes(w1.proc.pid, "VmHWM"),
                    "raw_bytes": data.raw_bytes, "previous_exit_code": code}

        async def get_local_1() -> dict[str, Any]:
            return (await measure(w1.base, "get.lua", all_keys, PREFIX, cfg.load,
                                  watch=pids(w1))).to_json()

        async def join() -> dict[str, Any]:
            t0 = time.monotonic()
            w2.start()
            table = await wait_owned(client, [w1, w2], cfg.partitions, cfg.phase_timeout)
            await serve_all(w1, t0)
            probe = await serve_all(w2, t0)
            mine = sorted(p for p, url in table.items() if url == w2.base)
            active = sum(data.per_partition[p] for p in mine)
            # With standby replicas faust also restores the partitions it does not own.
            restored = data.records if cfg.faust_standby >= 1 else active
            return {"seconds": probe.seconds, "records": restored, "active_records": active,
                    "records_per_s": round(restored / probe.seconds) if probe.seconds else None,
                    "partitions_moved": mine, "statuses": probe.statuses}

        async def get_two() -> dict[str, Any]:
            table = await owners(client, w1)
            local = [e for e, p in data.sample if table.get(p) == w1.base]
            remote = [e for e, p in data.sample if table.get(p) == w2.base]
            local_f = write_keys(keydir / "faust-w1-local.txt", local)
            remote_f = write_keys(keydir / "faust-w1-remote.txt", remote)
            res_local = await measure(w1.base, "get.lua", local_f, PREFIX, cfg.load,
                                      watch=pids(w1, w2))
            res_remote = await measure(w1.base, "get.lua", remote_f, PREFIX, cfg.load,
                                       watch=pids(w1, w2))
            return {"local": res_local.to_json(), "proxied": res_remote.to_json()}

        async def failover(how: str) -> dict[str, Any]:
            table = await owners(client, w1)
            moved = sorted(p for p, url in table.items() if url == w2.base)
            if not moved:
                raise RuntimeError(f"worker 2 owns no partition: {table}")
            keys = [data.last_key[p] for p in moved if p in data.last_key]

            async def w1_owns_all() -> bool:
                try:
                    table = await owners(client, w1)
                except httpx.HTTPError:
                    return False
                return len(table) == cfg.partitions and set(table.values()) == {w1.base}

            t0 = time.monotonic()
            if how == "kill":
                w2.kill()
            else:
                w2.term()
            probe = await serve_all(w1, t0, keys, moved=w1_owns_all)
            res: dict[str, Any] = probe.to_json()
            res["partitions"] = moved
            if how == "term":
                res["exit_code"] = await w2.wait_exit(30)
            return res

        async def rejoin() -> dict[str, Any]:
            t0 = time.monotonic()
            w2.start()
            await wait_owned(client, [w1, w2], cfg.partitions, cfg.phase_timeout)
            await serve_all(w2, t0)
            return {"seconds": round(time.monotonic() - t0, 3)}

        try:
            if await phase(out, "idle", idle, say):
                say(f"idle RSS {out['idle']['rss_bytes'] / 2**20:.1f} MiB")
            if not await phase(out, "ingest", ingest, say):
                return
            say(f"ingest (agent, first start): serving after {out['ingest']['seconds']} s")
            if not await phase(out, "replay", replay, say):
                return
            r = out["replay"]
            say(f"replay (changelog restore): serving after {r['seconds']} s, "
                f"{r['records_per_s']}/s, RSS {r['rss_bytes'] / 2**20:.1f} MiB")
            if await phase(out, "get_local_1", get_local_1, say):
                say(f"GET local, 1 worker: {out['get_local_1']['rps']} req/s")
            if not await phase(out, "join", join, say):
                return
            say(f"join: worker 2 serving after {out['join']['seconds']} s")
            if await phase(out, "get_2", get_two, say):
                say(f"GET 2 workers: local {out['get_2']['local']['rps']} req/s, proxied "
                    f"{out['get_2']['proxied']['rps']} req/s")
            if await phase(out, "failover_kill", lambda: failover("kill"), say):
                say(f"failover kill -9: {out['failover_kill']['seconds']} s")
            if await phase(out, "rejoin", rejoin, say):
                say(f"rejoin after kill: {out['rejoin']['seconds']} s")
                if await phase(out, "failover_term", lambda: failover("term"), say):
                    say(f"failover SIGTERM: {out['failover_term']['seconds']} s")
        finally:
            for w in (w2, w1):
                w.stop_now()
