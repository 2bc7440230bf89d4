"""(child process, asyncio side) Hands the node's records to the producer in the order
they arrived, from a task of its own, and replaces the producer once Kafka has given
one of its records up (docs/design.md, "The producer process").

A task of its own: ``AIOKafkaProducer.send`` waits (up to request_timeout) while a
partition's buffer is full, e.g. with Kafka down under write load. The loop that reads
the node's socket must go on answering the node's pings meanwhile, or the node takes
the process for frozen and kills it.

Replacing the producer: it is idempotent, and gives each batch the next sequence number
of its partition when the batch leaves its buffer. A batch that then fails for good
(Kafka refused it, e.g. larger than the topic's ``max.message.bytes``; or it expired
waiting for a partition leader) leaves a gap: Kafka refuses every later batch of that
producer id in that partition (OutOfOrderSequenceNumber), and aiokafka neither retries
them nor takes a new producer id. So once a record of it fails, the producer is given
nothing more; once every record it holds is answered (which keeps the order of each
partition's records), it is stopped and a new one (a new producer id) takes the
records that waited, in their order."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata

from kstate.bridge.config import KafkaConfig
from kstate.bridge.produce_wire import Reply, Request
from kstate.bridge.producer import NodeProducer

log = logging.getLogger("kstate.bridge.producer_process")

RESTART_DELAY_S = 0.5  # between attempts to start a replacement Kafka did not let start


def refusal(rid: int, exc: BaseException | None) -> Reply:
    """The answer for a record the producer did not get acknowledged."""
    return Reply(rid, None, repr(exc) if exc is not None else "cancelled",
                 too_large=isinstance(exc, MessageSizeTooLargeError))


class Feed:
    """Requests in, in order (``put``); ``run`` feeds them to the producer and answers
    each through ``answer``; ``finish`` feeds what is queued, then stops the producer
    (it sends what it holds)."""

    def __init__(self, config: KafkaConfig, producer: NodeProducer,
                 answer: Callable[[Reply], None]) -> None:
        self._config = config
        self._producer = producer
        self._answer = answer
        self._queue: deque[Request] = deque()
        self._more = asyncio.Event()
        self._held = 0  # records the producer holds, not answered yet
        self._idle = asyncio.Event()
        self._idle.set()
        self._gave_up: str | None = None  # why the producer must be replaced
        self._closing = False
        self.replaced = 0

    def put(self, request: Request) -> None:
        self._queue.append(request)
        self._more.set()

    async def run(self) -> None:
        """Feed the producer until ``close`` was called and nothing is queued."""
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            if self._gave_up is not None:
                await self._replace()
                continue
            r = self._queue.popleft()
            try:
                fut = await self._producer.send(r.partition, r.key, r.value, r.headers)
            except Exception as exc:  # refused before it was queued: no sequence used
                self._answer(refusal(r.id, exc))
                continue
            self._held += 1
            self._idle.clear()
            fut.add_done_callback(functools.partial(self._done, r.id))

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """No more requests: ``run`` returns once it fed what is queued."""
        self._closing = True
        self._more.set()

    async def finish(self, feeding: asyncio.Task[None]) -> None:
        """Wait for ``feeding`` (this feed's ``run``) to end, then stop the producer:
        it sends what it holds (with Kafka unreachable, for ever: the caller bounds it)."""
        self.close()
        try:
            await feeding
        finally:
            await self._producer.stop()

    def _done(self, rid: int, fut: asyncio.Future[RecordMetadata]) -> None:
        self._held -= 1
        if self._held == 0:
            self._idle.set()
        exc = None if fut.cancelled() else fut.exception()
        if not fut.cancelled() and exc is None:
            self._answer(Reply(rid, int(fut.result().offset)))
            return
        if exc is not None and self._gave_up is None:
            # its sequence number is used: this producer id cannot write that
            # partition any more (module docstring)
            self._gave_up = repr(exc)
        self._answer(refusal(rid, exc))

    async def _replace(self) -> None:
        log.warning("event=producer_replacing reason=%r held=%d waiting=%d",
                    self._gave_up, self._held, len(self._queue))
        await self._idle.wait()  # the records it holds are answered first: order is kept
        await self._producer.stop()
        while True:
            producer = NodeProducer(self._config)
            try:
                await producer.start()
                break
            except Exception as exc:
                log.warning("event=producer_start_failed error=%r", exc)
                await asyncio.sleep(RESTART_DELAY_S)
        self._producer = producer
        self._gave_up = None
        self.replaced += 1
        log.warning("event=producer_replaced times=%d", self.replaced)
