"""The short chaos run of ``just test``: 3 nodes with standby copies on a broker of its
own (with proxy slots, so a node can be cut off from Kafka), under a read/write/delete
workload: one network cut (a node's Kafka connections blackholed past its session
timeout while clients keep using it, then healed), one kill -9, one restart, one
SIGTERM, one added node and one SIGSTOP pause. Every answer is judged by the harness's
checker and the whole history by Porcupine; zero violations from either, or the test
fails with the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chaos.harness import ChaosConfig, run_chaos
from tools.chaos.report import format_summary

# The cut first (the fault this run exists to catch), the pause last (its recovery is the
# slowest); about 2.5 minutes on 2 cores in all.
EVENTS = ["cut", "kill9", "restart", "term", "add", "pause"]


@pytest.mark.chaos
@pytest.mark.timeout(300)
async def test_chaos_short(artifacts: Path) -> None:
    cfg = ChaosConfig(duration=60, nodes=3, seed=5, clients=6, keys=120, rate=40,
                      gap=(9, 11), events=list(EVENTS), standby=True,  # type: ignore[arg-type]
                      out=artifacts / "chaos.json", log_dir=artifacts / "nodes")
    result = await run_chaos(cfg)
    summary = format_summary(result)
    print(summary)
    assert result["passed"], summary
    kinds = result["event_kinds"]
    assert {k: v["n"] for k, v in kinds.items()} == dict.fromkeys(EVENTS, 1), summary
    assert result["final"]["reads"] > 0, summary
    checkers = result["checkers"]
    assert checkers["porcupine"]["verdict"] == "linearizable", summary
    assert checkers["agree"] is True, summary
    assert result["history"]["ops"] > 1000, summary
