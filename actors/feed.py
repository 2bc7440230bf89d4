"""Feed broadcaster: every change of the topic, to every websocket subscriber.

One group-less reader per node follows all partitions from the end (live) and fans
each change out through bounded per-subscriber channels. It reads only while someone
subscribes: with no subscriber it pauses (reading the whole topic costs every node CPU
on every write: a third of a write's cost on one node), and the next subscriber wakes it
at the end of the log, which is where a live subscription starts anyway. Bursts are
published in chunks, each waiting for room in every queue, so a subscriber that keeps up
is never cut off by a big fetch. A subscriber whose queue is full, or has had no room
for the next chunk for ``LAG_GRACE`` seconds, is cut off (``lagged``) instead of slowing
the node or the others any longer; it reconnects with ``from=`` and a reader of its own
replays from its offsets.

What is streamed follows the record rule (actors/feed_rule.py): upserts and deletes,
nothing for records that change no state. A partition whose next batch the reader cannot
decode stops there (logged, counted, and a ``{"type":"halted"}`` notice to subscribers);
the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import trio

from actors.feed_limits import FeedLimits
from actors.feed_rule import FeedRule
from kstate.bridge import PAUSED, KafkaBridge

log = logging.getLogger(__name__)

# Seconds a subscriber may lack room for the next changes before it is cut off: the
# most one stalled subscriber can delay the others, once. 0.5 s cut off subscribers that
# were reading as fast as they were scheduled on a loaded 2-core machine.
LAG_GRACE = 2.0
ROOM_POLL = 0.005  # seconds between looks at the subscribers' queues while waiting for room


def hello(positions: dict[int, int], node: str) -> str:
    """First message of every subscription: where each partition starts (next offset)."""
    return orjson.dumps({"type": "hello", "node": node,
                         "positions": {str(p): o for p, o in sorted(positions.items())}}
                        ).decode()


def halted_notice(partition: int, offset: int, why: str) -> str:
    """Sent to every subscriber when the feed stops ``partition`` at a batch it cannot
    decode (and, right after the hello, to every later one): no change of that partition
    at or past ``offset`` follows."""
    return orjson.dumps({"type": "halted", "partition": partition, "offset": offset,
                         "reason": why}).decode()


@dataclass(frozen=True, slots=True)
class FeedStats:
    """The feed's numbers (/readyz, /metrics)."""
    subscribers: int
    published: int
    delivered: int
    dropped_subscribers: int
    invalid: int  # records kstate cannot use (as the owner counts them): streamed as
    # deletes of their key, if they have one a user could have (a marker's is not)
    skipped: int  # records that change nothing (markers, ignored records): not streamed
    halted: dict[int, str]  # partitions stopped at a batch the feed cannot decode


@dataclass(eq=False)
class Subscriber:
    """One live subscription: its queue, its key filter, whether it was cut off, and
    where it starts (None until the broadcaster, perhaps waking, says). ``trial``: a
    resumed subscriber's hand-over attempt (actors/feed_resume.py), whose client is not
    cut off with it: it goes on with its own reader."""
    send: trio.MemorySendChannel[str]
    key: bytes | None
    lagged: bool = False
    start: dict[int, int] | None = None
    trial: bool = False


