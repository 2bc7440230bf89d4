"""A resumed feed subscriber (actors/feed_resume.py) driven without Kafka: when the node
stops (FeedHandle.close_all), one still replaying with a reader of its own ends at once
with CLOSED and its reader is closed; it is not left to be cut off by the HTTP drain. One
whose reader cannot start is refused before the websocket is accepted."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

import orjson
import pytest
import trio

from actors import feed as feed_actor
from actors.feed import Broadcaster, FeedHandle, Subscriber
from actors.feed_resume import (
    FROM_BEGINNING,
    READER_MAX_RECORDS,
    READER_START_TIMEOUT,
    Ended,
    Refused,
    Start,
    _forward_live,
    _Replay,
    _replay_until_live,
    serve,
)
from actors.feed_rule import FeedRule
from kstate.bridge import BrokerUnavailable, KafkaNotAuthorized, OffsetPastEnd
from kstate.core.messages import Batch, Record
from kstate.core.users import validate_record
from tests.support.owners import emails_in


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


class _FailingReader(_EndlessReader):
    """Replays a few records, then Kafka refuses its fetch (an ACL revoked)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        if self.offset >= 3:
            raise self.error
        return await super().fetch_batch(timeout_ms)


@pytest.mark.parametrize("error", [
    KafkaNotAuthorized("Kafka does not authorize this node (User:u) to Describe and Read "
                       "topic 't' (TOPIC_AUTHORIZATION_FAILED, reading the topic)"),
    BrokerUnavailable("a reader could not fetch: TopicAuthorizationFailedError('t')"),
])
async def test_a_replay_whose_reader_kafka_refuses_mid_way_ends_unavailable(
        autojump_clock, error):
    """Regression: the reader's error escaped serve (a traceback of the websocket route,
    a close that told the client nothing); now the subscription ends UNAVAILABLE (close
    1011: resume with from=) after what was sent, its reader closed."""
    bridge = _Bridge()
    bridge.reader = _FailingReader(error)
    feed = FeedHandle(Broadcaster(buffer=16), bridge, "127.0.0.1:1")  # type: ignore[arg-type]
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    with trio.fail_after(5):
        ended = await serve(feed, FROM_BEGINNING, None, send)
    assert ended is Ended.UNAVAILABLE
    assert len(sent) == 4  # the hello, then the three changes read before the refusal
    assert bridge.reader.closed


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


class _AtEndReader:
    """A reader already at the end of the log (partition 0's next offset: ``end``)."""

    def __init__(self, end: int) -> None:
        self.halted: dict[int, tuple[int, str]] = {}
        self.end = end

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        await trio.sleep(timeout_ms / 1000)
        return Batch(0, {}, {0: self.end})


class _AtEndBridge:
    def __init__(self, end: int) -> None:
        self.end = end

    @contextlib.asynccontextmanager
    async def open_reader(self, start: object, **_: object
                          ) -> AsyncIterator[tuple[_AtEndReader, dict[int, int]]]:
        yield _AtEndReader(self.end), {0: self.end}


