"""Shared fixtures: a real Kafka broker for the session (KSTATE_TEST_BOOTSTRAP, or one
started here from deploy/kafka), unique topic and group names per test, node processes
that are always stopped. A broker that cannot start fails the tests; nothing skips.

Property tests run untimed: Hypothesis's default deadline (200 ms an example) is a
timing assertion, which a loaded CI machine fails without any bug. Loaded here, before
any test module is imported, so every ``@given`` and every ``@settings(...)`` (whose
unset fields come from the loaded profile) inherits it."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import settings

from tools.procs import REPO, Node

settings.register_profile("kstate", deadline=None)
settings.load_profile("kstate")

UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every unit test is in the fast tier; integration modules opt in with
    ``pytestmark = pytest.mark.fast``."""
    for item in items:
        if UNIT in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("KSTATE_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    name = f"pytest-{os.getpid()}"
    script = REPO / "deploy" / "kafka" / "kafka.sh"
    res = subprocess.run([str(script), "up", name], env={**os.environ, "KAFKA_PORT": "0"},
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        pytest.fail(f"Kafka did not start:\n{res.stderr}", pytrace=False)
    try:
        yield res.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "down", name], timeout=60, check=False)


@pytest.fixture
def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"topic": f"t-{tag}", "group": f"g-{tag}"}


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    path = REPO / "test-artifacts" / request.node.name.replace("/", "_")[:80]
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def make_node(kafka_bootstrap: str, names: dict[str, str], artifacts: Path
              ) -> Iterator[object]:
    """make_node(**env) -> a started Node in this test's topic and group."""
    nodes: list[Node] = []

    def make(start: bool = True, **extra: str) -> Node:
        node = Node(bootstrap=kafka_bootstrap, topic=names["topic"], group=names["group"],
                    log_dir=artifacts, extra=extra)
        nodes.append(node)
        return node.start() if start else node

    yield make
    for node in nodes:
        node.stop_now()


@pytest.fixture
async def client() -> object:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as c:
        yield c
