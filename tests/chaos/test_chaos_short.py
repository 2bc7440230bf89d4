"""The short chaos run of ``just test``: 3 nodes on the session broker, one kill -9,
one restart, one SIGTERM and one added node under a read/write workload; every answer
judged (tests/chaos/checker.py). Zero violations or the test fails with the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chaos.harness import ChaosConfig, run_chaos
from tools.chaos.report import format_summary


@pytest.mark.chaos
@pytest.mark.timeout(300)
async def test_chaos_short(kafka_bootstrap: str, artifacts: Path) -> None:
    cfg = ChaosConfig(duration=80, nodes=3, seed=5, clients=6, keys=120, rate=40,
                      bootstrap=kafka_bootstrap, gap=(14, 16),
                      events=["kill9", "restart", "term", "add"], standby=True,
                      out=artifacts / "chaos.json", log_dir=artifacts / "nodes")
    result = await run_chaos(cfg)
    summary = format_summary(result)
    print(summary)
    assert result["passed"], summary
    kinds = result["event_kinds"]
    assert {k: v["n"] for k, v in kinds.items()} == {
        "kill9": 1, "restart": 1, "term": 1, "add": 1}, summary
    assert result["final"]["reads"] > 0, summary
