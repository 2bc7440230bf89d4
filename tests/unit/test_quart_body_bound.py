"""What quart keeps of a request body is bounded by ``max_body`` on every route: a
route that takes no body (all but the user routes) refuses one declared larger with
413 before it runs, and one that comes chunked, which quart appends as it arrives
while the route runs, stops being kept past ``max_body``. The node is offline
(tests/support/offline.py); its one member answers ``/readyz`` only when the test lets
it, so that ``GET /cluster`` runs for as long as the test streams."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from werkzeug.exceptions import RequestEntityTooLarge

from kstate.core.messages import RoutingTable
from tests.support.http1 import connect, parse_replies, raw_server, read_until_closed
from tests.support.offline import offline_services
from web import routes_dashboard
from web.app import create_app
from web.http1 import serve_front
from web.server import FrontSettings, build_front

MAX_BODY = 1024
CHUNK = b"x" * (1 << 20)


@asynccontextmanager
async def node_asking_a_held_member(monkeypatch: pytest.MonkeyPatch
                                    ) -> AsyncIterator[tuple[str, trio.Event]]:
    """A node whose /cluster waits for its member until the event is set."""
    monkeypatch.setattr(routes_dashboard, "MEMBER_TIMEOUT", 30.0)
    release = trio.Event()

    async def member(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await release.wait()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n"
                              b"Connection: close\r\n\r\n{\"ready\": true}")

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        peer = await raw_server(nursery, member)
        s = offline_services(max_body=MAX_BODY)
        s.router.table = RoutingTable(generation=1, owners=dict.fromkeys(range(10), peer))
        front = build_front(s, create_app(s), FrontSettings(max_body=MAX_BODY), None)
        addr = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        try:
            yield addr, release
        finally:
            release.set()
            stop.set()
            await s.proxy.aclose()
            nursery.cancel_scope.cancel()


async def test_a_body_declared_over_max_body_is_refused_before_the_route_runs(monkeypatch):
    async with node_asking_a_held_member(monkeypatch) as (addr, _), \
            await connect(addr) as s:
        await s.send_all(b"GET /cluster HTTP/1.1\r\nHost: h\r\n"
                         b"Content-Length: 10000000000\r\n\r\n" + b"x" * 4 * MAX_BODY)
        # (the member is held: an answer from the route would not come)
        [reply] = parse_replies(await read_until_closed(s))
    assert reply.status == 413
    assert reply.headers[b"connection"] == b"close"
    assert reply.json() == {"error": "body_too_large",
                            "message": f"body is larger than {MAX_BODY} bytes"}


async def test_a_chunked_body_is_not_kept_past_max_body_while_the_route_runs(monkeypatch):
    sent = 64 * len(CHUNK)
    async with node_asking_a_held_member(monkeypatch) as (addr, release), \
            await connect(addr) as s:
        tracemalloc.start()
        try:
            await s.send_all(b"GET /cluster HTTP/1.1\r\nHost: h\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(sent // len(CHUNK)):
                await s.send_all(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            await trio.sleep(0.2)  # the server reads the last of it
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        release.set()
        await s.send_all(b"0\r\n\r\n")
        [reply] = parse_replies(await read_until_closed(s))
    # what was sent went through (a few chunks in flight at a time), never all kept
    assert peak < sent / 4
    assert reply.status == 200
    assert reply.headers[b"connection"] == b"close"  # the body was not read to its end


async def test_quarts_own_413_reads_as_the_routes_own():
    """quart raises RequestEntityTooLarge at a route's next read once it has more than
    MAX_CONTENT_LENGTH unread (chunks that came faster than the route read them): the
    answer is the same 413 as when the route finds the body too large itself."""
    app = create_app(offline_services(max_body=MAX_BODY))

    @app.route("/reads-too-late")
    async def reads_too_late() -> None:
        raise RequestEntityTooLarge()

    r = await app.test_client().get("/reads-too-late")
    assert r.status_code == 413
    assert await r.get_json() == {"error": "body_too_large",
                                  "message": f"body is larger than {MAX_BODY} bytes"}


async def test_a_quart_route_that_raises_answers_the_fronts_internal_error():
    """A bug in a route quart serves gets the same 500 as one in the front's user
    routes (web/http1/server.py): one code, ``internal_error``, for "the server failed",
    whichever half of the node failed."""
    app = create_app(offline_services(max_body=MAX_BODY))

    @app.route("/fails")
    async def fails() -> None:
        raise RuntimeError("a bug")

    r = await app.test_client().get("/fails")
    assert r.status_code == 500
    assert await r.get_json() == {"error": "internal_error",
                                  "message": "the server failed to answer"}
