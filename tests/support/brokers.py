"""A Kafka broker of a test module's own (``kafka.sh up NAME``), which its tests may
stop, start again with the same data and ports, or freeze (SIGSTOP) — without
disturbing the session broker the other tests use."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tools.procs import REPO

KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


@dataclass
class Broker:
    name: str
    bootstrap: str

    @property
    def run_dir(self) -> Path:
        cache = Path(os.environ.get("KAFKA_CACHE", REPO / ".cache" / "kafka"))
        return cache / "run" / self.name

    async def _sh(self, *args: str) -> str:
        res = await trio.run_process([str(KAFKA_SH), *args], capture_stdout=True,
                                     capture_stderr=True, check=False)
        assert res.returncode == 0, res.stderr.decode()[-2000:]
        return res.stdout.decode().strip()

    async def stop(self) -> None:
        await self._sh("stop", self.name)

    async def start(self) -> None:
        out = await self._sh("start", self.name)
        assert out.splitlines()[-1] == self.bootstrap  # same address, same data

    def freeze(self, on: bool) -> None:
        """SIGSTOP / SIGCONT the broker process: a broker that stops answering."""
        pid = int((self.run_dir / "pid").read_text())
        os.kill(pid, signal.SIGSTOP if on else signal.SIGCONT)


@contextlib.contextmanager
def own_broker(prefix: str) -> Iterator[Broker]:
    """Start a broker for one test module; always thawed, stopped and removed after.
    A broker that cannot start fails the tests (never a skip)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    res = subprocess.run([str(KAFKA_SH), "up", name], env={**os.environ, "KAFKA_PORT": "0"},
                         capture_output=True, text=True, timeout=600, check=False)
    b = Broker(name, res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "")
    try:
        if res.returncode != 0:
            pytest.fail(f"Kafka did not start:\n{res.stderr}", pytrace=False)
        yield b
    finally:
        if (b.run_dir / "pid").exists():  # never leave it frozen
            with contextlib.suppress(ProcessLookupError, ValueError):
                b.freeze(False)
        subprocess.run([str(KAFKA_SH), "down", name], timeout=120, check=False)
        shutil.rmtree(b.run_dir, ignore_errors=True)
