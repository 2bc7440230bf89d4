"""Real kstate nodes as subprocesses, and waiting for them: shared by the integration
tests, the chaos harness, the benchmarks and the demo."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

REPO = Path(__file__).resolve().parents[1]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range: one the kernel hands out
    could be taken by an outgoing connection before the node binds it (tests run side
    by side; deploy/kafka/kafka.sh picks its ports the same way)."""
    low = _ephemeral_low()
    for port in random.sample(range(10000, low), k=min(4000, low - 10000)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class Node:
    """One ``kstate node`` process on 127.0.0.1:<port>; restartable at the same address."""

    bootstrap: str
    topic: str
    group: str
    log_dir: Path
    port: int = field(default_factory=free_port)
    extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # Where this node's output begins in its log file (set at its first start): the
    # file, named by port in a directory that outlives the run, may hold an earlier
    # node's output on that port (an earlier run of the same test), which is not this
    # node's: log_text() leaves it out.
    log_from: int | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        """The node's root url: https when it has a TLS certificate (KSTATE_TLS_CERTFILE)."""
        scheme = "https" if self.extra.get("KSTATE_TLS_CERTFILE") else "http"
        return f"{scheme}://{self.url}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"node-{self.port}.log"

    def start(self) -> Node:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        env.update({
            "KSTATE_BOOTSTRAP": self.bootstrap, "KSTATE_TOPIC": self.topic,
            "KSTATE_GROUP": self.group, "KSTATE_LISTEN": self.url,
            "KSTATE_SESSION_TIMEOUT_MS": "6000", "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        if self.log_from is None:
            self.log_from = log.tell()
        log.write(f"---- start {self.starts} ----\n".encode())
        log.flush()
        self.proc = subprocess.Popen([sys.executable, "-m", "kstate", "node"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        """The node's child processes now (Linux /proc), e.g. its producer process."""
        if not self.alive():
            return []
        assert self.proc is not None
        out: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                out += [int(p) for p in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
        return sorted(out)

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def term(self) -> None:
        self.signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        with trio.fail_after(timeout):
            while self.proc.poll() is None:
                await trio.sleep(0.05)
        return int(self.proc.returncode)

    def stop_now(self) -> None:
        """Teardown: SIGTERM, then SIGKILL after 10 s (sync; for fixtures). A node that
        did not stop gets SIGUSR1 first: its log then shows where every thread was."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        """What this node wrote to its log, every start of it (and nothing an earlier
        node on the same port wrote there)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_from or 0)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


async def wait_ready(client: httpx.AsyncClient, node: Node, timeout: float = 30.0) -> dict:
    """Wait for the node's /readyz to answer 200; return its body."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if node.proc is not None and node.proc.poll() is not None:
            raise AssertionError(f"node {node.url} exited {node.proc.returncode}:\n"
                                 + node.log_text()[-3000:])
        try:
            r = await client.get(f"{node.base}/readyz", timeout=2)
            last = r.status_code
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError as exc:
            last = exc
        await trio.sleep(0.1)
    raise AssertionError(f"node {node.url} not ready after {timeout}s (last: {last!r})\n"
                         + node.log_text()[-3000:])


async def wait_stable(client: httpx.AsyncClient, nodes: Iterable[Node], partitions: int,
                      timeout: float = 60.0) -> dict[str, str]:
    """Wait until every node is ready and all report the same routing table, owned
    by exactly these nodes and covering every partition. Return the table."""
    nodes = list(nodes)
    urls = {n.url for n in nodes}
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            tables, gens = [], set()
            for n in nodes:
                ready = await client.get(f"{n.base}/readyz", timeout=2)
                if ready.status_code != 200:
                    raise ValueError(f"{n.url} not ready")
                r = await client.get(f"{n.base}/groupinfo", timeout=2)
                tables.append(r.json())
                gens.add(r.headers.get("kstate-generation"))
            first = tables[0]
            if (all(t == first for t in tables) and len(gens) == 1
                    and len(first) == partitions and set(first.values()) == urls):
                return first
            last = (gens, tables)
        except (httpx.HTTPError, ValueError) as exc:
            last = exc
        await trio.sleep(0.2)
    raise AssertionError(f"cluster not stable after {timeout}s: {last!r}")
