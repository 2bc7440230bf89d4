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
from kstate.bridge.stopping import stop_client


class EndOffsets:
    """A group-less consumer that never fetches: it only lists end offsets.

    It is started on the first fence, by one task that fences do not cancel: a fence
    gives up after a second (actors/router.py), often while Kafka is out of reach, and a
    consumer start cut short leaves its connections and tasks open, unowned. So every
    fence awaits the same start (shielded); a start that fails stops its consumer, and
    the next fence starts a new one. At most one start is in flight, however many
    fences time out while Kafka does not answer."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._starting: asyncio.Future[AIOKafkaConsumer] | None = None

    async def end_offset(self, partition: int) -> int:
        starting = self._starting
        if starting is None or (starting.done() and (
                starting.cancelled() or starting.exception() is not None)):
            starting = self._starting = asyncio.ensure_future(self._start())
        consumer = await asyncio.shield(starting)
        tp = TopicPartition(self._config.topic, partition)
        ends = await consumer.end_offsets([tp])
        return int(ends[tp])

    async def _start(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(**client_args(self._config), group_id=None,
                                    enable_auto_commit=False, isolation_level=ISOLATION)
        try:
            await consumer.start()
        except BaseException:
            await stop_client(consumer, "offsets")  # its failure must not hide this one
            raise
        return consumer

    async def stop(self) -> None:
        starting, self._starting = self._starting, None
        if starting is None:
            return
        starting.cancel()  # a start still waiting for Kafka: the node is stopping
        try:
            consumer = await starting
        except (Exception, asyncio.CancelledError):
            return  # it did not start (and stopped its consumer itself)
        await stop_client(consumer, "offsets")
