"""One node on a fresh topic and group, started and ready, for a test module that
shares it (a module fixture yields it): it is stopped however the module ends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tools.procs import REPO, Node

READY_WITHIN = 60.0  # seconds; a fresh topic on a shared broker is ready in a few


@contextmanager
def ready_node(bootstrap: str, name: str, extra: dict[str, str] | None = None
               ) -> Iterator[Node]:
    """A node logging to test-artifacts/``name``, ready (``/readyz`` 200); ``extra``:
    more environment (``KSTATE_*`` settings)."""
    tag = uuid.uuid4().hex[:10]
    n = Node(bootstrap=bootstrap, topic=f"t-{tag}", group=f"g-{tag}",
             log_dir=REPO / "test-artifacts" / name, extra=dict(extra or {}))
    n.start()
    try:
        deadline = time.monotonic() + READY_WITHIN
        with httpx.Client(trust_env=False, timeout=2) as c:
            while True:
                assert n.alive(), n.log_text()[-3000:]
                try:
                    if c.get(f"{n.base}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, n.log_text()[-3000:]
                time.sleep(0.1)
        yield n
    finally:
        n.stop_now()


def assert_node_survived(node: Node) -> None:
    """After a test that sent a node hostile bytes: it is alive, answers /healthz, and
    logged no traceback and no failed connection (a client must not be able to put
    either in its log at will)."""
    assert node.alive(), node.log_text()[-3000:]
    with httpx.Client(trust_env=False, timeout=5) as c:
        assert c.get(f"{node.base}/healthz").status_code == 200
    log = node.log_text()
    assert "Traceback" not in log, log[-5000:]
    assert "http1_connection_failed" not in log, log[-5000:]
