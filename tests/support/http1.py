"""Helpers for testing web/http1 over real loopback sockets: a small key/value handler,
a quart-trio app with a plain route and websocket echoes (one answering its handshake
late), and raw-socket readers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import h2.config
import h2.connection
import httptools
import trio
from quart import Response as QuartResponse
from quart import request, websocket
from quart_trio import QuartTrio

from web.http1 import Request, Response, error_response

JSON = (b"content-type", b"application/json")
LATE = 0.5  # how long /ws-late takes to answer a handshake
RawHandler = Callable[[trio.SocketStream], Awaitable[None]]


async def raw_server(nursery: trio.Nursery, handler: RawHandler) -> str:
    """A plain TCP server on loopback whose connections ``handler`` plays; its address."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


@dataclass
class Store:
    """The hot handler: ``/users/{key}`` GET/HEAD/PUT/DELETE over a dict; a key
    starting with ``slow`` sleeps ``delay`` first, ``boom`` raises."""

    data: dict[bytes, bytes] = field(default_factory=dict)
    delay: float = 0.5
    seen: list[Request] = field(default_factory=list)

    @staticmethod
    def is_hot(method: bytes, path: bytes) -> bool:
        return path.startswith(b"/users/") and method in (b"GET", b"HEAD", b"PUT", b"DELETE")

    async def handle(self, req: Request) -> Response:
        self.seen.append(req)
        key = req.path[len(b"/users/"):]
        if key.startswith(b"slow"):
            await trio.sleep(self.delay)
        if key.startswith(b"boom"):
            raise RuntimeError("the handler failed on purpose")
        if req.method == b"PUT":
            self.data[key] = req.body
            return Response(204, [], b"")
        if req.method == b"DELETE":
            self.data.pop(key, None)
            return Response(204, [], b"")
        value = self.data.get(key)
        if value is None:
            return error_response(404, "not_found", f"no key {key!r}")
        return Response(200, [JSON, (b"etag", b'"%d"' % len(value))], value)


def make_app() -> QuartTrio:
    app = QuartTrio("http1-test")

    @app.route("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.route("/echo", methods=["POST"])
    async def echo() -> dict[str, object]:
        body = await request.get_data()
        return {"len": len(body), "scheme": request.scheme}

    @app.websocket("/ws")
    async def ws() -> None:
        while True:
            await websocket.send(await websocket.receive())

    @app.websocket("/ws-late")
    async def ws_late() -> QuartResponse | None:
        """Answers its handshake ``LATE`` seconds after it came (as a route that looks
        something up first): accepts and echoes, or with ``?refuse`` answers 403."""
        await trio.sleep(LATE)
        if "refuse" in websocket.args:
            return QuartResponse(b'{"error": "refused"}', 403, content_type="application/json")
        await websocket.accept()
        while True:
            await websocket.send(await websocket.receive())

    return app


class Reply(NamedTuple):
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class _Collect:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.headers, self.body = {}, b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.replies.append(Reply(self.parser.get_status_code(), self.headers, self.body))


def parse_replies(data: bytes) -> list[Reply]:
    """Every complete response in ``data`` (answers to anything but HEAD)."""
    c = _Collect()
    c.parser.feed_data(data)
    return c.replies


async def read_until_closed(stream: trio.abc.Stream, timeout: float = 5.0) -> bytes:
    """All bytes until the peer closes (then closes ``stream`` too); fails the test
    if it does not within ``timeout``. A reset counts as a close."""
    data = b""
    async with stream:
        with trio.fail_after(timeout):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return data
                if not chunk:
                    return data
                data += chunk


async def read_replies(stream: trio.abc.Stream, n: int, timeout: float = 5.0) -> list[Reply]:
    """Exactly the next ``n`` complete responses (fails the test after ``timeout``)."""
    c = _Collect()
    with trio.fail_after(timeout):
        while len(c.replies) < n:
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed after {len(c.replies)} of {n} replies"
            c.parser.feed_data(chunk)
    assert len(c.replies) == n
    return c.replies


async def connect(addr: str) -> trio.SocketStream:
    host, _, port = addr.rpartition(":")
    return await trio.open_tcp_stream(host, int(port))


def h2_preface() -> bytes:
    """What an HTTP/2 client with prior knowledge sends first: the preface, its
    SETTINGS and one request."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"),
                       (":authority", "h")], end_stream=True)
    return c.data_to_send()
