"""Writing raw records to a kstate topic and reading it back, through kstate's Kafka
bridge (kstate/bridge/tooling.py; the bridge stays the only aiokafka importer). The
integration tests, the chaos harness and the benchmarks use it to put records in a
topic before a node starts, and to check what is really in the topic (tombstones,
offsets) without going through a node."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from kstate.bridge import KafkaConfig
from kstate.bridge.tooling import RawRecord, open_tooling
from kstate.core.messages import Record
from kstate.core.partitioner import partition_for

__all__ = ["LoadResult", "RawRecord", "add_partitions", "config", "delete_topic", "email_of",
           "group_state", "keyed", "produce", "read_all", "user_bytes", "users"]


def config(bootstrap: str, topic: str, *, partitions: int = 10,
           group: str | None = None) -> KafkaConfig:
    """A bridge configuration for tools: its own group name, generous timeouts."""
    return KafkaConfig(bootstrap=bootstrap, topic=topic, partitions=partitions,
                       group=group or f"loader-{uuid.uuid4().hex[:10]}",
                       session_timeout_ms=6000, heartbeat_ms=1000,
                       request_timeout_ms=30_000)


def email_of(i: int, prefix: str = "user") -> str:
    return f"{prefix}{i}@example.com"


def user_bytes(email: str, name: str) -> bytes:
    """The bytes a node stores and answers for a user (compact JSON, name first)."""
    return orjson.dumps({"name": name, "email": email})


def keyed(key: bytes | None, value: bytes | None, partitions: int = 10,
          partition: int | None = None) -> RawRecord:
    """A record for the default partitioner's partition of ``key`` (or ``partition``)."""
    if partition is None:
        assert key is not None, "a record without a key needs an explicit partition"
        partition = partition_for(key, partitions)
    return (partition, key, value)


def users(n: int, prefix: str = "user", partitions: int = 10) -> Iterator[RawRecord]:
    """``n`` users: email ``<prefix><i>@example.com``, name ``Name <i>``."""
    for i in range(n):
        email = email_of(i, prefix)
        yield keyed(email.encode(), user_bytes(email, f"Name {i}"), partitions)


@dataclass
class LoadResult:
    records: int
    seconds: float
    offsets: list[int]

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


async def produce(bootstrap: str, topic: str, records: Iterable[RawRecord], *,
                  partitions: int = 10, chunk: int = 5_000,
                  create_configs: dict[str, str] | None = None) -> LoadResult:
    """Create the topic if missing (compacted like a node does, unless
    ``create_configs`` says otherwise), then produce every record (acks=all) in
    chunks of ``chunk``, one bridge crossing per chunk."""
    offsets: list[int] = []
    async with open_tooling(config(bootstrap, topic, partitions=partitions)) as kafka:
        await kafka.ensure_topic(create_configs)
        started = time.monotonic()
        batch: list[RawRecord] = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= chunk:
                offsets += await kafka.produce_many(batch)
                batch = []
        if batch:
            offsets += await kafka.produce_many(batch)
        seconds = time.monotonic() - started
    return LoadResult(len(offsets), seconds, offsets)


async def read_all(bootstrap: str, topic: str, *, partitions: int = 10,
                   within: float = 30.0) -> dict[int, list[Record]]:
    """Every record of the topic as Kafka has it (raw keys and values, ``None`` for a
    tombstone), from the beginning to each partition's end offset (taken first)."""
    async with open_tooling(config(bootstrap, topic, partitions=partitions)) as kafka:
        got = await kafka.read_all(within)
    return {p: got.get(p, []) for p in range(partitions)} | got


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group as the broker's coordinator has it."""
    async with open_tooling(config(bootstrap, "unused", group=group)) as kafka:
        info = await kafka.describe_group(group)
    return info.state, len(info.members)


async def add_partitions(bootstrap: str, topic: str, total: int) -> None:
    """Grow ``topic`` to ``total`` partitions (kstate does not support it while nodes
    run: README, "Operating")."""
    async with open_tooling(config(bootstrap, topic)) as kafka:
        await kafka.add_partitions(total)


async def delete_topic(bootstrap: str, topic: str) -> None:
    """Delete ``topic`` (not to be done under running nodes: README, "Operating")."""
    async with open_tooling(config(bootstrap, topic)) as kafka:
        await kafka.delete_topic()
