"""The change feed: websocket ``/changes[?from=...][&key=E]``.

- no ``from``: live from now on (shared broadcaster, bounded; a lagging subscriber is
  closed with code 4001 and reconnects with ``from``);
- ``from=p:offset,...``: resume after those offsets (partitions not listed: live);
- ``from=beginning``: the whole compacted topic, then live.

A resumed feed replays through a Kafka reader of its own; once that reader is at the end
of the log it subscribes to the shared broadcaster, reads up to the broadcaster's
positions, and hands over (its reader is closed: a resumed subscriber then costs what a
live one does). If the hand-over cannot complete (the reader does not reach those
positions within ``HANDOFF_WAIT``, or the subscription lags meanwhile) it goes on with
its own reader and tries again after ``HANDOFF_RETRY``. No change is sent twice or
skipped either way.

The first message is ``{"type":"hello","positions":{p: next offset}}``; every other is
``{"key","value","partition","offset"}``.
"""

from __future__ import annotations

import contextlib

import orjson
import trio
from quart import Response, websocket
from quart_trio import QuartTrio

from actors.feed import FeedHandle, Subscriber, encode_change, hello
from actors.kafka import Reader
from actors.messages import Record
from web.app import Handles
from web.errors import BadRequest, error
from web.validate import parse_email

LAGGING_CLOSE = 4001
LAGGING_REASON = "lagging: reconnect with from=<offsets>"
HANDOFF_WAIT = 5.0  # seconds a resumed feed may take to reach the broadcaster's positions
HANDOFF_RETRY = 10.0  # seconds before a resumed feed that could not hand over tries again


def parse_from(raw: str | None) -> dict[int, int | None] | None:
    """None (live), {} with every partition None (beginning), or p -> next offset."""
    if raw is None or raw == "":
        return None
    if raw == "beginning":
        return {-1: None}
    out: dict[int, int | None] = {}
    for part in raw.split(","):
        p, sep, o = part.partition(":")
        if not sep or not p.strip().isdigit() or not o.strip().lstrip("-").isdigit():
            raise BadRequest(400, "invalid_from",
                             "from must be 'beginning' or p:offset[,p:offset...]")
        out[int(p)] = max(0, int(o) + 1)
    return out


async def _forward_live(messages: trio.MemoryReceiveChannel[str], sub: Subscriber,
                        sent: dict[int, int]) -> None:
    """Send the broadcaster's changes until it ends the subscription (4001 if lagging).
    ``sent``: partition -> next offset a replay already sent (it ran ahead of the
    broadcaster); older changes of those partitions are not sent again."""
    async for text in messages:
        if sent:
            doc = orjson.loads(text)
            pid, offset = int(doc["partition"]), int(doc["offset"])
            floor = sent.get(pid)
            if floor is not None:
                if offset >= floor - 1:
                    del sent[pid]  # every later change of pid is new to the client
                if offset < floor:
                    continue
        await websocket.send(text)
    if sub.lagged:
        await websocket.close(LAGGING_CLOSE, LAGGING_REASON)


class _Replay:
    """A resumed feed's own reader: sends records, tracks the next offset per partition."""

    def __init__(self, reader: Reader, positions: dict[int, int], key: bytes | None) -> None:
        self.reader = reader
        self.next = dict(positions)
        self.key = key

    async def send(self, pid: int, rec: Record) -> None:
        self.next[pid] = rec.offset + 1
        if self.key is not None and rec.key != self.key:
            return
        change = encode_change(pid, rec)
        if change is not None:
            await websocket.send(change)

    async def step(self, timeout_ms: int) -> bool:
        """Send one fetch's records; whether there were any."""
        got = await self.reader.fetch(timeout_ms)
        for pid, records in got.items():
            for rec in records:
                await self.send(pid, rec)
        return any(got.values())

    async def reach(self, live: dict[int, int], sub: Subscriber, limit: int
                    ) -> list[tuple[int, Record]] | None:
        """Send every record below the broadcaster's ``live`` positions. None when done
        (the broadcaster has the rest); otherwise the records read at or past them,
        which the caller must send itself (not reached in time, or ``sub`` lagged)."""
        held: list[tuple[int, Record]] = []
        done = {p for p, o in self.next.items() if o >= live.get(p, 0)}
        with trio.move_on_after(HANDOFF_WAIT):
            while len(done) < len(self.next) and not sub.lagged and len(held) < limit:
                got = await self.reader.fetch(200)
                for pid, records in got.items():
                    for rec in records:
                        if pid in done or rec.offset >= live.get(pid, 0):
                            done.add(pid)
                            held.append((pid, rec))
                            continue
                        await self.send(pid, rec)
                        if self.next[pid] >= live.get(pid, 0):
                            done.add(pid)
        if len(done) == len(self.next) and not sub.lagged:
            return None
        return held


async def _resume(h: Handles, feed: FeedHandle, wanted: dict[int, int | None],
                  key: bytes | None) -> None:
    assert h.bridge is not None
    with contextlib.ExitStack() as live_scope:
        live: tuple[trio.MemoryReceiveChannel[str], Subscriber, dict[int, int]] | None = None
        async with h.bridge.open_reader(wanted) as (reader, positions):
            await websocket.send(hello(positions, h.router.url))
            replay = _Replay(reader, positions, key)
            next_try = 0.0
            while live is None:
                if await replay.step(500) or trio.current_time() < next_try:
                    continue
                # at the end of the log for now: hand over to the broadcaster
                attempt = contextlib.ExitStack()
                messages, sub, at = attempt.enter_context(feed.subscribe(key))
                held = await replay.reach(at, sub, feed.buffer)
                if held is None:
                    live = (messages, sub, at)
                    live_scope.enter_context(attempt.pop_all())
                    break
                attempt.close()
                next_try = trio.current_time() + HANDOFF_RETRY
                for pid, rec in held:
                    await replay.send(pid, rec)
        # the reader is closed; the broadcaster sends the rest
        assert live is not None
        messages, sub, at = live
        ahead = {p: o for p, o in replay.next.items() if o > at.get(p, 0)}
        await _forward_live(messages, sub, ahead)


def register(app: QuartTrio, h: Handles) -> None:
    @app.websocket("/changes")
    async def changes() -> Response | None:
        try:
            start = parse_from(websocket.args.get("from"))
            raw_key = websocket.args.get("key")
            key = None if raw_key is None else parse_email(raw_key, "key").encode()
        except BadRequest as exc:
            return error(exc.status, exc.code, exc.message)
        feed = h.feed
        if feed is None or h.bridge is None:
            return error(503, "feed_unavailable", "the change feed is not running", retry_after=1)
        await websocket.accept()
        if start is None:
            with feed.subscribe(key) as (messages, sub, positions):
                await websocket.send(hello(positions, h.router.url))
                await _forward_live(messages, sub, {})
            return None
        wanted: dict[int, int | None] = (
            dict.fromkeys(range(h.router.num_partitions)) if -1 in start else start)
        await _resume(h, feed, wanted, key)
        return None
