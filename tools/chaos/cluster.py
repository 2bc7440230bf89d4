"""Kafka and the node processes of one chaos run, and what the harness believes about
each: a node is ``up`` only from the moment its /readyz answered 200 until the moment
the harness decides to stop it (before the signal is sent), so a client that picks an
``up`` node and then fails to reach it knows whether that node was being stopped.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import trio

from tools.procs import REPO, Node, wait_ready

log = logging.getLogger("chaos")

KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"

State = Literal["starting", "up", "stopping", "paused", "down", "removed"]


class KafkaRun:
    """A broker (single) or a 3-broker cluster started by this run, or an existing one.
    With ``slots`` > 0 every broker also gets that many proxy slots (kafka.sh
    ``KAFKA_PROXY_SLOTS``): :attr:`slot_routes` maps slot k to (advertised, internal)
    ports, one pair per broker, for the netcut proxies (slots.py)."""

    def __init__(self, mode: Literal["single", "cluster"], name: str,
                 bootstrap: str | None = None, slots: int = 0) -> None:
        self.mode = mode
        self.name = name
        self.bootstrap = bootstrap or ""
        self.owned = bootstrap is None
        self.down: set[int] = set()
        self.slots = slots
        self.slot_routes: dict[int, list[tuple[int, int]]] = {}
        if slots and not self.owned:
            raise ValueError("network cuts need proxy slots, i.e. a Kafka this run starts "
                             "(not --bootstrap)")

    @property
    def can_kill_brokers(self) -> bool:
        return self.owned and self.mode == "cluster"

    @property
    def run_dir(self) -> Path:
        return Path(os.environ.get("KAFKA_CACHE", REPO / ".cache" / "kafka")) / "run" / self.name

    async def start(self) -> str:
        """Start Kafka (RuntimeError if it cannot); return the bootstrap."""
        if not self.owned:
            return self.bootstrap
        cmd = "up" if self.mode == "single" else "cluster-up"
        res = await _kafka_sh(cmd, self.name, within=300,
                              env={"KAFKA_PROXY_SLOTS": str(self.slots)})
        self.bootstrap = res.strip().splitlines()[-1]
        if self.slots:
            for line in (self.run_dir / "slots").read_text().splitlines():
                slot, _broker, advertised, internal = (int(x) for x in line.split())
                self.slot_routes.setdefault(slot, []).append((advertised, internal))
            brokers = 1 if self.mode == "single" else 3
            if sorted(self.slot_routes) != list(range(1, self.slots + 1)) or any(
                    len(r) != brokers for r in self.slot_routes.values()):
                raise RuntimeError(f"kafka.sh wrote unexpected slots: {self.slot_routes}")
        return self.bootstrap

    async def broker_stop(self, i: int) -> None:
        await _kafka_sh("broker-stop", self.name, str(i), within=60)
        self.down.add(i)

    async def broker_start(self, i: int) -> None:
        await _kafka_sh("broker-start", self.name, str(i), within=120)
        self.down.discard(i)

    def stop_now(self) -> None:
        """Teardown (sync): stop what this run started and delete its data."""
        if not self.owned or not self.bootstrap:
            return
        cmd = "down" if self.mode == "single" else "cluster-down"
        subprocess.run([str(KAFKA_SH), cmd, self.name], timeout=120, check=False,
                       capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


async def _kafka_sh(*args: str, within: float, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, "KAFKA_PORT": "0", **(env or {})}
    with trio.fail_after(within):
        res = await trio.run_process([str(KAFKA_SH), *args], env=env, capture_stdout=True,
                                     capture_stderr=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"kafka.sh {' '.join(args)} failed ({res.returncode}):\n"
                           + res.stderr.decode(errors="replace")[-3000:])
    return res.stdout.decode()


@dataclass
class Member:
    """One node slot: n<index>, always on the same port (restarts reuse it)."""

    index: int
    node: Node
    state: State = "down"
    incarnation: int = 0  # bumped on every start and every decision to stop
    isolated: bool = False  # its Kafka connections are blackholed (a cut event)
    exited: trio.Event = field(default_factory=trio.Event)

    @property
    def name(self) -> str:
        return f"n{self.index}"


@dataclass
class Cluster:
    kafka: KafkaRun
    topic: str
    group: str
    log_dir: Path
    extra_env: dict[str, str]
    bootstraps: dict[int, str] = field(default_factory=dict)  # node index -> its own route
    members: dict[int, Member] = field(default_factory=dict)
    problems: list[dict[str, object]] = field(default_factory=list)  # violations
    notes: list[dict[str, object]] = field(default_factory=list)  # worth knowing, not wrong

    # -- what clients may use --------------------------------------------------
    def up(self) -> list[Member]:
        return [m for m in self.members.values() if m.state == "up"]

    def pick(self, rng: random.Random, avoid: Member | None = None) -> Member | None:
        up = [m for m in self.up() if m is not avoid]
        return rng.choice(up) if up else None

    def still_up(self, m: Member, incarnation: int) -> bool:
        return m.state == "up" and m.incarnation == incarnation

    # -- changes -----------------------------------------------------------------
    def new_member(self, index: int) -> Member:
        node = Node(bootstrap=self.bootstraps.get(index, self.kafka.bootstrap),
                    topic=self.topic, group=self.group,
                    log_dir=self.log_dir, extra=dict(self.extra_env))
        m = Member(index, node)
        self.members[index] = m
        return m

    def start(self, m: Member) -> None:
        assert m.state in ("down",), f"{m.name} is {m.state}"
        m.incarnation += 1
        m.exited = trio.Event()
        m.state = "starting"
        m.node.start()
        log.info("node %s start #%d on %s", m.name, m.node.starts, m.node.url)

    async def wait_up(self, client: httpx.AsyncClient, m: Member, within: float) -> bool:
        """Wait until a starting member answers /readyz 200; then it is ``up``."""
        inc = m.incarnation
        t0 = time.monotonic()
        try:
            await wait_ready(client, m.node, timeout=within)
        except AssertionError as exc:
            if m.incarnation == inc:
                text = str(exc)
                entry: dict[str, object] = {"kind": "start_failed", "node": m.name,
                         "detail": f"{time.monotonic() - t0:.1f}s after start "
                                   f"#{m.node.starts}: " + text[-2000:]}
                if "Errno 98" in text or "ddress already in use" in text:
                    # Another process took the port while the node was down: the
                    # machine's doing, not the node's; the slot stays down.
                    self.notes.append({**entry, "kind": "port_taken"})
                else:
                    self.problems.append(entry)
                m.state = "down"
            return False
        if m.incarnation == inc and m.state == "starting":
            m.state = "up"
            return True
        return False

    def kill9(self, m: Member) -> None:
        m.incarnation += 1
        m.state = "down"
        m.node.kill()
        m.exited.set()

    async def pause(self, m: Member, seconds: float) -> None:
        """SIGSTOP for ``seconds``, then SIGCONT: clients avoid it while it is frozen
        and use it again the moment it runs (as a client that saw it answer before
        would)."""
        m.incarnation += 1
        m.state = "paused"
        m.node.signal(signal.SIGSTOP)
        try:
            await trio.sleep(seconds)
        finally:
            m.node.signal(signal.SIGCONT)
        if m.state == "paused":
            m.incarnation += 1
            m.state = "up"

    async def term(self, m: Member, *, final: State = "down", grace: float = 20.0) -> float:
        """SIGTERM and wait for the exit; returns seconds it took. A node that does not
        exit in ``grace`` s or exits non-zero is a problem (it is then killed)."""
        m.incarnation += 1
        m.state = "stopping"
        t0 = time.monotonic()
        m.node.term()
        try:
            code = await m.node.wait_exit(grace)
        except trio.TooSlowError:
            self.problems.append({"kind": "shutdown_timeout", "node": m.name,
                                  "detail": f"no exit {grace}s after SIGTERM\n"
                                            + m.node.log_text()[-2000:]})
            m.node.kill()
            code = 0
        if code not in (0, -signal.SIGTERM):
            self.problems.append({"kind": "unclean_exit", "node": m.name,
                                  "detail": f"exit code {code} after SIGTERM\n"
                                            + m.node.log_text()[-2000:]})
        m.state = final
        m.exited.set()
        return time.monotonic() - t0

    def check_crashes(self) -> None:
        """A node the harness did not stop must not exit."""
        for m in self.members.values():
            if m.state in ("up", "starting", "paused") and not m.node.alive():
                code = m.node.proc.returncode if m.node.proc else None
                self.problems.append({"kind": "node_crashed", "node": m.name,
                                      "detail": f"exit code {code}\n"
                                                + m.node.log_text()[-3000:]})
                m.incarnation += 1
                m.state = "down"
                m.exited.set()

    def stop_all_now(self) -> None:
        """Teardown (sync): SIGTERM every node at once, SIGKILL after 15 s."""
        alive = [m for m in self.members.values() if m.node.alive()]
        for m in alive:
            m.node.signal(signal.SIGCONT)
            m.node.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for m in alive:
            assert m.node.proc is not None
            try:
                m.node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                m.node.proc.kill()
                m.node.proc.wait()
