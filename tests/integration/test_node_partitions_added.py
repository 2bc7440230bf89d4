"""Partitions added to a running topic (not supported: README, "Operating"). Kafka's
default partitioner then maps most keys to another partition: a node still routing by
the count it started with would disagree with other clients and with restarted nodes.
At the next assignment it notices (fresh metadata) and exits 2 with one line; a node
started after the change serves every partition."""

from __future__ import annotations

import pytest
import trio

from tools import topic as load
from tools.procs import wait_ready, wait_stable

pytestmark = pytest.mark.timeout(120)


async def test_a_node_whose_topic_grew_exits_2_naming_both_counts(
        make_node, client, kafka_bootstrap, names):
    old = make_node(KSTATE_PARTITIONS="2")
    await wait_ready(client, old)  # it creates the topic with 2 partitions
    await load.add_partitions(kafka_bootstrap, names["topic"], 3)
    new = make_node(KSTATE_PARTITIONS="2")  # the topic's real count (3) wins at start
    # its join is a rebalance: the old node's assignment finds the count changed
    code = await old.wait_exit(30)
    text = old.log_text()
    assert code == 2, text[-3000:]
    refused = [line for line in text.splitlines() if "event=node_refused" in line]
    assert len(refused) == 1, text[-3000:]
    assert "reason=partitions_changed" in refused[0]
    assert "now has 3 partitions; this node started with 2" in refused[0]
    assert "Traceback" not in text
    with trio.fail_after(30):
        table = await wait_stable(client, [new], 3)
    assert set(table.values()) == {new.url}
    assert "event=partitions_changed" not in new.log_text()
