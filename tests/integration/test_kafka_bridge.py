"""Issue 2: aiokafka against the real broker, through the project's bridge under trio."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from kstate.bridge import KafkaConfig, TopicRefused, open_bridge
from kstate.bridge.tooling import open_tooling
from kstate.core.messages import Assigned, BridgeEvent, Revoked
from kstate.core.partitioner import partition_for

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)


def settings(bootstrap: str, names: dict[str, str]) -> KafkaConfig:
    return KafkaConfig(bootstrap=bootstrap, topic=names["topic"], group=names["group"],
                       session_timeout_ms=6000, heartbeat_ms=1000)


async def describe_group(config: KafkaConfig):
    async with open_tooling(config) as tools:
        return await tools.describe_group(config.group)


async def answer_events(recv: trio.MemoryReceiveChannel[BridgeEvent], seen: list) -> None:
    async for ev in recv:
        seen.append(ev)
        if isinstance(ev, Revoked):
            ev.reply.send(None)
        else:
            ev.reply.send({p: None for p in ev.partitions})


async def test_topic_is_created_compacted_with_ten_partitions(kafka_bootstrap, names):
    async with open_bridge(settings(kafka_bootstrap, names)) as bridge:
        info = await bridge.ensure_topic()
        assert info.created
        assert info.partitions == 10
        assert info.configs["cleanup.policy"] == "compact"
        again = await bridge.ensure_topic()  # existing topic: used as it is
        assert not again.created
        assert again.partitions == 10


async def test_a_topic_kafka_refuses_to_create_is_an_error_not_a_default_topic(
        kafka_bootstrap, names):
    """More replicas than brokers: Kafka refuses the CreateTopics. Taken for a success,
    the describe that follows made the broker auto-create the topic with its defaults
    (one partition, not compacted), and the node ran on it, silently."""
    config = dataclasses.replace(settings(kafka_bootstrap, names), replication=3)
    async with open_bridge(config) as bridge:
        with pytest.raises(TopicRefused) as info:
            await bridge.ensure_topic()
    assert info.value.error == "InvalidReplicationFactorError"
    assert not info.value.final  # brokers may still be starting: the node waits a while
    # nothing was made of it: the node that can creates the topic as it asks
    async with open_bridge(settings(kafka_bootstrap, names)) as bridge:
        info = await bridge.ensure_topic()
    assert info.created
    assert info.partitions == 10
    assert info.configs["cleanup.policy"] == "compact"


async def test_produce_tombstone_consume_end_offsets_and_group(kafka_bootstrap, names):
    s = settings(kafka_bootstrap, names)
    async with open_bridge(s) as bridge:
        await bridge.ensure_topic()
        await bridge.start_producer()
        keys = [f"user{i}@example.com".encode() for i in range(50)]
        written: dict[int, list[tuple[int, bytes, bytes | None]]] = {}
        for k in keys:
            p = partition_for(k, 10)
            off = await bridge.produce(p, k, b'{"v":1}')
            written.setdefault(p, []).append((off, k, b'{"v":1}'))
        p0 = partition_for(keys[0], 10)
        tomb = await bridge.produce(p0, keys[0], None)
        written[p0].append((tomb, keys[0], None))

        send, recv = trio.open_memory_channel[BridgeEvent](4)
        seen: list = []
        got: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_events, recv, seen)
            await bridge.start_consumer("127.0.0.1:1", frozenset, send)
            with trio.fail_after(30):
                while sum(len(v) for v in got.values()) < 51:
                    batch = await bridge.fetch(200)
                    for p, recs in batch.records.items():
                        got.setdefault(p, []).extend((r.offset, r.key, r.value) for r in recs)
            ends = await bridge.end_offsets(list(range(10)))
            for p in range(10):
                assert ends[p] == len(written.get(p, []))
                assert await bridge.fence_offset(p) == ends[p]  # the fences' own client
            group = await describe_group(s)
            nursery.cancel_scope.cancel()
        assert got == {p: [(o, k, v) for o, k, v in recs] for p, recs in written.items()}
        assert got[p0][-1][2] is None  # a real tombstone: null value, not b""
        assert any(isinstance(e, Assigned) for e in seen)
        assert group.state == "Stable"
        assert group.protocol == "kstate-sticky"
        assert [m.url for m in group.members] == ["127.0.0.1:1"]


async def test_assignor_user_data_round_trips_between_two_members(kafka_bootstrap, names):
    s = settings(kafka_bootstrap, names)
    async with open_bridge(s) as a, open_bridge(s) as b:
        await a.ensure_topic()
        sa, ra = trio.open_memory_channel[BridgeEvent](4)
        sb, rb = trio.open_memory_channel[BridgeEvent](4)
        seen_a: list = []
        seen_b: list = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_events, ra, seen_a)
            nursery.start_soon(answer_events, rb, seen_b)
            await a.start_consumer("127.0.0.1:1001", lambda: frozenset({1, 2}), sa)
            await b.start_consumer("127.0.0.1:1002", frozenset, sb)

            async def pump(bridge) -> None:
                while True:
                    await bridge.fetch(100)

            nursery.start_soon(pump, a)
            nursery.start_soon(pump, b)
            with trio.fail_after(40):
                while True:
                    last_a = [e for e in seen_a if isinstance(e, Assigned)]
                    last_b = [e for e in seen_b if isinstance(e, Assigned)]
                    if (last_a and last_b and len(last_a[-1].table.members) == 2
                            and last_a[-1].table == last_b[-1].table):
                        break
                    await trio.sleep(0.1)
            group = await describe_group(s)
            nursery.cancel_scope.cancel()
        table = last_a[-1].table
        assert set(table.owners) == set(range(10))
        assert sorted(table.members.values()) == ["127.0.0.1:1001", "127.0.0.1:1002"]
        mine_a = sorted(p for p, u in table.owners.items() if u == "127.0.0.1:1001")
        assert sorted(last_a[-1].partitions) == mine_a
        assert {1, 2} <= set(mine_a)  # sticky: it claimed 1 and 2 in its JoinGroup data
        assert len(mine_a) == 5
        assert sorted(m.url for m in group.members) == ["127.0.0.1:1001", "127.0.0.1:1002"]
