"""The node's Kafka bridge, as trio sees it: every method crosses to the asyncio loop
once (docs/design.md, "Kafka bridge"), except produce, which goes to the producer's own
process (producer_link). Jobs live in their own modules: admin (topic), producer and
producer_process/producer_link/produce_wire (the process), group (consumer, assignor,
rebalance listener), offsets (fences), reader (group-less readers), security, portal
(the crossing itself)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable

import trio

from kstate.bridge import admin
from kstate.bridge.config import KafkaConfig
from kstate.bridge.group import GroupConsumer
from kstate.bridge.lease import Lease
from kstate.bridge.offsets import EndOffsets
from kstate.bridge.portal import Portal, open_portal
from kstate.bridge.producer_link import ProducerLink
from kstate.bridge.reader import Reader, Start, open_reader
from kstate.core.exception_groups import lone_error
from kstate.core.messages import Batch, BridgeEvent


class KafkaBridge:
    """Trio-facing side of the bridge. Every method crosses to asyncio once, except
    produce (the producer's process, through ``producer``)."""

    def __init__(self, portal: Portal, config: KafkaConfig, nursery: trio.Nursery) -> None:
        self._portal = portal
        self.config = config
        self._nursery = nursery
        self.producer = ProducerLink(config)  # a process of its own, not this loop
        self._group = GroupConsumer(config, portal.token)
        self._offsets = EndOffsets(config)

    async def ensure_topic(self, create_configs: dict[str, str] | None = None
                           ) -> admin.TopicInfo:
        """Create the topic if missing and describe it (kstate/bridge/admin.py)."""
        return await self._portal.call(admin.ensure_topic, self.config, create_configs)

    async def start_producer(self) -> None:
        await self._nursery.start(self.producer.run)

    async def produce(self, partition: int, key: bytes, value: bytes | None,
                      headers: tuple[tuple[str, bytes], ...] = ()) -> int:
        """Produce one record (acks=all, idempotent); return its offset.
        Raises BrokerUnavailable on any Kafka error."""
        return await self.producer.produce(partition, key, value, headers)

    async def start_consumer(self, url: str, owned: Callable[[], frozenset[int]],
                             events: trio.MemorySendChannel[BridgeEvent],
                             num_partitions: int | None = None) -> None:
        """Join the group; rebalance events arrive on ``events`` (each awaits its reply).
        With ``num_partitions`` (the count the node started with), an assignment after
        the topic's count changed stops the node (PartitionsChanged). Raises
        BrokerUnavailable when no broker answers."""
        await self._portal.call(self._group.start, url, owned, events, num_partitions)

    async def fetch(self, timeout_ms: int = 200) -> Batch:
        return await self._portal.call(functools.partial(self._group.fetch, timeout_ms))

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        """End offsets as the group consumer sees them."""
        return await self._portal.call(self._group.end_offsets, partitions)

    async def request_rejoin(self, why: str, partitions: list[int]) -> bool:
        """Ask the group for a rebalance if one can help now (bounded:
        kstate/bridge/group.py, request_rejoin); False: ask again later."""
        return await self._portal.call(self._group.request_rejoin, why, partitions)

    async def fence_offset(self, partition: int) -> int:
        """Kafka's end offset of ``partition`` now, on a connection of its own (a fence:
        actors/router.py)."""
        return await self._portal.call(self._offsets.end_offset, partition)

    @contextlib.asynccontextmanager
    async def open_reader(self, start: Start = None, *, fetch_bytes: int | None = None,
                          max_records: int | None = None
                          ) -> AsyncIterator[tuple[Reader, dict[int, int]]]:
        """A group-less reader of every partition (kstate/bridge/reader.py; what it
        holds unread: ``fetch_bytes`` per partition, ``max_records`` decoded)."""
        async with open_reader(self._portal, self.config, start, fetch_bytes=fetch_bytes,
                               max_records=max_records) as opened:
            yield opened

    @property
    def lease(self) -> Lease:
        """Until when this node can prove nobody else owns its partitions."""
        return self._group.lease

    def begin_shutdown(self, drain: float) -> None:
        """The node is leaving: from now on rebalance callbacks send trio nothing, and a
        revoke holds the group until the node leaves (at most ``drain`` seconds: the
        longest it may still acknowledge a write; kstate/bridge/group.py)."""
        self._group.begin_leaving(drain)

    async def leave_group(self) -> None:
        """Leave the consumer group now (fast failover for the others)."""
        with trio.CancelScope(shield=True):
            await self._portal.call(self._group.leave)

    async def _stop_clients(self) -> None:
        # each stops its client through stopping.stop_client: a failure is logged there
        await self._group.leave()
        await self._offsets.stop()

    async def stop(self) -> None:
        """Stop the consumer (LeaveGroup unless static), offsets client and producer."""
        with trio.CancelScope(shield=True):
            await self._portal.call(self._stop_clients)
            await self.producer.close()


@contextlib.asynccontextmanager
async def open_bridge(config: KafkaConfig) -> AsyncIterator[KafkaBridge]:
    """Start the asyncio thread; on exit stop every aiokafka object, then the thread."""
    async with open_portal() as portal:
        try:
            async with trio.open_nursery() as nursery:  # the producer link's tasks
                bridge = KafkaBridge(portal, config, nursery)
                try:
                    yield bridge
                finally:
                    await bridge.stop()
        except BaseExceptionGroup as group:
            # The caller's error comes out as itself, as it did before this nursery
            # existed (callers catch KafkaAuthFailed, TopicNotDurable, ...).
            lone = lone_error(group)
            if lone is group:
                raise
            raise lone from None
