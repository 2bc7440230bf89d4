"""One feed subscriber, live or resumed, from its first message to its end.

- live (no start): the shared broadcaster's changes from now on (bounded; a subscriber
  that lags is cut off, ``LAGGED``, and reconnects with ``from``). It subscribes before
  ``accept``: one that wakes the idle broadcaster, which then needs every partition's
  end offset, and does not get them within ``READER_START_TIMEOUT`` is :class:`Refused`
  (503 ``feed_unavailable``), never sent a hello without every partition's position;
- resumed (``start``: partition -> next offset, or every partition from the
  beginning): a Kafka reader of its own replays from there; once that reader is at the
  end of the log it subscribes to the broadcaster, reads up to the broadcaster's
  positions, and hands over (its reader is closed: a resumed subscriber then costs
  what a live one does). If the hand-over cannot complete (the reader does not reach
  those positions within ``HANDOFF_WAIT``, or the subscription lags meanwhile, or an idle
  broadcaster is not at every partition's end within ``HANDOFF_WAIT``) it goes
  on with its own reader and tries again after ``HANDOFF_RETRY``. No change is sent
  twice or skipped either way. A partition its reader stopped at a batch it cannot
  decode (the subscriber was sent ``{"type":"halted"}``) can never reach the
  broadcaster's position if the broadcaster read past that batch (it woke after it):
  it takes no part in the hand-over, and nothing more of it is sent, as the notice said.
  Without this the subscriber kept its reader and its ``feed_max_resumed`` slot for as
  long as it stayed connected. The other way round, a replay that started past the
  batch where the broadcaster halted hands over ahead of it, and is sent the
  broadcaster's notice at the first offset it has not seen.

The first message is ``{"type":"hello","node":url,"positions":{p: next offset}}``. The
caller (the websocket route) passes ``accept`` and ``send``; this module owns every reader
and subscription. A resumed subscription opens its reader before ``accept``: one it
cannot start (an offset past its partition's end) is :class:`Refused`, the websocket never
accepted, as is one whose reader cannot reach Kafka or has not every partition's
offsets within ``READER_START_TIMEOUT`` (503 ``feed_unavailable``). An offset
below its partition's first (records deleted) starts at the first, and the hello says so.
Nothing here waits on ``send`` itself: messages go through the subscriber's outbox
(actors/feed_outbox.py), and a subscriber that takes nothing for ``stall_timeout``
seconds is cut off (``STALLED``), live or resumed, its reader closed at once.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import trio

from actors.feed import FeedHandle, Subscriber, halted_notice, hello
from actors.feed_outbox import Stalled, open_outbox
from actors.feed_rule import FeedRule, change_position
from kstate.bridge import BEGINNING, BrokerUnavailable, KafkaNotAuthorized, OffsetPastEnd, Reader
from kstate.core.messages import Batch, Record

log = logging.getLogger(__name__)

HANDOFF_WAIT = 5.0  # seconds a resumed feed may take to reach the broadcaster's positions
HANDOFF_RETRY = 10.0  # seconds before a resumed feed that could not hand over tries again
# What a resumed feed's own reader may hold unread: aiokafka keeps one fetched answer per
# partition until it is read (READER_FETCH_BYTES each, or a first record batch larger
# than that whole) and decodes up to READER_MAX_RECORDS records per fetch. A subscriber
# that reads nothing is cut off only after feed_stall_timeout; with aiokafka's defaults
# (1 MiB per partition, max_batch records) each of feed_max_resumed such subscribers
# made its node hold ~12 MB (100k users, 10 partitions), ~400 MB for 32 of them, kept by
# the allocator after they left (tests/integration/test_node_resources.py). A websocket
# client takes far less than this between two fetches anyway.
READER_FETCH_BYTES = 64 * 1024
READER_MAX_RECORDS = 500
# Seconds a resumed feed's reader may take to open (every partition's offsets), or an
# idle live feed to move to every partition's end for a live subscriber, before the
# subscriber is answered 503 feed_unavailable. Kafka answers in well under a second;
# a partition without a leader (its broker down, replication 1) never answers until the
# broker is back, and the handshake waited unanswered, holding a feed_max_resumed slot,
# all that time.
READER_START_TIMEOUT = 10.0

Send = Callable[[str], Awaitable[None]]
# Where a subscription starts: None (live), FROM_BEGINNING, or partition -> next offset.
FROM_BEGINNING = "beginning"
Start = dict[int, int] | str | None


class Ended(enum.Enum):
    """How a subscription ended."""
    CLOSED = "closed"  # the node stops
    LAGGED = "lagged"  # cut off for lagging: the client should resume with from=
    STALLED = "stalled"  # cut off for taking nothing: the client should resume with from=
    # its own reader failed mid-replay (Kafka refused it: an ACL revoked): the client
    # should resume with from=, on another node if this one stops
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Refused:
    """A subscription that could not start, before ``accept``: what to answer instead
    (an HTTP error)."""
    status: int
    error: str
    message: str
    retry_after: float | None = None


def past_end(exc: OffsetPastEnd) -> Refused:
    """``from=p:o`` with o + 1 past partition p's end: the client cannot have seen o."""
    p, end = exc.partition, exc.end
    return Refused(400, "invalid_from",
                   f"from={p}:{exc.offset - 1} is past the end of partition {p}: its next "
                   f"offset is {end} (resume with from={p}:{end - 1} at most)")


