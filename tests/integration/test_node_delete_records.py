"""README, "Operating": a batch kstate cannot decode because it is broken is deleted
with the records below it (``kafka-delete-records.sh``), then the nodes restart and
replay the partition from its new start. Kafka refuses DeleteRecords on a topic whose
cleanup.policy is ``compact`` alone (what kstate creates: POLICY_VIOLATION), so the
procedure adds ``delete`` to the policy for the deletion (retention unlimited meanwhile,
so that nothing else is deleted) and puts the topic's settings back after. Here the
same steps run through the admin API (AlterConfigs sets a topic's whole override set)."""

from __future__ import annotations

import asyncio

import pytest
import trio
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import PolicyViolationError

from kstate.core.durability import MIN_COMPACTION_LAG_MS
from kstate.core.partitioner import partition_for
from tools.procs import wait_ready

pytestmark = pytest.mark.timeout(120)

PARTITIONS = 2
# the overrides a node gives the topic it creates (replication 1: min ISR 1)
CREATED = {"cleanup.policy": "compact", "min.insync.replicas": "1",
           "min.compaction.lag.ms": str(MIN_COMPACTION_LAG_MS)}


def _emails(prefix: str, count: int) -> list[str]:
    out, i = [], 0
    while len(out) < count:
        email = f"{prefix}{i}@example.com"
        if partition_for(email.encode(), PARTITIONS) == 0:
            out.append(email)
        i += 1
    return out


async def _delete_below(bootstrap: str, topic: str, before: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    tp = TopicPartition(topic, 0)
    try:
        with pytest.raises(PolicyViolationError):  # what the README said alone
            await admin.delete_records({tp: RecordsToDelete(before_offset=before)},
                                       timeout_ms=10_000)
        deleting = {**CREATED, "cleanup.policy": "compact,delete", "retention.ms": "-1",
                    "retention.bytes": "-1"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  configs=deleting)])
        for _ in range(50):  # the new policy reaches the partition's leader
            try:
                await admin.delete_records({tp: RecordsToDelete(before_offset=before)},
                                           timeout_ms=10_000)
                break
            except PolicyViolationError:
                await asyncio.sleep(0.2)
        else:
            pytest.fail("DeleteRecords still refused with cleanup.policy=compact,delete")
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  configs=CREATED)])
    finally:
        await admin.close()


async def test_records_deleted_by_the_readme_procedure_are_gone_after_a_restart(
        make_node, client, kafka_bootstrap, names):
    node = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    await wait_ready(client, node)
    old, new = _emails("below", 5), _emails("above", 5)
    last = -1
    for email in old:
        r = await client.put(f"{node.base}/users/{email}", json={"name": "old"})
        assert r.status_code == 201, r.text
        last = max(last, int(r.headers["etag"].strip('"').split("-")[1]))
    for email in new:
        r = await client.put(f"{node.base}/users/{email}", json={"name": "new"})
        assert r.status_code == 201, r.text
    node.term()
    assert await node.wait_exit(30) == 0

    await trio.to_thread.run_sync(
        lambda: asyncio.run(_delete_below(kafka_bootstrap, names["topic"], last + 1)))

    node.start()  # replays partition 0 from its new start
    await wait_ready(client, node)
    for email in old:
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 404, (email, r.text)
    for email in new:
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 200, (email, r.text)
