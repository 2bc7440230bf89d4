"""Loading N users into a compacted topic as fast as one Python process can.

Bench is not the product, so it talks to Kafka with aiokafka directly (the product's
only aiokafka import stays actors/kafka.py). Records are keyed by email, valued
``{"name": .., "email": ..}`` (compact JSON), placed by Kafka's default partitioner
(murmur2 of the key, as aiokafka's ``DefaultPartitioner`` and every other client does),
and sent as pre-built per-partition batches (``create_batch``/``send_batch``): no
per-record future, which is what makes a Python producer slow.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

BATCH_BYTES = 512 * 1024


def email_of(i: int) -> str:
    return f"user{i:07d}@bench.kstate.test"


def value_of(i: int, email: str) -> bytes:
    return orjson.dumps({"name": f"Bench User {i}", "email": email})


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={
            "cleanup.policy": "compact", "min.insync.replicas": "1"})])
    except TopicAlreadyExistsError:
        raise RuntimeError(f"topic {topic} already exists: the benchmark wants a fresh one") \
            from None
    else:
        # produce only once every partition has a leader (no NotLeader retries)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = await admin.describe_topics([topic])
            parts = described[0].get("partitions") or []
            if len(parts) == partitions and all(p.get("leader", -1) >= 0 for p in parts):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def load(bootstrap: str, topic: str, partitions: int, users: int, sample: int,
               seed: int = 8) -> Loaded:
    """Create ``topic`` (compacted) and write ``users`` users into it; return what was
    written, with ``sample`` random (email, partition) pairs for the HTTP runs."""
    await create_topic(bootstrap, topic, partitions)
    rng = random.Random(seed)
    chosen = set(rng.sample(range(users), min(sample, users)))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5,
                                max_batch_size=BATCH_BYTES, max_request_size=4 * BATCH_BYTES,
                                request_timeout_ms=30_000)
    await producer.start()
    per_partition = dict.fromkeys(range(partitions), 0)
    last_key: dict[int, str] = {}
    picked: list[tuple[str, int]] = []
    raw = 0
    pending: list[asyncio.Future[object]] = []
    t0 = time.perf_counter()
    try:
        batches = {p: producer.create_batch() for p in range(partitions)}
        for i in range(users):
            email = email_of(i)
            key = email.encode()
            value = value_of(i, email)
            p = partition_of(key, partitions)
            raw += len(key) + len(value)
            per_partition[p] += 1
            last_key[p] = email
            if i in chosen:
                picked.append((email, p))
            batch = batches[p]
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                pending.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise RuntimeError("a single record does not fit in a batch")
        for p, batch in batches.items():
            if batch.record_count():
                batch.close()
                pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    seconds = time.perf_counter() - t0
    return Loaded(topic, partitions, users, raw, seconds, per_partition, last_key, picked)
