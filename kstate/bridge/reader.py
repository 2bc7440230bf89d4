"""A group-less reader of every partition (the change feed, standby copies, resumed
feed subscribers): the asyncio side and its trio handle. A partition whose next batch
cannot be decoded stops alone (kstate/bridge/undecodable.py): :attr:`Reader.halted`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

import trio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from kstate.bridge import authz
from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import BrokerUnavailable, OffsetPastEnd
from kstate.bridge.group import ISOLATION, end_offsets_each, known_positions, record_of
from kstate.bridge.portal import Portal
from kstate.bridge.security import client_args
from kstate.bridge.stopping import stop_client
from kstate.bridge.undecodable import Halt, Undecodable
from kstate.core.messages import Batch, Record

# ``start`` of a reader that reads every partition from its beginning.
BEGINNING = "beginning"
# ``start`` of a reader that reads nothing until moved (``resume_at_end``): it opens
# without asking any partition's offsets, which a partition without a leader (its
# broker down) cannot answer, however long that lasts. Its positions are all -1.
PAUSED = "paused"
# ``start`` of a reader that reads every partition from its beginning, each once Kafka
# can say where that is: it opens without asking any offset (one partition without a
# leader must not hold up the others), and the consumer moves each partition to its
# beginning by itself (auto_offset_reset "earliest": a group-less reader has no
# committed offsets). Its positions are all -1: a fetched Batch says where each is.
EACH_FROM_BEGINNING = "each_from_beginning"
Start = dict[int, int | None] | str | None
START_WAIT = 1.0  # seconds a stopping reader waits for its start to end by itself


class _ReaderSide:
    """Lives on the asyncio loop."""

    def __init__(self, config: KafkaConfig, fetch_bytes: int | None = None,
                 max_records: int | None = None) -> None:
        self.config = config
        self.fetch_bytes = fetch_bytes
        self.max_records = max_records or config.max_batch
        self.consumer: AIOKafkaConsumer | None = None
        self.undecodable: Undecodable | None = None
        self._starting: asyncio.Future[dict[int, int]] | None = None

    async def start(self, start: Start) -> dict[int, int]:
        """Assign all partitions; ``start`` maps partition -> next offset to read
        (None: the beginning); partitions not in it (or start None) begin at the end;
        BEGINNING: every partition from its beginning; PAUSED: none read until
        ``resume_at_end``. Returns the starting position of every partition. An
        offset below its partition's first (records deleted) starts at the first; one
        past its end raises OffsetPastEnd. Raises
        BrokerUnavailable if Kafka cannot be reached.

        Afterwards, Kafka answers out of range only if the log moved under the reader
        (its start passed it, or an unclean leader election truncated it below it):
        auto_offset_reset "earliest" then reads on from the partition's start, so
        records may come again but none still in the log is skipped.

        A cancelled start (a resumed feed's client went away) runs on to its end all
        the same, and :meth:`stop` waits for it (up to START_WAIT): aiokafka cancelled
        while it opens a connection leaves that connection open and unowned (logged
        later, with a traceback, as "Unclosed AIOKafkaConnection")."""
        self._starting = asyncio.ensure_future(self._start(start))
        return await asyncio.shield(self._starting)

    async def _start(self, start: Start) -> dict[int, int]:
        try:
            return await self._open(start)
        except KafkaError as exc:  # Kafka out of reach (or not answering in time)
            self._not_authorized(exc)
            raise BrokerUnavailable(f"a reader could not start: {exc!r}") from exc

    async def _open(self, start: Start) -> dict[int, int]:
        c = self.config
        # aiokafka keeps one fetched answer per partition until it is read, each up to
        # max_partition_fetch_bytes (1 MiB by default) or its first record batch if that
        # is larger: what a reader whose client reads nothing holds.
        sized = ({} if self.fetch_bytes is None
                 else {"max_partition_fetch_bytes": self.fetch_bytes})
        self.consumer = AIOKafkaConsumer(
            **client_args(c), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=self.max_records,
            isolation_level=ISOLATION, **sized)
        await self.consumer.start()
        self.undecodable = Undecodable(self.consumer, "reader")
        parts = self.consumer.partitions_for_topic(c.topic)
        if parts is None:
            await self.consumer._client.force_metadata_update()
            parts = self.consumer.partitions_for_topic(c.topic) or set()
        tps = [TopicPartition(c.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        if start == PAUSED:
            self.consumer.pause(*tps)
            return {tp.partition: -1 for tp in tps}
        if start == EACH_FROM_BEGINNING:
            return {tp.partition: -1 for tp in tps}
        wanted = (dict.fromkeys((tp.partition for tp in tps), None) if start == BEGINNING
                  else start if isinstance(start, dict) else {})
        firsts = await self._check_offsets(tps, wanted)
        for tp in tps:
            where = wanted.get(tp.partition, -1)
            if where is None:
                await self.consumer.seek_to_beginning(tp)
            elif where < 0:
                await self.consumer.seek_to_end(tp)
            else:
                self.consumer.seek(tp, max(where, firsts[tp]))
        return {tp.partition: int(await self.consumer.position(tp)) for tp in tps}

    async def _check_offsets(self, tps: list[TopicPartition],
                             wanted: dict[int, int | None]) -> dict[TopicPartition, int]:
        """The first offset of every partition ``wanted`` names an offset of. Raises
        OffsetPastEnd if one is past its partition's end (the last stable offset:
        end_offsets follows the reader's read_committed): seeking there, Kafka would
        answer out of range and auto_offset_reset would move the reader back to the
        start, or, on an empty partition, leave it there with a false position."""
        assert self.consumer is not None
        named = [tp for tp in tps if (o := wanted.get(tp.partition, -1)) is not None and o >= 0]
        if not named:
            return {}
        ends = await self.consumer.end_offsets(named)
        for tp in named:
            where = wanted[tp.partition]
            if where is not None and where > ends[tp]:
                raise OffsetPastEnd(tp.partition, where, int(ends[tp]))
        firsts = await self.consumer.beginning_offsets(named)
        return {tp: int(o) for tp, o in firsts.items()}

    async def fetch(self, timeout_ms: int) -> tuple[dict[int, list[Record]], dict[int, Halt]]:
        """Records by partition, and the partitions halted by this fetch."""
        assert self.consumer is not None
        assert self.undecodable is not None
        try:
            got = await self.consumer.getmany(timeout_ms=timeout_ms,
                                              max_records=self.max_records)
        except KafkaError as exc:  # one Kafka refused to go on with (not authorized...)
            self._not_authorized(exc)
            raise BrokerUnavailable(f"a reader could not fetch: {exc!r}") from exc
        records = {tp.partition: [record_of(m) for m in msgs] for tp, msgs in got.items()}
        return records, self.undecodable.take()

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        records, halted = await self.fetch(timeout_ms)
        return Batch(epoch=0, records=records, positions=known_positions(self.consumer),
                     halted=halted)

    async def pause(self) -> None:
        assert self.consumer is not None
        self.consumer.pause(*self.consumer.assignment())

    async def resume_at_end(self, halted: frozenset[int]) -> dict[int, int]:
        """Move every partition but the ``halted`` ones to its end and read on; returns
        every partition's position."""
        assert self.consumer is not None
        tps = sorted(self.consumer.assignment())
        moving = [tp for tp in tps if tp.partition not in halted]
        if moving:
            await self.consumer.seek_to_end(*moving)
        positions = {tp.partition: int(await self.consumer.position(tp)) for tp in tps}
        self.consumer.resume(*moving)
        return positions

    async def end_offsets(self) -> dict[int, int]:
        assert self.consumer is not None
        try:
            ends = await self.consumer.end_offsets(sorted(self.consumer.assignment()))
        except KafkaError as exc:  # not answered within aiokafka's request timeout
            self._not_authorized(exc)
            raise BrokerUnavailable(f"a reader's end offsets: {exc!r}") from exc
        return {tp.partition: int(off) for tp, off in ends.items()}

    async def end_offsets_each(self, partitions: list[int]) -> dict[int, int]:
        """The end offsets of those of ``partitions`` Kafka answers for within one
        attempt each (kstate/bridge/group.py, end_offsets_each)."""
        assert self.consumer is not None
        topic = self.config.topic
        ends, _ = await end_offsets_each(self.consumer,
                                         [TopicPartition(topic, p) for p in partitions])
        return {tp.partition: off for tp, off in ends.items()}

    def _not_authorized(self, exc: KafkaError) -> None:
        """Raise KafkaNotAuthorized if ``exc`` is the authorizer's refusal (the topic's
        Describe or Read missing or revoked): no retry can help, and the node stops
        (README, "Kafka ACLs"), where a BrokerUnavailable from the live feed's reader
        ended it with a traceback."""
        refused = authz.not_authorized(exc, self.config, "Describe and Read",
                                       "reading the topic")
        if refused is not None:
            raise refused from exc

    async def stop(self) -> None:
        starting = self._starting
        if starting is not None:
            # see start(): waited for, but not for good. A start still under way after
            # START_WAIT waits for Kafka's answers (a partition without a leader has no
            # offsets while its broker is down), not a connection: a stopping node
            # waited that long, past SIGTERM, with it.
            await asyncio.wait({starting}, timeout=START_WAIT)
            starting.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await starting
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await stop_client(consumer, "reader")


class Reader:
    """Trio-facing handle of a group-less reader; opened by :func:`open_reader`."""

    def __init__(self, portal: Portal, side: _ReaderSide) -> None:
        self._portal = portal
        self._side = side
        # partition -> (offset, reason): partitions this reader stopped at a batch it
        # cannot decode (they stay where they are; the others go on)
        self.halted: dict[int, Halt] = {}

    async def fetch(self, timeout_ms: int = 500) -> dict[int, list[Record]]:
        """Records by partition (see :attr:`halted` for partitions that stopped);
        BrokerUnavailable for an error Kafka gave instead."""
        records, halted = await self._portal.call(
            functools.partial(self._side.fetch, timeout_ms))
        self.halted.update(halted)
        return records

    async def fetch_batch(self, timeout_ms: int = 500) -> Batch:
        """A fetch, with the positions reached (epoch 0: no group, no revokes) and the
        partitions it halted."""
        batch = await self._portal.call(functools.partial(self._side.fetch_batch, timeout_ms))
        self.halted.update(batch.halted)
        return batch

    async def pause(self) -> None:
        """Stop reading (records already fetched stay until resume_at_end drops them)."""
        await self._portal.call(self._side.pause)

    async def resume_at_end(self) -> dict[int, int]:
        """Read on from the end of every partition (a halted one stays where it
        stopped); returns every partition's position."""
        return await self._portal.call(self._side.resume_at_end, frozenset(self.halted))

    async def end_offsets(self) -> dict[int, int]:
        """The end offset of every partition this reader reads (BrokerUnavailable if
        Kafka does not answer in time)."""
        return await self._portal.call(self._side.end_offsets)

    async def end_offsets_each(self, partitions: list[int]) -> dict[int, int]:
        """The end offsets of those of ``partitions`` Kafka answers for within one
        attempt each (a partition without a leader is left out, never waited for)."""
        return await self._portal.call(self._side.end_offsets_each, partitions)


@contextlib.asynccontextmanager
async def open_reader(portal: Portal, config: KafkaConfig, start: Start = None, *,
                      fetch_bytes: int | None = None, max_records: int | None = None
                      ) -> AsyncIterator[tuple[Reader, dict[int, int]]]:
    """A group-less reader of every partition and its starting positions (see
    ``_ReaderSide.start`` for ``start``). Stopped on exit, even when cancelled.

    What it holds unread is about one fetched answer per partition: ``fetch_bytes``
    per partition (default aiokafka's 1 MiB; Kafka still sends a first record batch
    larger than that whole), of which ``max_records`` (default ``max_batch``) are
    decoded per fetch."""
    side = _ReaderSide(config, fetch_bytes, max_records)
    try:
        positions = await portal.call(side.start, start)
        yield Reader(portal, side), positions
    finally:
        with trio.CancelScope(shield=True):
            await portal.call(side.stop)