@dataclass
class Broadcaster:
    """The fan-out's shared state: subscribers, positions, counters."""

    buffer: int
    positions: dict[int, int] = field(default_factory=dict)
    subscribers: set[Subscriber] = field(default_factory=set)
    published: int = 0
    delivered: int = 0
    dropped: int = 0
    rule: FeedRule = field(default_factory=lambda: FeedRule(1))  # run() sets the real one
    halted: dict[int, tuple[int, str]] = field(default_factory=dict)
    # Paused for want of subscribers (run() sets it): the next one sets ``wanted`` and
    # waits for ``awake``, when run() has moved the reader to the end of the log.
    idle: bool = False
    wanted: trio.Event = field(default_factory=trio.Event)
    awake: trio.Event = field(default_factory=trio.Event)

    @contextlib.asynccontextmanager
    async def subscribe(self, key: bytes | None = None, *, trial: bool = False
                        ) -> AsyncIterator[tuple[trio.MemoryReceiveChannel[str], Subscriber,
                                                 dict[int, int]]]:
        """A live subscription from now on: (messages, subscriber, start positions).
        The messages channel ends when the node stops or the subscriber lags.
        ``trial``: see :class:`Subscriber`."""
        send, recv = trio.open_memory_channel[str](self.buffer)
        sub = Subscriber(send, key, trial=trial)
        for pid, (offset, why) in sorted(self.halted.items())[:self.buffer // 2]:
            send.send_nowait(halted_notice(pid, offset, why))  # queued after the hello
        self.subscribers.add(sub)
        try:
            with recv:
                if self.idle:
                    self.wanted.set()
                    await self.awake.wait()  # run() set sub.start
                else:
                    sub.start = dict(self.positions)
                assert sub.start is not None
                yield recv, sub, sub.start
        finally:
            self.subscribers.discard(sub)
            send.close()

    def woke(self, positions: dict[int, int]) -> None:
        """run() moved the reader to ``positions`` (the end of the log): every waiting
        subscriber starts there."""
        self.positions = dict(positions)
        for sub in self.subscribers:
            if sub.start is None:
                sub.start = dict(positions)
        self.idle = False
        self.awake.set()
        self.wanted, self.awake = trio.Event(), trio.Event()

    def publish(self, key: bytes | None, text: str, *, everyone: bool = False) -> None:
        """Queue ``text`` to every subscriber of ``key`` (``everyone``: to all)."""
        self.published += 1
        for sub in list(self.subscribers):
            if not everyone and sub.key is not None and sub.key != key:
                continue
            try:
                sub.send.send_nowait(text)
                self.delivered += 1
            except trio.WouldBlock:
                self._cut(sub)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.subscribers.discard(sub)

    def _cut(self, sub: Subscriber) -> None:
        sub.lagged = True
        self.subscribers.discard(sub)
        sub.send.close()
        if sub.trial:  # no client cut off: it tries again later (actors/feed_resume.py)
            log.info("event=feed_handover_lagged buffer=%d", self.buffer)
            return
        self.dropped += 1
        log.warning("event=feed_subscriber_dropped reason=lagging buffer=%d", self.buffer)

    def _short_of_room(self, n: int) -> list[Subscriber]:
        """The subscribers with fewer than ``n`` free slots in their queue."""
        limit = self.buffer - n
        return [sub for sub in self.subscribers
                if sub.send.statistics().current_buffer_used > limit]

    async def wait_room(self, n: int, grace: float) -> None:
        """Wait until every subscriber has room for ``n`` more changes; after ``grace``
        seconds, cut off those that still have not. A burst (one fetch can return
        thousands of records) is thus paced to what the subscribers drain, instead of
        cutting off the ones that keep up."""
        with trio.move_on_after(grace):
            while True:  # polled: the queues' readers are websocket handlers, not ours
                if not self._short_of_room(n):
                    return
                await trio.sleep(ROOM_POLL)
        for sub in self._short_of_room(n):
            self._cut(sub)

    def close_all(self) -> None:
        """End every live subscription (the node is stopping)."""
        for sub in list(self.subscribers):
            sub.send.close()
        self.subscribers.clear()

    def statistics(self) -> FeedStats:
        return FeedStats(subscribers=len(self.subscribers), published=self.published,
                         delivered=self.delivered, dropped_subscribers=self.dropped,
                         invalid=self.rule.unusable, skipped=self.rule.skipped,
                         halted={p: f"offset {o}: {why}"
                                 for p, (o, why) in sorted(self.halted.items())})

    def halt(self, halted: dict[int, tuple[int, str]]) -> None:
        """Partitions the feed's reader stopped at a batch it cannot decode: log each once
        and tell every subscriber."""
        for pid, (offset, why) in sorted(halted.items()):
            if pid in self.halted:
                continue
            self.halted[pid] = (offset, why)
            log.error("event=feed_partition_halted partition=%d offset=%d reason=%r",
                      pid, offset, why)
            self.publish(None, halted_notice(pid, offset, why), everyone=True)


@dataclass(frozen=True, slots=True)
class FeedHandle:
    """The feed as the HTTP layer sees it: the broadcaster, what resumed
    subscriptions need (actors/feed_resume.py): the bridge for their own readers and
    this node's url for their hello, and the bounds on subscribers
    (actors/feed_limits.py)."""

    broadcaster: Broadcaster
    bridge: KafkaBridge
    url: str
    limits: FeedLimits = field(default_factory=FeedLimits)
    closing: trio.Event = field(default_factory=trio.Event)  # set by close_all

    def statistics(self) -> FeedStats:
        """The broadcaster's numbers; ``dropped_subscribers`` counts every subscriber
        cut off, for lagging or for taking nothing (the latter: ``limits``)."""
        st = self.broadcaster.statistics()
        return dataclasses.replace(
            st, dropped_subscribers=st.dropped_subscribers + self.limits.stalled)

    def close_all(self) -> None:
        """End every subscription (the node is stopping): live ones at once, resumed ones
        still replaying with their own reader within one fetch (actors/feed_resume.py)."""
        self.closing.set()
        self.broadcaster.close_all()


async def run(bridge: KafkaBridge, *, buffer: int, url: str, limits: FeedLimits | None = None,
              task_status: trio.TaskStatus[FeedHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Follow the topic from its end forever (until cancelled); closes every
    subscriber's channel on the way out. ``limits``: the bounds on subscribers
    (defaults if None)."""
    handle = Broadcaster(buffer=buffer)
    chunk = max(1, buffer // 4)  # changes published between looks at the queues' room
    # The reader opens paused, asking Kafka for no offset: at the end of the log it
    # would wait for every partition's end, for good while one has no leader (its
    # broker down), and the node with it. The first subscriber moves it to the end.
    async with bridge.open_reader(PAUSED) as (reader, positions):
        handle.rule = FeedRule(len(positions))  # the reader reads every partition
        handle.idle = True
        task_status.started(FeedHandle(handle, bridge, url, limits or FeedLimits()))
        try:
            while True:
                if not handle.subscribers:
                    handle.idle = True
                    await reader.pause()
                if handle.idle:  # a subscriber that came meanwhile has set `wanted`
                    await handle.wanted.wait()
                    handle.woke(await reader.resume_at_end())
                got = await reader.fetch(500)
                seen = 0
                for pid, records in got.items():
                    for rec in records:
                        if seen % chunk == 0:
                            await handle.wait_room(chunk, LAG_GRACE)
                        seen += 1
                        # positions and publish move together: a subscriber that joins
                        # while we wait for room starts exactly at the next record
                        text = handle.rule.change(pid, rec)
                        handle.positions[pid] = rec.offset + 1
                        if text is not None:
                            handle.publish(rec.key, text)
                if len(reader.halted) > len(handle.halted):
                    handle.halt(reader.halted)
        finally:
            handle.close_all()
