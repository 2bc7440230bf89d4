"""Brokers in the special modes of deploy/kafka/kafka.sh, for one test module each:
``up-secure`` (PLAINTEXT, SSL, SASL_SSL, SASL_PLAINTEXT listeners) and ``up`` with
``KAFKA_PROXY_SLOTS`` (extra listeners advertised at proxy ports, for tools/netcut.py).
Always stopped and removed after; a broker that cannot start fails the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.procs import REPO

KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
MAKE_CERTS = REPO / "deploy" / "tls" / "make-certs.sh"


def run_dir(name: str) -> Path:
    cache = Path(os.environ.get("KAFKA_CACHE", REPO / ".cache" / "kafka"))
    return cache / "run" / name


def make_certs(folder: Path) -> Path:
    """deploy/tls/make-certs.sh into ``folder`` (reused when complete)."""
    res = subprocess.run([str(MAKE_CERTS), str(folder)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return folder


@dataclass(frozen=True)
class SecureBroker:
    name: str
    listeners: dict[str, str]  # PLAINTEXT / SSL / SASL_SSL / SASL_PLAINTEXT -> host:port
    certs: Path
    user: str
    password: str


@dataclass(frozen=True)
class SlotBroker:
    name: str
    bootstrap: str  # the normal PLAINTEXT listener
    slots: dict[int, tuple[int, int]]  # slot -> (advertised proxy port, internal port)


@contextlib.contextmanager
def _broker(name: str, args: list[str], env: dict[str, str]) -> Iterator[str]:
    """Run ``kafka.sh ARGS``; yield its last stdout line; always ``down`` after."""
    try:
        res = subprocess.run([str(KAFKA_SH), *args], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=600, check=False)
        if res.returncode != 0:
            pytest.fail(f"kafka.sh {args[0]} failed:\n{res.stderr[-3000:]}", pytrace=False)
        yield res.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(KAFKA_SH), "down", name], timeout=120, check=False)
        shutil.rmtree(run_dir(name), ignore_errors=True)


@contextlib.contextmanager
def secure_broker(prefix: str, certs: Path, user: str, password: str, *, acls: bool = False
                  ) -> Iterator[SecureBroker]:
    """``kafka.sh up-secure`` with certificates in ``certs`` (made if missing); with
    ``acls``, one that enforces ACLs (KAFKA_ACLS=1: the PLAINTEXT listener is its super
    user, ``user`` may do what tests/support/acls.py grants)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {"KAFKA_TEST_USER": user, "KAFKA_TEST_PASSWORD": password,
           "KAFKA_ACLS": "1" if acls else "0"}
    with _broker(name, ["up-secure", name, str(certs)], env) as line:
        listeners = dict(item.split("=", 1) for item in line.split())
        assert set(listeners) == {"PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"}, line
        yield SecureBroker(name, listeners, certs, user, password)


@contextlib.contextmanager
def slot_broker(prefix: str, slots: int) -> Iterator[SlotBroker]:
    """``KAFKA_PROXY_SLOTS=slots kafka.sh up`` on free ports."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {"KAFKA_PORT": "0", "KAFKA_PROXY_SLOTS": str(slots)}
    with _broker(name, ["up", name], env) as bootstrap:
        table: dict[int, tuple[int, int]] = {}
        for line in (run_dir(name) / "slots").read_text().splitlines():
            slot, broker, advertised, internal = (int(x) for x in line.split())
            assert broker == 1
            table[slot] = (advertised, internal)
        assert sorted(table) == list(range(1, slots + 1))
        yield SlotBroker(name, bootstrap, table)
