"""The change feed: websocket ``/changes[?from=...][&key=E]``.

- no ``from``: live from now on (shared broadcaster, bounded; a lagging subscriber is
  closed with code 4001 and reconnects with ``from``);
- ``from=p:offset,...``: resume after those offsets (partitions not listed: live);
- ``from=beginning``: the whole compacted topic, then live.

The first message is ``{"type":"hello","positions":{p: next offset}}``; every other is
``{"key","value","partition","offset"}``.
"""

from __future__ import annotations

from quart import Response, websocket
from quart_trio import QuartTrio

from actors.feed import encode_change, hello
from web.app import Handles
from web.errors import BadRequest, error
from web.validate import parse_email

LAGGING_CLOSE = 4001


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
                async for text in messages:
                    await websocket.send(text)
                if sub.lagged:
                    await websocket.close(LAGGING_CLOSE, "lagging: reconnect with from=<offsets>")
            return None
        wanted: dict[int, int | None] = (
            dict.fromkeys(range(h.router.num_partitions)) if -1 in start else start)
        async with h.bridge.open_reader(wanted) as (reader, positions):
            await websocket.send(hello(positions, h.router.url))
            while True:
                got = await reader.fetch(500)
                for pid, records in got.items():
                    for rec in records:
                        if key is not None and rec.key != key:
                            continue
                        change = encode_change(pid, rec)
                        if change is not None:
                            await websocket.send(change)
