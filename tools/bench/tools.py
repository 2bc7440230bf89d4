"""What both sides of the benchmark use: wrk runs, key probes, memory, process cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

BENCH = Path(__file__).resolve().parent
WRK_DIR = BENCH / "wrk"

# Every process the benchmark starts, so that whatever happens they are all stopped.
STARTED: list[subprocess.Popen[bytes]] = []


def track(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    STARTED.append(proc)
    return proc


def own_children() -> list[int]:
    """Pids of this process's live children (wrk runs trio started, nodes, workers)."""
    me, pids = str(os.getpid()), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[1] == me and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def stop_all(grace: float = 10.0) -> None:
    """SIGTERM every process this benchmark started that still runs (tracked ones and
    any other child of this process, e.g. a wrk cut short); SIGKILL after ``grace``
    seconds. Only our own processes, by pid."""
    live = [p for p in STARTED if p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    tracked = {p.pid for p in live}
    others = [pid for pid in own_children() if pid not in tracked]
    for pid in others:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for pid in others:
        _reap(pid, deadline)


def _reap(pid: int, deadline: float) -> None:
    """Wait for our child ``pid`` until ``deadline``, then SIGKILL it; reap it."""
    try:
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        return  # already reaped by whoever started it


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process (VmRSS; VmHWM for the peak so far), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a live process has used so far (None: it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name: field 3 on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int, int]:
    """(busy, total) CPU ticks of the whole machine so far, and its CPU count, from
    /proc/stat."""
    lines = Path("/proc/stat").read_text().splitlines()
    cpu = [int(x) for x in lines[0].split()[1:]]
    cores = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)  # idle + iowait
    total = sum(cpu[:8])  # user .. steal (guest time is already inside user)
    return total - idle, total, cores


