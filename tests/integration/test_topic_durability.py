"""The topic durability check at start, against a real broker: the single test broker
can only make replication-factor-1 topics, which is one finding; a topic created with
``unclean.leader.election.enable=true`` is another, one whose retention deletes records
(``cleanup.policy=compact,delete``, a finite ``retention.ms``) or whose compaction lag
is short another two. Each is a warning line and a metric; with
``KSTATE_REQUIRE_DURABLE`` the node refuses to start (exit 2, one line). The
min.insync.replicas rule needs three brokers: tests/unit/test_durability.py."""

from __future__ import annotations

import re

import trio

from tools import topic as load
from tools.procs import wait_ready


def _gauges(metrics: str) -> dict[str, float]:
    found = re.findall(r'^kstate_topic_durability_warnings\{reason="([a-z_0-9]+)"\} (\S+)$',
                       metrics, re.MULTILINE)
    return {reason: float(value) for reason, value in found}


async def test_warnings_and_metric_for_a_topic_that_can_lose_writes(
        kafka_bootstrap, names, make_node, client):
    await load.produce(kafka_bootstrap, names["topic"], [],
                       create_configs={"unclean.leader.election.enable": "true"})
    node = make_node()
    await wait_ready(client, node)
    text = node.log_text()
    lines = [line for line in text.splitlines() if "event=topic_durability_warning" in line]
    assert len(lines) == 2, text[-3000:]
    assert "reason=replication_factor_1" in lines[0]
    assert "reason=unclean_leader_election" in lines[1]
    assert all("WARNING" in line or "level=warning" in line.lower() for line in lines), lines
    metrics = (await client.get(f"{node.base}/metrics")).text
    assert _gauges(metrics) == {"replication_factor_1": 1.0,
                                "min_insync_replicas_below_2": 0.0,
                                "unclean_leader_election": 1.0,
                                "finite_retention": 0.0,
                                "min_compaction_lag_below_1h": 0.0}
    # Writes still work: a warning is not a refusal.
    r = await client.put(f"{node.base}/users/d@example.com", json={"name": "D"})
    assert r.status_code == 201, r.text


async def test_require_durable_refuses_to_start_with_the_reason(make_node):
    node = make_node(KSTATE_REQUIRE_DURABLE="true")
    with trio.fail_after(60):
        code = await node.wait_exit(60)
    assert code == 2
    text = node.log_text()
    refused = [line for line in text.splitlines() if "event=node_refused" in line]
    assert len(refused) == 1, text[-3000:]
    assert "reason=topic_not_durable" in refused[0]
    assert "replication factor 1" in refused[0]
    assert "require_durable" in refused[0]
    assert "Traceback" not in text
    assert "event=node_started" not in text


async def test_require_durable_refuses_a_topic_whose_retention_deletes_users(
        kafka_bootstrap, names, make_node):
    """compact,delete with a week of retention.ms: a user not written within a week is
    gone at the next replay; a compaction lag of 0: the cleaner may drop a key's state
    before its owner repairs the key. The refusal names both (and the replication
    factor 1 every topic of this broker has)."""
    await load.produce(kafka_bootstrap, names["topic"], [], create_configs={
        "cleanup.policy": "compact,delete", "retention.ms": "604800000",
        "min.compaction.lag.ms": "0"})
    node = make_node(KSTATE_REQUIRE_DURABLE="true")
    with trio.fail_after(60):
        code = await node.wait_exit(60)
    assert code == 2
    text = node.log_text()
    warned = re.findall(r"event=topic_durability_warning \S+ reason=(\w+)", text)
    assert warned == ["replication_factor_1", "finite_retention",
                      "min_compaction_lag_below_1h"], text[-3000:]
    refused = [line for line in text.splitlines() if "event=node_refused" in line]
    assert len(refused) == 1, text[-3000:]
    assert "reason=topic_not_durable" in refused[0]
    assert "cleanup.policy=compact,delete with retention.ms=604800000" in refused[0]
    assert "min.compaction.lag.ms=0" in refused[0]
    assert "event=topic_not_compacted" not in text  # it is compacted: retention is the risk
    assert "Traceback" not in text
    assert "event=node_started" not in text
