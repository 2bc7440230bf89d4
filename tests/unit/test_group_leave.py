"""Leaving the group (kstate/bridge/group.py): once the node begins to leave, the
shutdown revoke is the last word. An assignment whose callback was under way sends
nothing to trio, and leave() ends the read lease before LeaveGroup gives the
partitions to others (no answer from memory after that, whatever heartbeats proved)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import TopicPartition

from kstate.bridge.config import KafkaConfig
from kstate.bridge.group import Assignor, GroupConsumer, Listener


def _group() -> GroupConsumer:
    return GroupConsumer(KafkaConfig(topic="t"), token=None)  # type: ignore[arg-type]


def test_leave_ends_the_read_lease_for_good() -> None:
    g = _group()
    g.lease.renew(time.monotonic())
    assert g.lease.valid()
    asyncio.run(g.leave())
    assert not g.lease.valid()
    g.lease.renew(time.monotonic())  # a heartbeat's answer that arrives after leaving
    assert not g.lease.valid()


class _Consumer:
    """The aiokafka consumer as _assigned uses it; the node begins leaving while its
    end offsets are read."""

    def __init__(self, g: GroupConsumer) -> None:
        self.g = g
        self.paused: list[Any] = []
        self.resumed: list[Any] = []
        self._coordinator = self  # generation, request_rejoin, heartbeats
        self._fetcher = self  # end_offsets, with aiokafka's timeout
        self.generation = 1

    def request_rejoin(self) -> None:
        pass

    def _start_heartbeat_task(self) -> None:
        pass

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        pass

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.extend(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.resumed.extend(tps)

    async def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None
                          ) -> dict[TopicPartition, int]:
        await asyncio.sleep(0)
        self.g.closing = True  # bridge.begin_shutdown(), from the trio thread
        return {tp: 5 for tp in tps}


def test_an_assignment_under_way_when_leaving_begins_sends_nothing() -> None:
    g = _group()
    consumer = _Consumer(g)
    asked: list[Any] = []

    async def ask_trio(make: Any) -> Any:
        asked.append(make)
        return {}

    g.ask_trio = ask_trio  # type: ignore[method-assign]
    g.consumer = consumer  # type: ignore[assignment]
    g.assignor = Assignor("t", "me:1", frozenset)
    asyncio.run(Listener(g)._assigned(consumer, [TopicPartition("t", 0)]))  # type: ignore[arg-type]
    assert asked == []  # no Assigned after the shutdown revoke
    assert consumer.resumed == []  # and nothing fetched for it


def test_a_rebalance_while_leaving_waits_for_the_shutdown_drain() -> None:
    # Another member joins while this node drains its writes on SIGTERM. The group
    # must not move on (and a new owner read its catch-up target) while a write this
    # node still acknowledges is in flight: the revoke callback returns only once the
    # node leaves (it does so once the shutdown revoke's writes have finished)...
    g = _group()
    revoked = {TopicPartition("t", 0)}

    async def main() -> None:
        g.begin_leaving(drain=30.0)
        callback = asyncio.create_task(Listener(g).on_partitions_revoked(revoked))
        await asyncio.sleep(0.5)
        assert not callback.done()
        await g.leave()
        await asyncio.wait_for(callback, 1.0)

    asyncio.run(main())


def test_the_wait_for_the_shutdown_drain_is_bounded() -> None:
    # ...and at most for the drain: past it no write is acknowledged to a client any
    # more (the HTTP drain is over), so a node whose trio side never leaves (a hang)
    # cannot hold the group's rebalance, nor its own stop.
    g = _group()

    async def main() -> float:
        g.begin_leaving(drain=0.3)
        started = time.monotonic()
        await asyncio.wait_for(
            Listener(g).on_partitions_revoked({TopicPartition("t", 0)}), 5.0)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert 0.3 <= took < 2.0
