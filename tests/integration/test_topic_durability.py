"""The topic durability check at start, against a real broker: the single test broker
can only make replication-factor-1 topics, which is one finding; a topic created with
``unclean.leader.election.enable=true`` is another. Each is a warning line and a
metric; with ``KSTATE_REQUIRE_DURABLE`` the node refuses to start (exit 2, one line).
The min.insync.replicas rule needs three brokers: tests/unit/test_durability.py."""

from __future__ import annotations

import re

import trio

from tools import topic as load
from tools.procs import wait_ready

REASONS = ("replication_factor_1", "min_insync_replicas_below_2", "unclean_leader_election")


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
                                "unclean_leader_election": 1.0}
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