UNREACHABLE = Refused(503, "feed_unavailable", "this node cannot reach Kafka to replay "
                      "from=; retry later or on another node", retry_after=1)
LIVE_UNREACHABLE = Refused(503, "feed_unavailable", "this node's live feed cannot get "
                           "every partition's end offset from Kafka (a partition without "
                           "a leader?); retry later or on another node", retry_after=1)


def _nothing() -> None:
    return None


async def _accepted() -> None:
    return None


async def serve(feed: FeedHandle, start: Start, key: bytes | None, send: Send, *,
                accept: Callable[[], Awaitable[None]] = _accepted,
                reader_closed: Callable[[], None] = _nothing) -> Ended | Refused:
    """Call ``accept``, send ``hello`` and then every change (of ``key`` only, if given)
    to ``send`` until the node stops or the subscriber lags or stalls; or, before
    ``accept``, return Refused if a resumed subscription cannot start. ``reader_closed``
    is called (perhaps twice: it must be idempotent) once a resumed subscriber's own
    reader is closed, at hand-over or at the end."""
    if feed.closing.is_set():
        await accept()
        return Ended.CLOSED  # the node is stopping: subscribe elsewhere
    async with open_outbox(send, stall_timeout=feed.limits.stall_timeout) as put:
        try:
            if start is None:
                async with contextlib.AsyncExitStack() as live:
                    subscribed = None
                    # An idle broadcaster must first learn every partition's end for the
                    # hello's positions; one without a leader has none while its broker
                    # is down. Subscribed before the handshake, so that a feed that cannot
                    # wake in time is refused 503 instead of accepting the websocket and
                    # sending no hello for as long as that lasts. Never a hello without
                    # that partition's position: the client would not know where its
                    # changes start, and a later one could skip changes written meanwhile.
                    with trio.move_on_after(READER_START_TIMEOUT):
                        subscribed = await live.enter_async_context(
                            feed.broadcaster.subscribe(key))
                    if subscribed is None:
                        log.warning("event=feed_wake_unavailable error='no end offsets "
                                    "within %ss'", READER_START_TIMEOUT)
                        return LIVE_UNREACHABLE
                    messages, sub, positions = subscribed
                    await accept()
                    await put(hello(positions, feed.url))
                    return await _forward_live(messages, sub, {}, put)
            wanted: dict[int, int | None] | str = (
                BEGINNING if start == FROM_BEGINNING
                else dict(start) if isinstance(start, dict) else {})
            try:
                return await _resume(feed, wanted, key, accept, put, reader_closed)
            finally:
                reader_closed()
        except Stalled:
            feed.limits.stalled += 1
            return Ended.STALLED


