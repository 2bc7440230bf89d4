"""The change feed: websocket ``/changes[?from=...][&key=E]``.

- no ``from``: live from now on (a lagging subscriber is closed with code 4001 and
  reconnects with ``from``);
- ``from=p:offset,...``: resume after those offsets (partitions not listed: live);
- ``from=beginning``: the whole compacted topic, then live.

Before the websocket is accepted: bad parameters get 400 JSON (whatever their bytes),
as does a ``from`` offset past its partition's end (looked up by the subscriber's own
reader, opened before the handshake: actors/feed_resume.py), a node at its subscriber
bounds 503 JSON + ``Retry-After`` (actors/feed_limits.py), as does a subscriber whose
reader (resumed) or whose wake of the idle live feed (live) gets no offsets from Kafka
within ``READER_START_TIMEOUT``.
After it: a subscriber cut off for lagging or for taking nothing is closed with 4001.
This route only checks the parameters and admits; every reader and subscription
belongs to the feed actor (actors/feed_resume.py).
"""

from __future__ import annotations

import trio
from quart import Response, Websocket, websocket
from quart_trio import QuartTrio

from actors.feed_limits import FULL
from actors.feed_resume import FROM_BEGINNING, Ended, Refused, Start, serve
from kstate.core.users import InvalidUser, parse_email
from web import render
from web.errors import BadRequest
from web.responses import respond
from web.services import Services

LAGGING_CLOSE = 4001
LAGGING_REASON = "lagging: reconnect with from=<offsets>"
STALLED_REASON = "lagging: took nothing for too long; reconnect with from=<offsets>"
# A resumed subscriber whose own Kafka reader failed mid-replay (Kafka refused it: an
# ACL revoked): RFC 6455's "unexpected condition"; what was sent stands.
UNAVAILABLE_CLOSE = 1011
UNAVAILABLE_REASON = "feed_unavailable: Kafka refused the replay; reconnect with from=<offsets>"
MAX_OFFSET = 2**63 - 2  # Kafka offsets are int64; "seen o" asks for o + 1
OFFSET_DIGITS = 19
PARTITION_DIGITS = 6


def _digits(text: str, most: int) -> bool:
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def parse_from(raw: str | None, partitions: int) -> Start:
    """None (live), FROM_BEGINNING, or p -> next offset (``from=p:o`` means "I have
    seen offset o"; o < 0: from the beginning). Raises BadRequest (400) for anything
    else: a partition the topic does not have, one listed twice, an offset beyond
    Kafka's, any character that is not an ASCII digit where one is expected."""
    if raw is None or raw == "":
        return None
    if raw == "beginning":
        return FROM_BEGINNING
    out: dict[int, int] = {}
    for part in raw.split(","):
        p, sep, o = part.strip().partition(":")
        negative = o.startswith("-")
        digits = o[1:] if negative else o
        if not sep or not _digits(p, PARTITION_DIGITS) or not _digits(digits, OFFSET_DIGITS):
            raise BadRequest(400, "invalid_from",
                             "from must be 'beginning' or p:offset[,p:offset...] "
                             "(ASCII digits, an offset may start with '-')")
        pid, offset = int(p), int(digits)
        if pid >= partitions:
            raise BadRequest(400, "invalid_from",
                             f"from names partition {pid}; the topic has {partitions}")
        if pid in out:
            raise BadRequest(400, "invalid_from", f"from names partition {pid} twice")
        if not negative and offset > MAX_OFFSET:
            raise BadRequest(400, "invalid_from", f"offset {offset} is beyond any Kafka offset")
        out[pid] = 0 if negative else offset + 1
    return out


def _twice(name: str, values: list[str]) -> str:
    """Why a parameter given more than once is refused rather than read as its first:
    ``from=0:5&from=1:7`` would resume partition 0 and start partition 1 live, skipping
    its changes since offset 7 without a word."""
    return (f"{name} is given {len(values)} times; give it once"
            + (" (from=p:offset,p:offset,... lists every partition)" if name == "from"
               else ""))


async def _drop_messages(ws: Websocket) -> None:
    """Read and drop what the client sends: the feed takes nothing from it. Unread, its
    messages filled the queues between hypercorn and the route (10 each), hypercorn
    stopped reading the socket, and a client that left after sending more was never
    seen to leave: its subscriber was held for good while nothing changed for it."""
    while True:
        await ws.receive()


def register(app: QuartTrio, s: Services) -> None:
    @app.websocket("/changes")
    async def changes() -> Response | None:
        try:
            froms, keys = websocket.args.getlist("from"), websocket.args.getlist("key")
            if len(froms) > 1:
                raise BadRequest(400, "invalid_from", _twice("from", froms))
            if len(keys) > 1:
                raise BadRequest(400, "invalid_email", _twice("key", keys))
            start = parse_from(froms[0] if froms else None, s.router.num_partitions)
            raw_key = keys[0] if keys else None
            key = None if raw_key is None else parse_email(raw_key, "key").encode()
        except InvalidUser as exc:
            return respond(render.bad_request(BadRequest.of(exc)))
        except BadRequest as exc:
            return respond(render.bad_request(exc))
        if s.feed is None:
            return respond(render.error(503, "feed_unavailable",
                                        "the change feed is not running", retry_after=1))
        admitted = s.feed.limits.admit(resumed=start is not None)
        if isinstance(admitted, str):
            what = ("subscribers" if admitted == FULL
                    else "subscribers replaying with from= (live ones are still admitted)")
            return respond(render.error(503, admitted, f"this node has as many {what} as it "
                                        "takes; retry later or on another node",
                                        retry_after=1))
        with admitted:
            async with trio.open_nursery() as nursery:
                async def accept() -> None:
                    await websocket.accept()
                    nursery.start_soon(_drop_messages, websocket)

                ended = await serve(s.feed, start, key, websocket.send, accept=accept,
                                    reader_closed=admitted.reader_closed)
                nursery.cancel_scope.cancel()
            if isinstance(ended, Refused):  # before the handshake
                return respond(render.error(ended.status, ended.error, ended.message,
                                            retry_after=ended.retry_after))
            if ended is Ended.LAGGED:
                await websocket.close(LAGGING_CLOSE, LAGGING_REASON)
            elif ended is Ended.STALLED:
                await websocket.close(LAGGING_CLOSE, STALLED_REASON)
            elif ended is Ended.UNAVAILABLE:
                await websocket.close(UNAVAILABLE_CLOSE, UNAVAILABLE_REASON)
        return None
