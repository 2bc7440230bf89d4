"""Loading N users into a compacted topic as fast as one Python process can.

Through the project's Kafka bridge (kstate/bridge/ stays the only aiokafka import):
records are keyed by email, valued ``{"name": .., "email": ..}`` (compact JSON),
placed by Kafka's default partitioner (murmur2 of the key, as every client does), and
sent as pre-built per-partition batches (``KafkaBridge.produce_bulk``): no per-record
future, which is what makes a Python producer slow.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from kstate.bridge import KafkaConfig
from kstate.bridge.tooling import open_tooling
from kstate.core.partitioner import partition_for

BATCH_BYTES = 512 * 1024


def email_of(i: int) -> str:
    return f"user{i:07d}@bench.kstate.test"


def value_of(i: int, email: str) -> bytes:
    return orjson.dumps({"name": f"Bench User {i}", "email": email})


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record."""
    return partition_for(key, partitions)


def _config(bootstrap: str, topic: str, partitions: int) -> KafkaConfig:
    return KafkaConfig(bootstrap=bootstrap, topic=topic, partitions=partitions)


@dataclass
class Loaded:
    topic: str
    partitions: int
    records: int
    raw_bytes: int  # sum of key + value bytes
    seconds: float
    per_partition: dict[int, int]  # records per partition
    last_key: dict[int, str]  # the last email written to each partition (highest offset)
    sample: list[tuple[str, int]] = field(default_factory=list)  # (email, partition)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, object]:
        return {"topic": self.topic, "partitions": self.partitions, "records": self.records,
                "raw_bytes": self.raw_bytes, "seconds": round(self.seconds, 3),
                "records_per_s": round(self.records_per_s),
                "per_partition": self.per_partition, "sample_keys": len(self.sample)}


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` (compacted, like a node does); it must not exist yet."""
    async with open_tooling(_config(bootstrap, topic, partitions)) as bridge:
        info = await bridge.ensure_topic({"min.insync.replicas": "1"})
    if not info.created:
        raise RuntimeError(f"topic {topic} already exists: the benchmark wants a fresh one")


async def load(bootstrap: str, topic: str, partitions: int, users: int, sample: int,
               seed: int = 8, batch_bytes: int = BATCH_BYTES) -> Loaded:
    """Create ``topic`` (compacted) and write ``users`` users into it, in record batches
    of up to ``batch_bytes``; return what was written, with ``sample`` random (email,
    partition) pairs for the HTTP runs."""
    await create_topic(bootstrap, topic, partitions)
    rng = random.Random(seed)
    chosen = set(rng.sample(range(users), min(sample, users)))
    loaded = Loaded(topic, partitions, users, 0, 0.0, dict.fromkeys(range(partitions), 0), {})

    def records() -> Iterator[tuple[int, bytes, bytes]]:
        # runs on the bridge's thread; the trio side reads ``loaded`` only afterwards
        for i in range(users):
            email = email_of(i)
            key = email.encode()
            value = value_of(i, email)
            p = partition_of(key, partitions)
            loaded.raw_bytes += len(key) + len(value)
            loaded.per_partition[p] += 1
            loaded.last_key[p] = email
            if i in chosen:
                loaded.sample.append((email, p))
            yield p, key, value

    async with open_tooling(_config(bootstrap, topic, partitions)) as bridge:
        t0 = time.perf_counter()
        await bridge.produce_bulk(records(), batch_bytes)
        loaded.seconds = time.perf_counter() - t0
    return loaded
