"""The feed broadcaster's fan-out (actors/feed.py FeedHandle), driven without Kafka:
bursts are paced to what subscribers drain; a subscriber that makes no room is cut off
after the grace period (or at once when its queue overflows), never the ones that read."""

from __future__ import annotations

import trio

from actors.feed import Broadcaster

BUFFER = 16


async def test_a_reading_subscriber_gets_a_burst_bigger_than_its_queue(autojump_clock):
    feed = Broadcaster(buffer=BUFFER)
    got: list[str] = []
    async with feed.subscribe() as (messages, sub, _):
        async def read() -> None:
            async for text in messages:
                got.append(text)
                await trio.sleep(0.01)  # slow-ish, but reading

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for i in range(10 * BUFFER):
                if i % (BUFFER // 4) == 0:
                    await feed.wait_room(BUFFER // 4, grace=2.0)
                feed.publish(None, str(i))
            feed.close_all()
        assert not sub.lagged
    assert got == [str(i) for i in range(10 * BUFFER)]
    assert feed.statistics().dropped_subscribers == 0


async def test_a_stopped_subscriber_is_cut_off_after_the_grace(autojump_clock):
    feed = Broadcaster(buffer=BUFFER)
    async with feed.subscribe() as (stopped, slow, _), feed.subscribe() as (messages, fast, _):
        got: list[str] = []

        async def read() -> None:
            async for text in messages:
                got.append(text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            start = trio.current_time()
            for i in range(4 * BUFFER):
                if i % 4 == 0:
                    await feed.wait_room(4, grace=2.0)
                feed.publish(None, str(i))
            waited = trio.current_time() - start
            feed.close_all()
        assert slow.lagged
        assert not fast.lagged
        assert got == [str(i) for i in range(4 * BUFFER)]
        assert 2.0 <= waited < 3.0  # one grace period, then on without the stopped one
        left = [text async for text in stopped]
        assert left == [str(i) for i in range(len(left))]  # a prefix, then the end
        assert 0 < len(left) <= BUFFER
    assert feed.statistics().dropped_subscribers == 1


async def test_a_full_queue_is_cut_off_at_once():
    feed = Broadcaster(buffer=BUFFER)
    async with feed.subscribe() as (stopped, sub, _):
        for i in range(BUFFER + 1):
            feed.publish(None, str(i))
        assert sub.lagged
        assert [text async for text in stopped] == [str(i) for i in range(BUFFER)]


async def test_a_key_filter_delivers_only_that_key():
    feed = Broadcaster(buffer=BUFFER)
    async with feed.subscribe(b"a@x.y") as (only, _, _):
        feed.publish(b"b@x.y", "b1")
        feed.publish(b"a@x.y", "a1")
        feed.publish(b"b@x.y", "b2")
        feed.close_all()
        assert [text async for text in only] == ["a1"]
