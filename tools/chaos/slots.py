"""The netcut proxies of a chaos run: one ``python -m tools.netcut`` process per proxy
slot, each forwarding that slot's advertised port to its internal listener on every
broker (deploy/kafka/kafka.sh ``KAFKA_PROXY_SLOTS``). Node n<i> bootstraps through slot
i+1, so Kafka tells it slot-(i+1) addresses for every broker and all of its Kafka
connections pass its own proxy: cutting that proxy (every broker's route at once)
isolates that node from Kafka, and only it, while clients still reach it over HTTP.

The proxies are processes rather than tasks of the harness so that the harness's own
work (judging, bursts of requests) never delays a node's Kafka traffic.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import IO

import trio

from tools.netcut import HOST
from tools.procs import REPO

log = logging.getLogger("chaos")

READY_WITHIN = 20.0  # seconds a proxy process may take to listen


class SlotProxies:
    """Owns the proxy processes: :meth:`start` starts them all (RuntimeError if one does
    not come up), :meth:`stop` stops every one it started (call it on every exit)."""

    def __init__(self, routes: dict[int, list[tuple[int, int]]], log_dir: Path) -> None:
        self.routes = routes
        self.log_dir = log_dir
        self.procs: dict[int, trio.Process] = {}
        self.control: dict[int, int] = {}
        self.cut_slots: set[int] = set()

    def bootstrap(self, slot: int) -> str:
        """The bootstrap a node of ``slot`` uses: that slot's proxy of every broker."""
        return ",".join(f"{HOST}:{advertised}" for advertised, _ in self.routes[slot])

    async def start(self) -> None:
        for slot in sorted(self.routes):
            await self._start_one(slot)
        log.info("netcut proxies up for slots %s", sorted(self.procs))

    async def _start_one(self, slot: int) -> None:
        args = [sys.executable, "-m", "tools.netcut", "--control", "0"]
        for advertised, internal in self.routes[slot]:
            args += ["--route", f"{advertised}:{internal}"]
        with self._log(slot) as err:
            proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE, stderr=err,
                                                    cwd=REPO)
        self.procs[slot] = proc
        assert proc.stdout is not None
        line = b""
        with trio.move_on_after(READY_WITHIN):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                if not chunk:
                    break
                line += chunk
        text = line.decode(errors="replace").strip()
        if not text.startswith("netcut ready") or "control=" not in text:
            raise RuntimeError(f"netcut proxy of slot {slot} did not start: {text!r} (see "
                               f"{self.log_dir / f'netcut-slot{slot}.log'})")
        self.control[slot] = int(text.rsplit("control=", 1)[1].split()[0])

    def _log(self, slot: int) -> IO[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.log_dir / f"netcut-slot{slot}.log", "ab")

    async def _command(self, slot: int, command: str) -> str:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(HOST, self.control[slot])
            async with stream:
                await stream.send_all(command.encode() + b"\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = await stream.receive_some(1024)
                    if not chunk:
                        break
                    answer += chunk
        text = answer.decode(errors="replace").strip()
        if not text.startswith("ok"):
            raise RuntimeError(f"netcut slot {slot}: {command!r} answered {text!r}")
        return text

    async def cut(self, slot: int) -> None:
        """Blackhole every Kafka connection of ``slot`` (all brokers' routes)."""
        self.cut_slots.add(slot)
        await self._command(slot, "cut")

    async def heal(self, slot: int) -> None:
        await self._command(slot, "heal")
        self.cut_slots.discard(slot)

    async def status(self, slot: int) -> str:
        return await self._command(slot, "status")

    async def stop(self) -> None:
        """Stop every proxy process (SIGTERM, SIGKILL after 5 s). Never raises."""
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs.values():
            with trio.move_on_after(5):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()
        self.procs.clear()
