"""A resumed feed subscriber (actors/feed_resume.py) driven without Kafka: when the node
stops (FeedHandle.close_all), one still replaying with a reader of its own ends at once
with CLOSED and its reader is closed; it is not left to be cut off by the HTTP drain. One
whose reader cannot start is refused before the websocket is accepted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio

from actors.feed import Broadcaster, FeedHandle, Subscriber
from actors.feed_resume import FROM_BEGINNING, Ended, Refused, Start, _forward_live, serve
from actors.feed_rule import FeedRule
from kstate.bridge import BrokerUnavailable, OffsetPastEnd
from kstate.core.messages import Batch, Record
from kstate.core.users import validate_record


class _EndlessReader:
    """A reader that is never at the end of the log: one record per fetch."""

    def __init__(self) -> None:
        self.halted: dict[int, tuple[int, str]] = {}
        self.offset = 0
        self.closed = False

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        await trio.sleep(0.05)
        self.offset += 1
        return Batch(0, {0: [Record(self.offset - 1, b"a@b.c", b'{"name":"A","email":"a@b.c"}')]},
                     {0: self.offset})


class _Bridge:
    def __init__(self) -> None:
        self.reader = _EndlessReader()

    @contextlib.asynccontextmanager
    async def open_reader(self, start: object, **_: object
                          ) -> AsyncIterator[tuple[_EndlessReader, dict[int, int]]]:
        try:
            yield self.reader, {0: 0}
        finally:
            self.reader.closed = True


async def test_a_replaying_subscriber_ends_when_the_node_stops(autojump_clock):
    bridge = _Bridge()
    feed = FeedHandle(Broadcaster(buffer=16), bridge, "127.0.0.1:1")  # type: ignore[arg-type]
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    ended: list[Ended] = []

    async def subscriber() -> None:
        ended.append(await serve(feed, FROM_BEGINNING, None, send))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        await trio.sleep(1.0)
        assert len(sent) > 5  # hello, then changes: it is replaying
        assert not ended
        feed.close_all()
        with trio.fail_after(1.0):  # within one fetch
            while not ended:
                await trio.sleep(0.01)
    assert ended == [Ended.CLOSED]
    assert bridge.reader.closed
    # and a subscriber arriving once the node stops is not taken in
    assert await serve(feed, None, None, send) is Ended.CLOSED


async def test_a_live_subscriber_cut_off_for_lagging_is_dropped_once(autojump_clock):
    """A client that reads nothing: its outbox fills, then its broadcaster queue, and the
    broadcaster cuts it off for lagging while serve still waits for room in the outbox.
    When that wait runs out (stall_timeout) it is the same subscriber: dropped once, it
    ended LAGGED. Regression: it was counted again as stalled, and /cluster said two
    subscribers were dropped where one was (test_feed_load failed so when the machine
    was slow enough for the stall timer to fire before the count was read)."""
    feed = FeedHandle(Broadcaster(buffer=16), _Bridge(), "127.0.0.1:1")  # type: ignore[arg-type]

    async def send(text: str) -> None:
        await trio.sleep_forever()  # a client whose window stays shut

    ended: list[Ended] = []

    async def subscriber() -> None:
        ended.append(await serve(feed, None, None, send))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        await trio.sleep(0.1)
        sub = next(iter(feed.broadcaster.subscribers))
        i = 0
        while not sub.lagged:
            assert i < 1000, "never cut off for lagging"
            feed.broadcaster.publish(None, str(i))
            i += 1
            await trio.sleep(0.001)  # serve moves what it can into the outbox
        assert not ended  # still waiting for room in the outbox
        await trio.sleep(feed.limits.stall_timeout + 1)
    assert ended == [Ended.LAGGED]
    assert feed.statistics().dropped_subscribers == 1


class _RefusingBridge:
    """A bridge whose readers cannot start: ``error`` is raised as they open."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @contextlib.asynccontextmanager
    async def open_reader(self, start: object, **_: object
                          ) -> AsyncIterator[tuple[_EndlessReader, dict[int, int]]]:
        raise self.error
        yield  # an async generator all the same


async def _refused(bridge: _RefusingBridge, start: Start) -> tuple[object, list[str], int]:
    feed = FeedHandle(Broadcaster(buffer=16), bridge, "127.0.0.1:1")  # type: ignore[arg-type]
    sent: list[str] = []
    accepted = 0

    async def send(text: str) -> None:
        sent.append(text)

    async def accept() -> None:
        nonlocal accepted
        accepted += 1

    ended = await serve(feed, start, None, send, accept=accept)
    return ended, sent, accepted


async def test_a_from_offset_past_the_end_is_refused_before_the_handshake():
    """Regression: the websocket was accepted first, and the hello then named a position
    past the partition's end (see kstate/bridge/reader.py, OffsetPastEnd)."""
    ended, sent, accepted = await _refused(_RefusingBridge(OffsetPastEnd(0, 1001, 500)),
                                           {0: 1001})
    assert isinstance(ended, Refused)
    assert (ended.status, ended.error) == (400, "invalid_from")
    assert ended.message.startswith("from=0:1000 is past the end of partition 0"), ended
    assert "its next offset is 500" in ended.message
    assert (sent, accepted) == ([], 0)


async def test_a_resumed_feed_whose_reader_cannot_reach_kafka_gets_503():
    """Regression: the websocket was accepted first; the reader's start then raised,
    quart logged a traceback and closed with 1000, which tells a client "this node is
    stopping, resume elsewhere"."""
    ended, sent, accepted = await _refused(
        _RefusingBridge(BrokerUnavailable("Unable to bootstrap")), FROM_BEGINNING)
    assert isinstance(ended, Refused)
    assert (ended.status, ended.error, ended.retry_after) == (503, "feed_unavailable", 1)
    assert (sent, accepted) == ([], 0)


async def test_a_hand_over_passes_on_a_change_whose_value_nests_as_deep_as_a_user_may():
    """After a hand-over the broadcaster's changes are checked against what the replay
    already sent (``_forward_live``). A user's value may nest as deep as kstate's JSON
    parser takes (the rule applies it: kstate/core/users.py); the change that carries it
    nests one level deeper. Regression: that change was parsed again to find its
    partition and offset, the parser refused it (depth limit), and the subscription
    failed with an exception instead of receiving it."""
    deep = 1023  # arrays inside the user's object: the deepest value the rule applies
    # (fields of its own named partition and offset too: another producer's)
    value = (b'{"name":"A","email":"a@b.c","partition":7,"offset":1,"x":'
             + b"[" * deep + b"]" * deep + b"}")
    assert validate_record(b"a@b.c", value) is None
    rule = FeedRule(1)
    change = rule.change(0, Record(5, b"a@b.c", value))
    after = rule.change(0, Record(6, b"a@b.c", b'{"name":"B","email":"a@b.c"}'))
    assert change is not None
    assert after is not None
    send_channel, messages = trio.open_memory_channel[str](8)
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    for text in (change, after):
        send_channel.send_nowait(text)
    send_channel.close()
    sub = Subscriber(send_channel, None)
    # the replay sent offsets up to 4: the broadcaster's from 5 on are sent
    assert await _forward_live(messages, sub, {0: 5}, send) is Ended.CLOSED
    assert sent == [change, after]
