"""(asyncio side) The node's producer: acks=all, idempotent, one record per write, batches
compressed with the ``compression`` setting (every codec is readable: pyproject.toml)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from kstate.bridge.config import KafkaConfig
from kstate.bridge.security import client_args
from kstate.bridge.stopping import stop_client


class NodeProducer:
    """The node's producer (asyncio side); start() before produce()."""
    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            **client_args(self._config), acks="all", enable_idempotence=True, linger_ms=0,
            compression_type=None if self._config.compression == "none"
            else self._config.compression,
            request_timeout_ms=self._config.request_timeout_ms,
            max_request_size=self._config.max_request_bytes)
        try:
            await producer.start()
        except BaseException:
            await stop_client(producer, "producer")  # what it opened before it failed
            raise
        self._producer = producer

    async def produce(self, partition: int, key: bytes, value: bytes | None,
                      headers: tuple[tuple[str, bytes], ...]) -> int:
        """Produce one record and return its offset once acknowledged (acks=all)."""
        assert self._producer is not None, "start() first"
        md = await self._producer.send_and_wait(self._config.topic, value, key=key,
                                                partition=partition,
                                                headers=list(headers) or None)
        return int(md.offset)

    async def send(self, partition: int, key: bytes, value: bytes | None,
                   headers: tuple[tuple[str, bytes], ...]) -> asyncio.Future[RecordMetadata]:
        """Queue one record; the future resolves once it is acknowledged (acks=all).
        Records queued one after the other keep their order in the partition."""
        assert self._producer is not None, "start() first"
        fut: asyncio.Future[RecordMetadata] = await self._producer.send(
            self._config.topic, value, key=key, partition=partition,
            headers=list(headers) or None)
        return fut

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_client(producer, "producer")
