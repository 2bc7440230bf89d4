"""The producer process's feed (kstate/bridge/producer_feed.py): once Kafka gave a
record up, the producer gets nothing more; the records it holds are answered first,
then a new producer (a new producer id) takes the ones that waited, in their order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata, TopicPartition

from kstate.bridge import producer_feed
from kstate.bridge.config import KafkaConfig
from kstate.bridge.produce_wire import Reply, Request


class _FakeProducer:
    made: list[_FakeProducer] = []

    def __init__(self, config: KafkaConfig | None = None) -> None:
        self.sent: list[tuple[int, bytes, asyncio.Future[RecordMetadata]]] = []
        self.started = self.stopped = False
        _FakeProducer.made.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, partition: int, key: bytes, value: bytes | None,
                   headers: Any) -> asyncio.Future[RecordMetadata]:
        fut: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self.sent.append((partition, key, fut))
        return fut


def _ok(offset: int) -> RecordMetadata:
    return RecordMetadata("t", 0, TopicPartition("t", 0), offset, -1, -1, -1)


async def _scenario() -> tuple[list[Reply], list[_FakeProducer]]:
    _FakeProducer.made = []
    first = _FakeProducer()
    replies: list[Reply] = []
    feed = producer_feed.Feed(None, first, replies.append)  # type: ignore[arg-type]
    feeding = asyncio.create_task(feed.run())
    feed.put(Request(1, 0, b"big", b"x", ()))
    feed.put(Request(2, 1, b"other", b"y", ()))
    await asyncio.sleep(0.01)
    first.sent[0][2].set_exception(MessageSizeTooLargeError())
    feed.put(Request(3, 0, b"marker", b"", ()))
    await asyncio.sleep(0.01)
    # record 2 is still held: nothing new goes anywhere, no new producer yet
    assert [k for _, k, _ in first.sent] == [b"big", b"other"]
    assert len(_FakeProducer.made) == 1
    first.sent[1][2].set_result(_ok(7))
    await asyncio.sleep(0.01)
    await feed.finish(feeding)
    return replies, _FakeProducer.made


def test_a_record_kafka_gave_up_replaces_the_producer_after_what_it_holds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer_feed, "NodeProducer", _FakeProducer)
    replies, made = asyncio.run(_scenario())
    first, second = made
    assert first.stopped
    assert second.started
    assert [k for _, k, _ in second.sent] == [b"marker"]
    # refused as too large: the node answers 413, not "may or may not apply"
    assert replies[0] == Reply(1, None, "MessageSizeTooLargeError()", too_large=True)
    assert replies[1] == Reply(2, 7)
