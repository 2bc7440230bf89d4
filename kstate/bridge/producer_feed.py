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
nothing more: a new one (a new producer id) takes the next records at once, and the
old one is retired in the background. It answers what it holds (it retries an
idempotent batch for ever, e.g. a partition below min.insync.replicas: that must not
hold the other partitions' writes), for ``RETIRE_AFTER`` request timeouts at most;
then what it still holds is answered as failed ("may or may not apply": the node's
writer raises the partition's epoch, so a record that lands later is fenced) and it
is stopped, bounded too. Records of one partition may then land out of the order they
were sent in; nothing depends on that order across records the writer has not seen
answered (each key's writes are serialized until their fate is known; an old
record landing after the new epoch's marker is fenced)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata

from kstate.bridge import authz
from kstate.bridge.config import KafkaConfig
from kstate.bridge.produce_wire import Reply, Request
from kstate.bridge.producer import NodeProducer

log = logging.getLogger("kstate.bridge.producer_process")

RESTART_DELAY_S = 0.5  # between attempts to start a replacement Kafka did not let start


def refusal(rid: int, exc: BaseException | None) -> Reply:
    """The answer for a record the producer did not get acknowledged."""
    return Reply(rid, None, repr(exc) if exc is not None else "cancelled",
                 too_large=isinstance(exc, MessageSizeTooLargeError))


RETIRE_AFTER = 2  # request timeouts a retired producer gets to answer what it holds
STOP_WITHIN_S = 1.0  # for a producer's stop once nothing should be left to send


class _Generation:
    """One producer and the records it holds, not answered yet (id -> future)."""

    def __init__(self, producer: NodeProducer) -> None:
        self.producer = producer
        self.held: dict[int, asyncio.Future[RecordMetadata]] = {}
        self.drained = asyncio.Event()
        self.drained.set()


class Feed:
    """Requests in, in order (``put``); ``run`` feeds them to the producer and answers
    each through ``answer``; ``finish`` feeds what is queued, then stops the producers
    (they send what they hold, bounded)."""

    def __init__(self, config: KafkaConfig, producer: NodeProducer,
                 answer: Callable[[Reply], None]) -> None:
        self._config = config
        self._gen = _Generation(producer)
        self._answer = answer
        self._queue: deque[Request] = deque()
        self._more = asyncio.Event()
        self._gave_up: str | None = None  # why the producer must be replaced
        self._closing = False
        self._retiring: set[asyncio.Task[None]] = set()
        self.replaced = 0
        # Kafka's authorizer refused a record (the topic's Write revoked): every record
        # is answered with it (authz.PREFIX: the node stops), none sent; a replacement
        # producer would be refused in turn, every RESTART_DELAY_S, for good
        self.not_authorized = ""

    def _refusal(self, rid: int, exc: BaseException | None) -> Reply:
        refused = (None if exc is None
                   else authz.not_authorized(exc, self._config, "Write", "writing a record"))
        if refused is not None and not self.not_authorized:
            self.not_authorized = authz.PREFIX + str(refused)
        if self.not_authorized:
            return Reply(rid, None, self.not_authorized)
        return refusal(rid, exc)

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
            if self._gave_up is not None and not self.not_authorized:
                await self._replace()
                continue
            r = self._queue.popleft()
            if self.not_authorized:
                self._answer(Reply(r.id, None, self.not_authorized))
                continue
            gen = self._gen
            try:
                fut = await gen.producer.send(r.partition, r.key, r.value, r.headers)
            except Exception as exc:  # refused before it was queued: no sequence used
                self._answer(self._refusal(r.id, exc))
                continue
            gen.held[r.id] = fut
            gen.drained.clear()
            fut.add_done_callback(functools.partial(self._done, gen, r.id))

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """No more requests: ``run`` returns once it fed what is queued."""
        self._closing = True
        self._more.set()

    async def finish(self, feeding: asyncio.Task[None]) -> None:
        """Wait for ``feeding`` (this feed's ``run``) to end, then stop the producers:
        they send what they hold (with Kafka unreachable, for ever: the caller bounds
        it; once it cancels this, each stop gets STOP_WITHIN_S more at most)."""
        self.close()
        try:
            await feeding
            await self._gen.producer.stop()
            if self._retiring:
                await asyncio.gather(*self._retiring)
        finally:
            for task in self._retiring:
                task.cancel()
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(self._gen.producer.stop(), STOP_WITHIN_S)

    def _done(self, gen: _Generation, rid: int, fut: asyncio.Future[RecordMetadata]) -> None:
        if gen.held.pop(rid, None) is None:
            return  # answered already, when its producer was retired
        if not gen.held:
            gen.drained.set()
        exc = None if fut.cancelled() else fut.exception()
        if not fut.cancelled() and exc is None:
            self._answer(Reply(rid, int(fut.result().offset)))
            return
        if exc is not None and gen is self._gen and self._gave_up is None:
            # its sequence number is used: this producer id cannot write that
            # partition any more (module docstring)
            self._gave_up = repr(exc)
        self._answer(self._refusal(rid, exc))

    async def _replace(self) -> None:
        old = self._gen
        log.warning("event=producer_replacing reason=%r held=%d waiting=%d",
                    self._gave_up, len(old.held), len(self._queue))
        while True:
            producer = NodeProducer(self._config)
            try:
                await producer.start()
                break
            except Exception as exc:
                log.warning("event=producer_start_failed error=%r", exc)
                await asyncio.sleep(RESTART_DELAY_S)
        self._gen = _Generation(producer)
        self._gave_up = None
        self.replaced += 1
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        log.warning("event=producer_replaced times=%d", self.replaced)

    async def _retire(self, gen: _Generation) -> None:
        """Let ``gen``'s producer answer what it holds (bounded), answer the rest as
        failed, and stop it (bounded)."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gen.drained.wait(),
                                       RETIRE_AFTER * self._config.request_timeout_ms / 1000)
        finally:
            for rid in list(gen.held):
                gen.held.pop(rid)
                self._answer(Reply(rid, None, "the producer was replaced before Kafka "
                                   "answered this record"))
            gen.drained.set()
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(gen.producer.stop(), STOP_WITHIN_S)