class CpuWatch:
    """CPU used between :meth:`start` and :meth:`stop`: by given processes (the servers
    under load) and by the whole machine (shared: other work shows up here)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._before: dict[int, float] = {}
        self._ticks = (0, 0, 1)

    def start(self) -> None:
        self._before = {p: c for p in self.pids if (c := cpu_seconds(p)) is not None}
        self._ticks = machine_ticks()

    def stop(self, seconds: float) -> dict[str, float | None]:
        used = 0.0
        for pid, before in self._before.items():
            now = cpu_seconds(pid)
            if now is not None:
                used += now - before
        busy, total, cores = machine_ticks()
        d_busy, d_total = busy - self._ticks[0], total - self._ticks[1]
        return {
            "servers_cpu_share": round(used / seconds, 3) if self.pids and seconds else None,
            "machine_busy_cores": round(d_busy / d_total * cores, 2) if d_total else None,
        }


def quantile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile of an ascending, non-empty list (nearest rank, as the Python
    load generators of the bench report it)."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def write_keys(path: Path, emails: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{e}\n" for e in emails))
    return path


# -- wrk ---------------------------------------------------------------------------

@dataclass
class Load:
    """One fixed-concurrency load run and what wrk measured."""

    connections: int = 10
    threads: int = 1
    seconds: float = 10.0
    warmup: float = 1.0


@dataclass
class WrkResult:
    target: str
    script: str
    keys: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non_2xx: int
    socket_errors: int
    timeouts: int
    wrk_cpu_share: float  # CPU seconds wrk used per second: far below 1 = not the bottleneck
    threads: int = 1
    connections: int = 10
    servers_cpu_share: float | None = None  # CPU s/s of the watched server processes
    machine_busy_cores: float | None = None  # busy cores of the whole machine meanwhile
    per_target: dict[str, int] = field(default_factory=dict)  # requests built per address
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def error_share(self) -> float:
        return (self.non_2xx + self.socket_errors) / max(1, self.requests)

    @property
    def valid(self) -> bool:
        """At most 1% of the answers were errors: the numbers mean what they say."""
        return self.requests > 0 and self.error_share <= 0.01

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["error_share"] = round(self.error_share, 5)
        out["valid"] = self.valid
        return out


def wrk_available() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (bench/run.sh installs Debian's wrk)")
    return path


Target = tuple[str, Path]  # (http://host:port, key file): one wrk thread each


async def run_wrk(base: str, script: str, keyfile: Path | None, prefix: str, load: Load,
                  seconds: float | None = None, *, targets: Sequence[Target] = (),
                  watch: Sequence[int] = ()) -> WrkResult:
    """Run wrk against ``base`` (http://host:port) with bench/wrk/<script> picking
    random keys from ``keyfile``; bounded by its duration plus 30 s.

    With ``targets`` (script route.lua), wrk runs one thread per target, each connected
    to its own address with its own key file, and ``load.connections`` rounded to a
    multiple of the threads. ``watch``: pids whose CPU use is reported with the run."""
    duration = load.seconds if seconds is None else seconds
    threads, connections = load.threads, load.connections
    env = dict(os.environ)
    args = [str(keyfile), prefix] if keyfile is not None else [prefix]
    if targets:
        threads = len(targets)
        connections = max(1, round(load.connections / threads)) * threads
        env["BENCH_WRK_TARGETS"] = ",".join(
            f"{url.removeprefix('http://')}={path}" for url, path in targets)
    cmd = [wrk_available(), f"-t{threads}", f"-c{connections}",
           f"-d{max(1, round(duration))}s", "--timeout", "5s",
           "-s", str(WRK_DIR / script), base, "--", *args]
    cpu_watch = CpuWatch(watch)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_watch.start()
    with trio.fail_after(duration + 30):
        proc = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True,
                                      check=False, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the child reaped meanwhile
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout.decode(errors="replace")
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-2000:]}"
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    per_target: dict[str, int] = next(
        (json.loads(ln.removeprefix("WRKTARGETS ")) for ln in out.splitlines()
         if ln.startswith("WRKTARGETS ")), {})
    secs = raw["duration_us"] / 1e6
    usage = cpu_watch.stop(secs)
    files = [path for _, path in targets] if targets else [keyfile] if keyfile else []
    keys = sum(sum(1 for _ in path.open()) for path in dict.fromkeys(files))
    return WrkResult(
        target=base, script=script, keys=keys, requests=raw["requests"],
        seconds=round(secs, 3), rps=round(raw["requests"] / secs, 1) if secs else 0.0,
        p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000, max_ms=raw["max_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3), non_2xx=raw["status_errors"],
        socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"],
        timeouts=raw["timeouts"], wrk_cpu_share=round(cpu / secs, 3) if secs else 0.0,
        threads=threads, connections=connections,
        servers_cpu_share=usage["servers_cpu_share"],
        machine_busy_cores=usage["machine_busy_cores"], per_target=per_target, raw=raw)


async def measure(base: str, script: str, keyfile: Path | None, prefix: str, load: Load, *,
                  targets: Sequence[Target] = (), watch: Sequence[int] = ()) -> WrkResult:
    """A short warm-up (connections, pools, caches), then the measured run."""
    if load.warmup > 0:
        await run_wrk(base, script, keyfile, prefix, load, seconds=load.warmup,
                      targets=targets)
    return await run_wrk(base, script, keyfile, prefix, load, targets=targets, watch=watch)


# -- probes ------------------------------------------------------------------------

@dataclass
class Probe:
    """Polling a set of keys until each has answered 200 once."""

    seconds: float | None  # from t0 until the last key answered 200; None: timed out
    keys: int
    statuses: dict[str, int]  # every answer seen while waiting, by status
    polls: int
    # with ``moved``: the answers seen once the survivor owned the keys (the rest came
    # while ownership had not moved yet)
    statuses_after_moved: dict[str, int] | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


async def wait_keys(client: httpx.AsyncClient, base: str, prefix: str, emails: list[str], *,
                    t0: float, within: float, alive: Callable[[], bool] = lambda: True,
                    moved: Callable[[], Awaitable[bool]] | None = None,
                    interval: float = 0.05) -> Probe:
    """GET each key (one request at a time) until every one has answered 200, counting
    what came back on the way, for at most ``within`` seconds after ``t0`` (the
    time.monotonic() the clock started at).

    With ``moved`` (failover), only answers after ``moved()`` first returned True count
    as served: until the survivor owns the keys, a 200 may still come from a member that
    is shutting down. Every key is polled on every round either way."""
    keys = list(dict.fromkeys(emails))
    left = list(keys)
    done = moved is None
    seen: Counter[str] = Counter()
    after: Counter[str] = Counter()
    polls = 0
    deadline = t0 + within
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server behind {base} exited while being probed")
        if not done and moved is not None and await moved():
            done = True
            left = list(keys)
        for email in list(left if done else keys):
            polls += 1
            try:
                r = await client.get(f"{base}{prefix}{email}", timeout=5)
                answer = str(r.status_code)
                if r.status_code == 200 and done:
                    left.remove(email)
            except httpx.HTTPError as exc:
                answer = type(exc).__name__
            seen[answer] += 1
            if done and moved is not None:
                after[answer] += 1
        if done and not left:
            break
        await trio.sleep(interval)
    seconds = None if left or not done else round(time.monotonic() - t0, 3)
    return Probe(seconds, len(keys), dict(seen), polls,
                 None if moved is None else dict(after))


def machine() -> dict[str, object]:
    load1, load5, _ = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg_1m": round(load1, 2),
            "loadavg_5m": round(load5, 2)}