async def _forward_live(messages: trio.MemoryReceiveChannel[str], sub: Subscriber,
                        sent: dict[int, int], send: Send,
                        stopped: frozenset[int] = frozenset()) -> Ended:
    """Send the broadcaster's changes until it ends the subscription. ``sent``:
    partition -> next offset a replay already sent (it ran ahead of the broadcaster);
    older changes of those partitions are not sent again. ``stopped``: partitions the
    replay halted (the client was told no change of them follows): nothing of them is
    sent."""
    async for text in messages:
        if sent or stopped:
            where = change_position(text)
            notice = None
            if where is None:  # a halted notice: small, and flat
                notice = orjson.loads(text)
                where = int(notice["partition"]), int(notice["offset"])
            pid, offset = where
            if pid in stopped:
                continue
            floor = sent.get(pid)
            if floor is not None and notice is not None and offset < floor:
                # The broadcaster stopped below what the replay sent (the replay started
                # past the batch it cannot decode): no change of pid follows, from the
                # first offset the client has not seen. Dropped as already sent, the
                # client waited for that partition's changes in silence.
                del sent[pid]
                text = halted_notice(pid, floor, str(notice["reason"]))
            elif floor is not None:
                if offset >= floor - 1:
                    del sent[pid]  # every later change of pid is new to the client
                if offset < floor:
                    continue
        try:
            await send(text)
        except Stalled:
            if sub.lagged:  # cut off (and counted) for lagging while it waited for room
                return Ended.LAGGED
            raise
    return Ended.LAGGED if sub.lagged else Ended.CLOSED


class _Replay:
    """A resumed feed's own reader: sends records, tracks the next offset per partition."""

    def __init__(self, reader: Reader, positions: dict[int, int], key: bytes | None,
                 send: Send, *, exact: bool, closing: trio.Event) -> None:
        self.reader = reader
        self.closing = closing  # the node is stopping: stop replaying
        self.next = dict(positions)
        self.key = key
        self._send = send
        # the rule as this reader sees it (every record passes, whatever the key filter);
        # exact when it reads from the beginning (actors/feed_rule.py)
        self.rule = FeedRule(len(positions), exact=exact)
        self.halted: set[int] = set()

    async def send(self, pid: int, rec: Record) -> None:
        self.next[pid] = rec.offset + 1
        change = self.rule.change(pid, rec)
        if change is not None and (self.key is None or rec.key == self.key):
            await self._send(change)

    async def fetch(self, timeout_ms: int) -> Batch:
        """One fetch of the reader (its records, and the positions it reached); a
        partition it stops at a batch it cannot decode is announced once
        (actors/feed.py, halted_notice)."""
        batch = await self.reader.fetch_batch(timeout_ms)
        for pid, (offset, why) in sorted(self.reader.halted.items()):
            if pid not in self.halted:
                self.halted.add(pid)
                await self._send(halted_notice(pid, offset, why))
        return batch

    def passed(self, positions: dict[int, int], held: set[int]) -> None:
        """The reader's ``positions`` after a fetch whose records were all sent, but
        those of the partitions in ``held``: no record below them is left to send, so
        ``next`` moves up to them. A position can be past the last record handed over:
        a transaction's marker (a control batch) or an aborted transaction of another
        producer, or records compaction removed, follow it. Without this ``next`` would
        stay below the broadcaster's position there, and the hand-over never come."""
        for pid, position in positions.items():
            if pid not in held and position > self.next.get(pid, position):
                self.next[pid] = position

    async def step(self, timeout_ms: int) -> bool:
        """Send one fetch's records; whether there were any."""
        batch = await self.fetch(timeout_ms)
        for pid, records in batch.records.items():
            for rec in records:
                await self.send(pid, rec)
        self.passed(batch.positions, set())
        return any(batch.records.values())

    async def reach(self, live: dict[int, int], sub: Subscriber, limit: int
                    ) -> list[tuple[int, Record]] | None:
        """Send every record below the broadcaster's ``live`` positions. None when done
        (the broadcaster has the rest); otherwise the records read at or past them,
        which the caller must send itself (not reached in time, or ``sub`` lagged)."""
        held: list[tuple[int, Record]] = []
        # a partition this reader halted yields nothing more: it is done where it stopped
        done = {p for p, o in self.next.items() if o >= live.get(p, 0)} | self.halted
        with trio.move_on_after(HANDOFF_WAIT):
            while (len(done) < len(self.next) and not sub.lagged and len(held) < limit
                   and not self.closing.is_set()):
                batch = await self.fetch(200)
                for pid, records in batch.records.items():
                    for rec in records:
                        if pid in done or rec.offset >= live.get(pid, 0):
                            done.add(pid)
                            held.append((pid, rec))
                            continue
                        await self.send(pid, rec)
                        if self.next[pid] >= live.get(pid, 0):
                            done.add(pid)
                self.passed(batch.positions, done)  # a done one's later records are held
                done |= {p for p, o in self.next.items() if o >= live.get(p, 0)}
                done |= self.halted
        if len(done) == len(self.next) and not sub.lagged:
            return None
        return held


