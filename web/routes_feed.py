"""The change feed: websocket ``/changes[?from=...][&key=E]``.

- no ``from``: live from now on (a lagging subscriber is closed with code 4001 and
  reconnects with ``from``);
- ``from=p:offset,...``: resume after those offsets (partitions not listed: live);
- ``from=beginning``: the whole compacted topic, then live.

This route only checks the parameters and pumps messages: every reader and
subscription belongs to the feed actor (actors/feed_resume.py).
"""

from __future__ import annotations

from quart import Response, websocket
from quart_trio import QuartTrio

from actors.feed_resume import FROM_BEGINNING, Ended, Start, serve
from kstate.core.users import InvalidUser, parse_email
from web import render
from web.errors import BadRequest
from web.responses import respond
from web.services import Services

LAGGING_CLOSE = 4001
LAGGING_REASON = "lagging: reconnect with from=<offsets>"


def parse_from(raw: str | None) -> Start:
    """None (live), FROM_BEGINNING, or p -> next offset (``from=p:o`` means "I have
    seen offset o")."""
    if raw is None or raw == "":
        return None
    if raw == "beginning":
        return FROM_BEGINNING
    out: dict[int, int] = {}
    for part in raw.split(","):
        p, sep, o = part.partition(":")
        if not sep or not p.strip().isdigit() or not o.strip().lstrip("-").isdigit():
            raise BadRequest(400, "invalid_from",
                             "from must be 'beginning' or p:offset[,p:offset...]")
        out[int(p)] = max(0, int(o) + 1)
    return out


def register(app: QuartTrio, s: Services) -> None:
    @app.websocket("/changes")
    async def changes() -> Response | None:
        try:
            start = parse_from(websocket.args.get("from"))
            raw_key = websocket.args.get("key")
            key = None if raw_key is None else parse_email(raw_key, "key").encode()
        except InvalidUser as exc:
            return respond(render.bad_request(BadRequest.of(exc)))
        except BadRequest as exc:
            return respond(render.bad_request(exc))
        if s.feed is None:
            return respond(render.error(503, "feed_unavailable",
                                        "the change feed is not running", retry_after=1))
        await websocket.accept()
        if await serve(s.feed, start, key, websocket.send) is Ended.LAGGED:
            await websocket.close(LAGGING_CLOSE, LAGGING_REASON)
        return None
