"""The producer process's feed (kstate/bridge/producer_feed.py): once Kafka gave a
record up, the producer gets nothing more and a new producer (a new producer id) takes
the next records at once; the old one answers what it holds, or, past its bound, has
it answered as failed, and is stopped. The process's stop is bounded even when the
producer never finishes anything."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata, TopicPartition

from kstate.bridge import producer_feed, producer_process
from kstate.bridge.config import KafkaConfig
from kstate.bridge.produce_wire import Reply, Request

CONFIG = KafkaConfig(request_timeout_ms=100)  # a retired producer gets 0.2 s


class _FakeProducer:
    made: list[_FakeProducer] = []
    stop_blocks = False  # stop() never returns (Kafka unreachable)

    def __init__(self, config: KafkaConfig | None = None) -> None:
        self.sent: list[tuple[int, bytes, asyncio.Future[RecordMetadata]]] = []
        self.started = self.stopped = False
        _FakeProducer.made.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
        if _FakeProducer.stop_blocks:
            await asyncio.Event().wait()

    async def send(self, partition: int, key: bytes, value: bytes | None,
                   headers: Any) -> asyncio.Future[RecordMetadata]:
        fut: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self.sent.append((partition, key, fut))
        return fut


def _ok(offset: int) -> RecordMetadata:
    return RecordMetadata("t", 0, TopicPartition("t", 0), offset, -1, -1, -1)


@pytest.fixture(autouse=True)
def _fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer_feed, "NodeProducer", _FakeProducer)
    _FakeProducer.made = []
    _FakeProducer.stop_blocks = False


def _feed(replies: list[Reply]) -> tuple[producer_feed.Feed, _FakeProducer]:
    first = _FakeProducer()
    return producer_feed.Feed(CONFIG, first, replies.append), first  # type: ignore[arg-type]


def test_after_a_record_kafka_gave_up_the_next_ones_go_to_a_new_producer_at_once() -> None:
    async def scenario() -> list[Reply]:
        replies: list[Reply] = []
        feed, first = _feed(replies)
        feeding = asyncio.create_task(feed.run())
        feed.put(Request(1, 0, b"big", b"x", ()))
        feed.put(Request(2, 1, b"other", b"y", ()))
        await asyncio.sleep(0.01)
        first.sent[0][2].set_exception(MessageSizeTooLargeError())
        feed.put(Request(3, 2, b"marker", b"", ()))
        await asyncio.sleep(0.01)
        # record 2 is still held by the first producer: record 3 does not wait for it
        _, second = _FakeProducer.made
        assert [k for _, k, _ in first.sent] == [b"big", b"other"]
        assert [k for _, k, _ in second.sent] == [b"marker"]
        assert not first.stopped
        first.sent[1][2].set_result(_ok(7))  # the old producer still answers it
        second.sent[0][2].set_result(_ok(8))
        await asyncio.sleep(0.01)
        assert first.stopped  # retired once it held nothing
        await feed.finish(feeding)
        assert second.stopped
        return replies

    replies = asyncio.run(scenario())
    # refused as too large: the node answers 413, not "may or may not apply"
    assert replies[0] == Reply(1, None, "MessageSizeTooLargeError()", too_large=True)
    assert sorted(replies[1:], key=lambda r: r.id) == [Reply(2, 7), Reply(3, 8)]


def test_a_record_the_retired_producer_never_answers_is_answered_as_failed() -> None:
    """An idempotent producer retries a batch for ever (a partition below
    min.insync.replicas): the node still gets an answer, after the bound."""
    async def scenario() -> tuple[list[Reply], float]:
        replies: list[Reply] = []
        feed, first = _feed(replies)
        feeding = asyncio.create_task(feed.run())
        feed.put(Request(1, 0, b"stuck", b"x", ()))
        feed.put(Request(2, 1, b"big", b"y", ()))
        await asyncio.sleep(0.01)
        first.sent[1][2].set_exception(MessageSizeTooLargeError())
        feed.put(Request(3, 2, b"next", b"z", ()))
        started = time.monotonic()
        while not any(r.id == 1 for r in replies):
            await asyncio.sleep(0.01)
            assert time.monotonic() - started < 5
        took = time.monotonic() - started
        assert first.stopped
        await feed.finish(feeding)
        return replies, took

    replies, took = asyncio.run(scenario())
    (stuck,) = [r for r in replies if r.id == 1]
    assert stuck.offset is None  # failed: "may or may not apply"
    assert not stuck.too_large
    assert took >= producer_feed.RETIRE_AFTER * CONFIG.request_timeout_ms / 1000 - 0.05


def test_the_process_stop_is_bounded_when_the_producer_finishes_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka unreachable: a record is held for ever and stop() never returns. The
    process must still end (os._exit) within its bound, not live on without its node."""
    exits: list[int] = []
    monkeypatch.setattr(producer_process, "PRODUCER_GIVES_UP_S", 0.2)
    monkeypatch.setattr(producer_process.os, "_exit", exits.append)
    _FakeProducer.stop_blocks = True

    class _Writer:
        async def drain(self) -> None:
            return None

    async def scenario() -> float:
        feed, _ = _feed([])
        feeding = asyncio.create_task(feed.run())
        feed.put(Request(1, 0, b"held", b"x", ()))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await producer_process._stop(feed.finish(feeding), _Writer())  # type: ignore[arg-type]
        return time.monotonic() - started

    took = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert exits == [3]
    assert took < 0.2 + producer_feed.STOP_WITHIN_S + 1