async def _resume(feed: FeedHandle, wanted: dict[int, int | None] | str, key: bytes | None,
                  accept: Callable[[], Awaitable[None]], send: Send,
                  reader_closed: Callable[[], None]) -> Ended | Refused:
    async with contextlib.AsyncExitStack() as live_scope:
        live: tuple[trio.MemoryReceiveChannel[str], Subscriber, dict[int, int]] | None = None
        async with contextlib.AsyncExitStack() as reading:
            opened = None
            try:
                with trio.move_on_after(READER_START_TIMEOUT):
                    opened = await reading.enter_async_context(feed.bridge.open_reader(
                        wanted, fetch_bytes=READER_FETCH_BYTES,
                        max_records=READER_MAX_RECORDS))
            except OffsetPastEnd as exc:
                return past_end(exc)
            except (BrokerUnavailable, KafkaNotAuthorized) as exc:
                log.warning("event=feed_resume_unavailable error=%r", exc)
                return UNREACHABLE
            if opened is None:
                log.warning("event=feed_resume_unavailable error='no offsets within %ss'",
                            READER_START_TIMEOUT)
                return UNREACHABLE
            reader, positions = opened
            await accept()
            await send(hello(positions, feed.url))
            replay = _Replay(reader, positions, key, send, exact=wanted == BEGINNING,
                             closing=feed.closing)
            try:
                live = await _replay_until_live(feed, replay, key, live_scope)
            except (BrokerUnavailable, KafkaNotAuthorized) as exc:
                # What was sent stands (the client resumes after it); escaping, the
                # error was a traceback of the websocket route and a close that said
                # nothing of what to do.
                log.warning("event=feed_resume_failed error=%r", str(exc))
                return Ended.UNAVAILABLE
            if live is None:
                return Ended.CLOSED
        # the reader is closed; the broadcaster sends the rest
        reader_closed()
        messages, sub, at = live
        stopped = frozenset(replay.halted)
        ahead = {p: o for p, o in replay.next.items()
                 if o > at.get(p, 0) and p not in stopped}
        return await _forward_live(messages, sub, ahead, send, stopped)


async def _replay_until_live(feed: FeedHandle, replay: _Replay, key: bytes | None,
                             live_scope: contextlib.AsyncExitStack
                             ) -> tuple[trio.MemoryReceiveChannel[str], Subscriber,
                                        dict[int, int]] | None:
    """Send what the reader reads until the hand-over to the broadcaster succeeds (its
    subscription then lives in ``live_scope``); None if the node is stopping."""
    next_try = 0.0
    while True:
        if feed.closing.is_set():
            return None
        if await replay.step(500) or trio.current_time() < next_try:
            continue
        # at the end of the log for now: hand over to the broadcaster
        async with contextlib.AsyncExitStack() as attempt:
            subscribed = None
            # An idle broadcaster first moves to every partition's end, which waits for
            # a partition without a leader as long as its broker is down; meanwhile this
            # subscriber's own reader would send nothing of the other partitions. Not
            # woken within HANDOFF_WAIT, the attempt fails like one that cannot reach.
            with trio.move_on_after(HANDOFF_WAIT):
                subscribed = await attempt.enter_async_context(
                    feed.broadcaster.subscribe(key, trial=True))
            if subscribed is None:
                next_try = trio.current_time() + HANDOFF_RETRY
                continue
            messages, sub, at = subscribed
            # Records read past the broadcaster's positions are held until the attempt
            # ends: at most one fetch's worth before the next fetch, so the reader holds
            # fewer than 2 x READER_MAX_RECORDS decoded records (README). Bounded by the
            # broadcaster's queue (1024) it held up to 1,523.
            held = await replay.reach(at, sub, READER_MAX_RECORDS)
            if held is None:
                sub.trial = False  # its client's subscription now: a cut ends it
                await live_scope.enter_async_context(attempt.pop_all())
                return messages, sub, at
        next_try = trio.current_time() + HANDOFF_RETRY
        for pid, rec in held:
            await replay.send(pid, rec)
