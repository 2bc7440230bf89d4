"""The kstate Kafka bridge as the broker-mode tests (test_kafka_security, test_netcut)
use it, configured from node settings (what a node does), and the write-then-read
round trip they all make."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import trio

from kstate import bridge as kafka
from kstate.bridge import BrokerUnavailable as BrokerUnavailable
from kstate.bridge import KafkaAuthFailed as KafkaAuthFailed
from kstate.bridge import KafkaBridge as KafkaBridge
from kstate.settings import Settings as Settings


def bridge_settings(bootstrap: str, topic: str, **security: Any) -> Settings:
    """One-partition topic ``topic`` at ``bootstrap``; ``security`` are Settings fields
    (security_protocol, sasl_*, ssl_*)."""
    return dataclasses.replace(Settings(bootstrap=bootstrap, topic=topic, partitions=1,
                                        group=f"g-{topic}"), **security)


@contextlib.asynccontextmanager
async def open_bridge(settings: Settings) -> AsyncIterator[KafkaBridge]:
    """The bridge a node with ``settings`` would open."""
    async with kafka.open_bridge(settings.kafka()) as bridge:
        yield bridge


async def read_values(bridge: KafkaBridge, count: int, timeout: float = 20.0) -> list[bytes]:
    """The first ``count`` values of partition 0, read from the beginning."""
    values: list[bytes] = []
    async with bridge.open_reader({0: None}) as (reader, _):
        with trio.fail_after(timeout):
            while len(values) < count:
                for record in (await reader.fetch(500)).get(0, []):
                    assert record.value is not None
                    values.append(record.value)
    return values[:count]


async def round_trip(settings: Settings, value: bytes) -> int:
    """Create the topic, produce ``value`` and read it back over ``settings``; return
    its offset. Raises whatever the bridge raises (KafkaAuthFailed on a refusal)."""
    async with open_bridge(settings) as bridge:
        await bridge.ensure_topic()
        await bridge.start_producer()
        offset = await bridge.produce(0, b"key", value)
        assert (await read_values(bridge, offset + 1))[offset] == value
        return offset