async def test_a_subscriber_resumed_past_where_the_live_feed_halted_is_told_after_hand_over(
        autojump_clock):
    """The live feed halted partition 0 at offset 3 (a batch this node cannot decode); a
    client that read that partition up to offset 9 elsewhere (a node that can) resumes
    here. Its own reader starts past the batch and hands over at once (it is ahead of
    the broadcaster); the broadcaster will never send a change of partition 0 again, so
    the client must be told, at the first offset it has not seen. Regression: the
    broadcaster's notice, at an offset below what the replay had sent, was dropped as
    already sent, and the client waited for that partition's changes in silence."""
    broadcaster = Broadcaster(buffer=16, positions={0: 3})
    broadcaster.halted[0] = (3, "UnsupportedCodecError: snappy")
    feed = FeedHandle(broadcaster, _AtEndBridge(10), "127.0.0.1:1")  # type: ignore[arg-type]
    sent: list[str] = []
    closed: list[bool] = []

    async def send(text: str) -> None:
        sent.append(text)

    async def subscriber() -> None:
        await serve(feed, {0: 10}, None, send, reader_closed=lambda: closed.append(True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        with trio.move_on_after(30):
            while not closed or len(sent) < 2:
                await trio.sleep(0.1)
        feed.close_all()
    assert closed  # handed over: its reader is closed
    assert orjson.loads(sent[0])["type"] == "hello"
    assert [orjson.loads(t) for t in sent[1:]] == [
        {"type": "halted", "partition": 0, "offset": 10,
         "reason": "UnsupportedCodecError: snappy"}]


class _HangingBridge:
    """A bridge whose readers never finish opening: Kafka answers, but not with every
    partition's offsets (one has no leader: its broker is down, replication 1)."""

    def __init__(self) -> None:
        self.stopped = False

    @contextlib.asynccontextmanager
    async def open_reader(self, start: object, **_: object
                          ) -> AsyncIterator[tuple[_EndlessReader, dict[int, int]]]:
        try:
            await trio.sleep_forever()
        finally:
            self.stopped = True
        yield  # an async generator all the same


async def test_a_resumed_feed_whose_reader_cannot_start_in_time_gets_503(autojump_clock):
    """Regression: a reader whose start waited for a partition without a leader held
    the handshake unanswered, and the subscriber's feed_max_resumed slot, for as long
    as the partition's broker was down."""
    bridge = _HangingBridge()
    with trio.fail_after(60):
        ended, sent, accepted = await _refused(bridge, {0: 5})  # type: ignore[arg-type]
    assert isinstance(ended, Refused)
    assert (ended.status, ended.error, ended.retry_after) == (503, "feed_unavailable", 1)
    assert (sent, accepted) == ([], 0)
    assert bridge.stopped


class _BehindReader:
    """A reader at offset 0 of partition 0 that reads nothing more (it cannot reach the
    broadcaster's position)."""

    def __init__(self) -> None:
        self.halted: dict[int, tuple[int, str]] = {}

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        await trio.sleep(timeout_ms / 1000)
        return Batch(0, {}, {0: 0})


class _BehindBridge:
    @contextlib.asynccontextmanager
    async def open_reader(self, start: object, **_: object
                          ) -> AsyncIterator[tuple[_BehindReader, dict[int, int]]]:
        yield _BehindReader(), {0: 0}


async def test_a_hand_over_attempt_that_lags_drops_no_subscriber(autojump_clock):
    """A resumed subscriber tries to hand over: it subscribes to the broadcaster and
    reads up to its positions meanwhile. The attempt's subscription fills up (nothing
    drains it until the hand-over completes) and is cut off; the subscriber goes on with
    its own reader and tries again later. No client was cut off. Regression: the
    attempt was counted in kstate_feed_dropped_subscribers and logged
    event=feed_subscriber_dropped, as if a client had been."""
    broadcaster = Broadcaster(buffer=8, positions={0: 100})
    feed = FeedHandle(broadcaster, _BehindBridge(), "127.0.0.1:1")  # type: ignore[arg-type]
    sent: list[str] = []
    ended: list[object] = []

    async def send(text: str) -> None:
        sent.append(text)

    async def subscriber() -> None:
        ended.append(await serve(feed, {0: 0}, None, send))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        with trio.fail_after(30):
            while not broadcaster.subscribers:  # the hand-over attempt
                await trio.sleep(0.01)
        sub = next(iter(broadcaster.subscribers))
        for i in range(broadcaster.buffer + 1):
            broadcaster.publish(None, str(i))
        assert sub.lagged
        await trio.sleep(1.0)
        assert not ended  # still replaying with its own reader
        assert feed.statistics().dropped_subscribers == 0
        feed.close_all()
    assert ended == [Ended.CLOSED]


async def test_a_handed_over_subscriber_that_lags_is_dropped_and_counted(autojump_clock):
    """Once handed over, the subscription is its client's: cut off for lagging, it ends
    LAGGED and counts as a dropped subscriber (the attempt before it did not)."""
    broadcaster = Broadcaster(buffer=16, positions={0: 10})
    feed = FeedHandle(broadcaster, _AtEndBridge(10), "127.0.0.1:1")  # type: ignore[arg-type]
    closed: list[bool] = []
    ended: list[object] = []

    async def send(text: str) -> None:
        await trio.sleep_forever()  # a client whose window stays shut

    async def subscriber() -> None:
        ended.append(await serve(feed, {0: 10}, None, send,
                                 reader_closed=lambda: closed.append(True)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        with trio.fail_after(30):
            while not closed:  # handed over
                await trio.sleep(0.01)
        sub = next(iter(broadcaster.subscribers))
        i = 0
        while not sub.lagged:
            assert i < 1000, "never cut off for lagging"
            broadcaster.publish(None, str(i))
            i += 1
            await trio.sleep(0.001)
        await trio.sleep(feed.limits.stall_timeout + 1)
    assert ended == [Ended.LAGGED]
    assert feed.statistics().dropped_subscribers == 1


class _WakingReader:
    """The live feed's reader: paused at first; moving it to the end of the log waits
    until ``leader`` is set (a partition without a leader has no end offset while its
    broker is down, replication 1), then one change per fetch past that end."""

    def __init__(self) -> None:
        self.halted: dict[int, tuple[int, str]] = {}
        self.leader = trio.Event()
        self.end = 7

    async def pause(self) -> None:
        return None

    async def resume_at_end(self) -> dict[int, int]:
        await self.leader.wait()
        return {0: self.end, 1: 3}

    async def fetch(self, timeout_ms: int = 500) -> dict[int, list[Record]]:
        await trio.sleep(0.1)
        key = emails_in(0, 2, 1, "wake")[0]
        rec = Record(self.end, key.encode(),
                     orjson.dumps({"name": "A", "email": key}))
        self.end += 1
        return {0: [rec]}


class _WakingBridge:
    def __init__(self) -> None:
        self.reader = _WakingReader()

    @contextlib.asynccontextmanager
    async def open_reader(self, start: object, **_: object
                          ) -> AsyncIterator[tuple[_WakingReader, dict[int, int]]]:
        yield self.reader, {0: -1, 1: -1}


async def test_a_live_subscriber_waking_a_feed_without_every_end_gets_503(autojump_clock):
    """Regression: a live subscriber (no from=) that woke an idle feed while a partition
    had no leader had its websocket accepted and then waited with no hello for as long
    as the partition's broker was down. Now it is answered 503 feed_unavailable before
    the handshake after READER_START_TIMEOUT; once the partition's end is known, a new
    one gets its hello and then every change from there, none skipped."""
    bridge = _WakingBridge()
    async with trio.open_nursery() as nursery:
        feed = await nursery.start(functools.partial(
            feed_actor.run, bridge, buffer=16, url="127.0.0.1:1"))  # type: ignore[arg-type]
        sent: list[str] = []
        accepted = 0

        async def refused_send(text: str) -> None:
            sent.append(text)

        async def accept() -> None:
            nonlocal accepted
            accepted += 1

        with trio.fail_after(READER_START_TIMEOUT + 1):
            ended = await serve(feed, None, None, refused_send, accept=accept)
        assert isinstance(ended, Refused)
        assert (ended.status, ended.error, ended.retry_after) == (503, "feed_unavailable", 1)
        assert (sent, accepted) == ([], 0)
        assert feed.broadcaster.statistics().subscribers == 0

        bridge.reader.leader.set()  # the broker is back
        got: list[str] = []

        async def send(text: str) -> None:
            got.append(text)
            if len(got) == 4:
                feed.close_all()

        with trio.fail_after(READER_START_TIMEOUT):
            assert await serve(feed, None, None, send) is Ended.CLOSED
        nursery.cancel_scope.cancel()
    hello_msg = orjson.loads(got[0])
    assert hello_msg["type"] == "hello"
    first = hello_msg["positions"]["0"]
    assert [orjson.loads(t)["offset"] for t in got[1:]] == [first, first + 1, first + 2]


class _AheadReader:
    """A resumed feed's reader: partition 0 never reaches the broadcaster's position
    (its next fetch never comes), partition 1 is there already and READER_MAX_RECORDS
    new records of it come with every fetch after the first. ``peak``: the most decoded
    records handed out and not yet sent to the client, right after a fetch."""

    def __init__(self, closing: trio.Event) -> None:
        self.halted: dict[int, tuple[int, str]] = {}
        self.closing = closing
        self.key = emails_in(1, 2, 1, "ahead")[0]
        self.value = orjson.dumps({"name": "A", "email": self.key})
        self.next = 10
        self.fetches = 0
        self.handed = 0
        self.sent = 0
        self.peak = 0

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        await trio.sleep(timeout_ms / 1000)
        self.fetches += 1
        if self.fetches == 1 or self.fetches > 8:  # at the end, then stop the node
            if self.fetches > 8:
                self.closing.set()
            return Batch(0, {}, {0: 0, 1: self.next})
        records = [Record(o, self.key.encode(), self.value)
                   for o in range(self.next, self.next + READER_MAX_RECORDS)]
        self.next += READER_MAX_RECORDS
        self.handed += len(records)
        self.peak = max(self.peak, self.handed - self.sent)
        return Batch(0, {1: records}, {0: 0, 1: self.next})


async def test_a_hand_over_attempt_holds_at_most_two_fetches_of_records(autojump_clock):
    """Regression: a hand-over attempt kept the records its reader read past the
    broadcaster's positions until it had a broadcaster queue's worth (1024), plus the
    fetch that passed that: up to 1,523 decoded records, where README promised a
    resumed subscriber's reader holds 500. Now it holds them up to one fetch's worth:
    fewer than two fetches' records at any time."""
    feed = FeedHandle(Broadcaster(buffer=1024, positions={0: 5, 1: 10}), None,  # type: ignore[arg-type]
                      "127.0.0.1:1")
    reader = _AheadReader(feed.closing)

    async def send(text: str) -> None:
        if orjson.loads(text).get("type") != "halted":
            reader.sent += 1

    replay = _Replay(reader, {0: 0, 1: 10}, None, send,  # type: ignore[arg-type]
                     exact=False, closing=feed.closing)
    async with contextlib.AsyncExitStack() as live_scope:
        with trio.fail_after(60):
            assert await _replay_until_live(feed, replay, None, live_scope) is None
    assert reader.sent == reader.handed > 2 * READER_MAX_RECORDS  # the attempt ran on
    assert reader.peak < 2 * READER_MAX_RECORDS


class _TwoReaderBridge:
    """The live feed's reader waits for a leader to wake (_WakingReader); a resumed
    subscriber's own reader, already open, gets one new change of partition 0 per fetch
    from its 3rd fetch on (it is at the end of the log first, and tries to hand over)."""

    def __init__(self) -> None:
        self.live = _WakingReader()
        self.fetches = 0
        self.key = emails_in(0, 2, 1, "own")[0]

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        await trio.sleep(timeout_ms / 1000)
        self.fetches += 1
        if self.fetches < 3:
            return Batch(0, {}, {0: 0, 1: 0})
        rec = Record(self.fetches - 3, self.key.encode(),
                     orjson.dumps({"name": "A", "email": self.key}))
        return Batch(0, {0: [rec]}, {0: self.fetches - 2, 1: 0})

    @property
    def halted(self) -> dict[int, tuple[int, str]]:
        return {}

    @contextlib.asynccontextmanager
    async def open_reader(self, start: object, **_: object
                          ) -> AsyncIterator[tuple[object, dict[int, int]]]:
        if start == "paused":
            yield self.live, {0: -1, 1: -1}
        else:
            yield self, {0: 0, 1: 0}


async def test_a_resumed_subscriber_replays_on_while_the_live_feed_cannot_wake(
        autojump_clock):
    """Regression: a resumed subscriber at the end of the log hands over by subscribing
    to the broadcaster; an idle one (no live subscriber) must first get every
    partition's end offset, and while one partition had no leader the subscriber waited
    for it, sent none of the changes its own reader read of the other partitions."""
    bridge = _TwoReaderBridge()
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    async with trio.open_nursery() as nursery:
        feed = await nursery.start(functools.partial(
            feed_actor.run, bridge, buffer=16, url="127.0.0.1:1"))  # type: ignore[arg-type]
        nursery.start_soon(serve, feed, {0: 0, 1: 0}, None, send)
        with trio.fail_after(120):
            while len(sent) < 4:  # the hello, then changes its reader read
                await trio.sleep(0.5)
        feed.close_all()
        nursery.cancel_scope.cancel()
    assert orjson.loads(sent[0])["type"] == "hello"
    assert [orjson.loads(t)["offset"] for t in sent[1:4]] == [0, 1, 2]
