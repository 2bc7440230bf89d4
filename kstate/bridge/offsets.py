"""(asyncio side) End offsets asked on a connection of the bridge's own.

The group consumer's connection may be parked behind a fetch long-poll (the broker
answers one request per connection at a time, and a fetch waits up to
fetch_max_wait_ms); a fence must answer in milliseconds, so it asks here."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from kstate.bridge.config import KafkaConfig
from kstate.bridge.group import ISOLATION
from kstate.bridge.security import client_args


class EndOffsets:
    """A group-less consumer that never fetches: it only lists end offsets."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def end_offset(self, partition: int) -> int:
        async with self._lock:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(**client_args(self._config), group_id=None,
                                            enable_auto_commit=False,
                                            isolation_level=ISOLATION)
                await consumer.start()
                self._consumer = consumer
        tp = TopicPartition(self._config.topic, partition)
        ends = await self._consumer.end_offsets([tp])
        return int(ends[tp])

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
