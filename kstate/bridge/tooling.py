"""Kafka work that is not the node's: loading a topic fast, writing raw records,
reading a whole topic back, describing a group. The benchmarks, the chaos harness and
the tests use it (through kstate's bridge, the only aiokafka importer); a node never
does. Each :class:`Tooling` has its own asyncio thread and clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import trio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.coordinator.protocol import ConsumerProtocol

from kstate.bridge import admin
from kstate.bridge.config import KafkaConfig
from kstate.bridge.portal import Portal, open_portal
from kstate.bridge.reader import BEGINNING, open_reader
from kstate.bridge.security import client_args
from kstate.core.assignment import decode_claim
from kstate.core.messages import Record

RawRecord = tuple[int, bytes | None, bytes | None]  # (partition, key, value)


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One member of a consumer group as the coordinator describes it."""
    member_id: str
    client_host: str
    url: str
    partitions: list[int]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group as the coordinator describes it."""
    state: str
    protocol: str
    members: list[GroupMember]


async def _produce_many(c: KafkaConfig, records: list[RawRecord]) -> list[int]:
    producer = AIOKafkaProducer(**client_args(c), acks="all", enable_idempotence=True,
                                linger_ms=5, request_timeout_ms=30_000)
    await producer.start()
    try:
        futures = [await producer.send(c.topic, value, key=key, partition=partition)
                   for partition, key, value in records]
        return [int(md.offset) for md in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def _produce_bulk(c: KafkaConfig, records: Iterable[tuple[int, bytes, bytes | None]],
                        batch_bytes: int) -> int:
    """Produce ``records`` as pre-built per-partition batches and wait until all are
    acknowledged (acks=all). No per-record future: what makes a Python producer slow."""
    producer = AIOKafkaProducer(**client_args(c), acks="all", linger_ms=5,
                                max_batch_size=batch_bytes, max_request_size=4 * batch_bytes,
                                request_timeout_ms=30_000)
    await producer.start()
    count = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        batches: dict[int, Any] = {}
        for partition, key, value in records:
            count += 1
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                pending.append(await producer.send_batch(batch, c.topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError("a single record does not fit in a batch")
        for partition, batch in batches.items():
            if batch.record_count():
                batch.close()
                pending.append(await producer.send_batch(batch, c.topic, partition=partition))
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def _describe_group(c: KafkaConfig, group: str) -> GroupInfo:
    admin_client = AIOKafkaAdminClient(**client_args(c))
    await admin_client.start()
    try:
        resp = await admin_client.describe_consumer_groups([group])
        g = resp[0].groups[0]
        members = []
        for m in g[5]:
            # v0-v3: member_id, client_id, client_host, metadata, assignment
            # (v4+ adds group_instance_id after member_id): count from the end.
            parts: list[int] = []
            if m[-1]:
                assignment = ConsumerProtocol.ASSIGNMENT.decode(m[-1])
                parts = sorted(tp.partition for tp in assignment.partitions())
            url = decode_claim(ConsumerProtocol.METADATA.decode(m[-2]).user_data).url \
                if m[-2] else ""
            members.append(GroupMember(member_id=m[0], client_host=m[-3], url=url,
                                       partitions=parts))
        return GroupInfo(state=g[2], protocol=g[4], members=members)
    finally:
        await admin_client.close()


async def _add_partitions(c: KafkaConfig, total: int) -> None:
    admin_client = AIOKafkaAdminClient(**client_args(c))
    await admin_client.start()
    try:
        await admin_client.create_partitions({c.topic: NewPartitions(total_count=total)})
    finally:
        await admin_client.close()


async def _delete_topic(c: KafkaConfig) -> None:
    admin_client = AIOKafkaAdminClient(**client_args(c))
    await admin_client.start()
    try:
        answer = await admin_client.delete_topics([c.topic])
        errors = [code for _, code, *_ in answer.topic_error_codes if code]
        assert not errors, answer
    finally:
        await admin_client.close()


class Tooling:
    """Trio-facing; see the module docstring. Open with :func:`open_tooling`."""

    def __init__(self, portal: Portal, config: KafkaConfig) -> None:
        self._portal = portal
        self.config = config

    async def ensure_topic(self, create_configs: dict[str, str] | None = None
                           ) -> admin.TopicInfo:
        return await self._portal.call(admin.ensure_topic, self.config, create_configs)

    async def produce_many(self, records: list[RawRecord]) -> list[int]:
        """Produce (partition, key, value) records in one crossing, acks=all; their
        offsets in order."""
        return await self._portal.call(_produce_many, self.config, records)

    async def produce_bulk(self, records: Iterable[tuple[int, bytes, bytes | None]],
                           batch_bytes: int = 512 * 1024) -> int:
        """Load many records fast; returns how many. ``records`` is consumed on the
        bridge's thread: a plain generator, no trio."""
        return await self._portal.call(_produce_bulk, self.config, records, batch_bytes)

    async def describe_group(self, group: str) -> GroupInfo:
        return await self._portal.call(_describe_group, self.config, group)

    async def add_partitions(self, total: int) -> None:
        """Grow the topic to ``total`` partitions (what kstate does not support while
        nodes run: tests of how a node notices)."""
        await self._portal.call(_add_partitions, self.config, total)

    async def delete_topic(self) -> None:
        """Delete the topic (what an operator must not do under running nodes: tests
        of how a node notices)."""
        await self._portal.call(_delete_topic, self.config)

    async def read_all(self, within: float = 30.0) -> dict[int, list[Record]]:
        """Every record of the topic as Kafka has it (raw keys and values, None for a
        tombstone), from the beginning to each partition's end offset taken first."""
        async with open_reader(self._portal, self.config, BEGINNING) as (reader, start):
            out: dict[int, list[Record]] = {p: [] for p in start}
            ends = await reader.end_offsets()
            positions = dict(start)
            with trio.fail_after(within):
                while any(positions[p] < ends[p] for p in ends):
                    batch = await reader.fetch_batch(200)
                    for p, recs in batch.records.items():
                        out[p].extend(recs)
                    positions.update(batch.positions)
        return out


@contextlib.asynccontextmanager
async def open_tooling(config: KafkaConfig) -> AsyncIterator[Tooling]:
    async with open_portal() as portal:
        yield Tooling(portal, config)


__all__ = ["GroupInfo", "GroupMember", "RawRecord", "Tooling", "open_tooling"]
