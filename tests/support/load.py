"""Fast loading and raw reading of a kstate topic, through the project's Kafka bridge
(actors/kafka.py stays the only aiokafka import). Used by integration tests and
benchmarks to put records in a topic before a node starts, and to check what is
really in the topic (tombstones, offsets) without going through a node."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
import trio

from actors.kafka import open_bridge, partition_for
from actors.messages import Assigned, BridgeEvent, Record, Revoked
from actors.settings import Settings

RawRecord = tuple[int, bytes | None, bytes | None]  # (partition, key, value)


def bridge_settings(bootstrap: str, topic: str, *, partitions: int = 10,
                    group: str | None = None) -> Settings:
    return dataclasses.replace(
        Settings(), bootstrap=bootstrap, topic=topic, partitions=partitions,
        group=group or f"loader-{uuid.uuid4().hex[:10]}", session_timeout_ms=6000,
        write_timeout=30.0)


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
    async with open_bridge(bridge_settings(bootstrap, topic, partitions=partitions)) as bridge:
        await bridge.ensure_topic(create_configs)
        await bridge.start_producer()
        started = time.monotonic()
        batch: list[RawRecord] = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= chunk:
                offsets += await bridge.produce_many(batch)
                batch = []
        if batch:
            offsets += await bridge.produce_many(batch)
        seconds = time.monotonic() - started
    return LoadResult(len(offsets), seconds, offsets)


async def _answer(events: trio.MemoryReceiveChannel[BridgeEvent]) -> None:
    async for ev in events:
        if isinstance(ev, Revoked):
            ev.reply.send(None)
        elif isinstance(ev, Assigned):
            ev.reply.send(dict.fromkeys(ev.partitions))  # all from the beginning


async def read_all(bootstrap: str, topic: str, *, partitions: int = 10,
                   within: float = 30.0) -> dict[int, list[Record]]:
    """Every record of the topic as Kafka has it (raw keys and values, ``None`` for a
    tombstone), read from the beginning by a consumer in a group of its own, until
    each partition's end offset (taken first) is reached."""
    s = bridge_settings(bootstrap, topic, partitions=partitions)
    out: dict[int, list[Record]] = {p: [] for p in range(partitions)}
    async with open_bridge(s) as bridge:
        send, recv = trio.open_memory_channel[BridgeEvent](4)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, recv)
            await bridge.start_consumer("127.0.0.1:1", frozenset, send)
            ends = await bridge.end_offsets(list(range(partitions)))
            positions: dict[int, int] = {}
            with trio.fail_after(within):
                while any(positions.get(p, 0) < ends[p] for p in range(partitions)):
                    batch = await bridge.fetch(200)
                    for p, recs in batch.records.items():
                        out[p].extend(recs)
                    positions.update(batch.positions)
            nursery.cancel_scope.cancel()
    return out


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group as the broker's coordinator has it."""
    async with open_bridge(bridge_settings(bootstrap, "unused", group=group)) as bridge:
        info = await bridge.describe_group(group)
    return info.state, len(info.members)
