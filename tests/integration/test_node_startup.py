"""A node waiting for Kafka at start still obeys SIGTERM (no 60 s wait, no SIGKILL)."""

from __future__ import annotations

import time

import pytest
import trio

from tools.procs import Node, free_port

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)


async def test_sigterm_while_kafka_is_unreachable_exits_zero_at_once(artifacts):
    node = Node(bootstrap=f"127.0.0.1:{free_port()}", topic="t-unreachable",
                group="g-unreachable", log_dir=artifacts).start()
    try:
        with trio.fail_after(30):
            while "event=kafka_wait" not in node.log_text():
                assert node.alive(), node.log_text()
                await trio.sleep(0.1)
        t0 = time.monotonic()
        node.term()
        code = await node.wait_exit(timeout=10)
        seconds = time.monotonic() - t0
        print(f"exit {code} {seconds:.2f}s after SIGTERM while waiting for Kafka")
        assert code == 0
        assert seconds < 5
    finally:
        node.stop_now()
