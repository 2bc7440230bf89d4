"""Hand an accepted connection to hypercorn + an ASGI app, in this process, on this
very stream: hypercorn's own trio connection handler (``TCPServer``) runs on a
wrapper that replays the bytes the front already read, then reads the socket; over
HTTP/1.1 what it reads goes through the front's guard first (web/http1/guard.py).

Why this and not a splice to an internal hypercorn listener (unix socket or
loopback port): no second socket and no copy task per connection, and hypercorn
sees the real connection, so ``scope["client"]`` is the real peer, ``scope["scheme"]``
is ``https``/``wss`` under TLS, and hypercorn's idle timer and close act on the
client's socket itself. The cost is that ``TCPServer``, ``WorkerContext`` and
``Lifespan`` are hypercorn internals (checked against hypercorn 0.17 and 0.18).

HTTP/1.1 only, as on the lean path: hypercorn switches a connection to h2 on a request
that says ``Upgrade: h2c`` (answering 101) or on the HTTP/2 preface, and has no
setting to stop it; :class:`_Http1Server` takes both for plain HTTP/1.1 requests (the
upgrade ignored, RFC 9110 §7.8), so one connection never carries more than one
request at a time. The guard reads on past an h2c upgrade, as past any HTTP/1.1
request, and refuses the preface (400 ``http2_not_supported``) before hypercorn sees
it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote

import h11
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, Updated
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import wrap_app

from web.http1.guard import DROP, HANDSHAKE, Guard, Refusals
from web.http1.limits import Limits
from web.http1.wire import (
    FRAMING,
    NO_BODY_STATUS,
    Request,
    Response,
    cut_off_response,
    error_response,
    is_cancellation,
    origin_form,
)

log = logging.getLogger(__name__)

# Any ASGI 3 application (a QuartTrio app is one).
Asgi = Callable[[Any, Any, Any], Awaitable[None]]


def hypercorn_config(limits: Limits, *, errorlog: logging.Logger | None = None) -> Config:
    """The hypercorn settings for handed-over connections, derived from ``limits``:
    ``keep_alive_timeout`` (idle), ``h11_max_incomplete_size`` (head bytes),
    ``websocket_max_message_size``. ``read_timeout`` stays unset: hypercorn applies it
    to every read, a quiet websocket feed included, and would cut such a feed."""
    config = Config()
    config.keep_alive_timeout = limits.idle_timeout
    config.h11_max_incomplete_size = limits.max_head_bytes
    config.websocket_max_message_size = limits.websocket_max_message_bytes
    config.graceful_timeout = limits.drain_timeout
    # never used (no connection turns h2, see _Http1Server); if one ever did, it would
    # carry one request at a time, as an HTTP/1.1 connection does
    config.h2_max_concurrent_streams = 1
    config.accesslog = None
    config.errorlog = errorlog or logging.getLogger("hypercorn.error")
    return config


def hot_asgi(app: Asgi, is_hot: Callable[[bytes, bytes], bool],
             handle: Callable[[Request], Awaitable[Response]], max_body: int,
             oversized_to_handler: bool = False, *, body_timeout: float = math.inf,
             cut_off: Callable[[Request], Response] = cut_off_response,
             cut_off_timeout: float = 1.0) -> Asgi:
    """``app``, except that hot requests go to ``handle``: once a connection is handed
    over, its later hot requests (a browser's connection mixes them) get the same
    answers as on the lean path, without the app having to serve them too. A body
    over ``max_body`` is a 413 here, or with ``oversized_to_handler`` a request marked
    ``oversized`` for ``handle`` (answered with ``Connection: close`` over HTTP/1.1,
    as the lean path does). A body not complete within ``body_timeout`` is a 408,
    and the connection closes, as on the lean path: hypercorn's own timers stop once
    a request head is in (its ``read_timeout`` stays unset, see
    :func:`hypercorn_config`), so nothing else would end the wait. A request whose
    ``handle`` is cancelled (the server's drain deadline) is answered ``cut_off``,
    as on the lean path, within ``cut_off_timeout`` (see :func:`_send_cut_off`)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        scope = origin_scope(scope)
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        method = scope["method"].encode("ascii")
        path = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = path.partition(b"?")[0]
        if not is_hot(method, path):
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        # a body declared over the limit is not read (nor, with Expect: 100-continue,
        # invited: see _continue_within), as on the lean path
        oversized = declared_length(scope["headers"]) > max_body
        version = scope.get("http_version", "1.1")
        with trio.move_on_after(body_timeout) as body_wait:
            while more and not oversized:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client left
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_body:
                    oversized = True
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
        late = body_wait.cancelled_caught
        if late:
            resp = error_response(408, "request_timeout",
                                  f"request body not complete within {body_timeout}s")
        elif oversized and not oversized_to_handler:
            resp = error_response(413, "body_too_large", f"body is larger than {max_body} bytes")
        else:
            client = scope.get("client")
            req = Request(method, path, scope.get("query_string", b""), list(scope["headers"]),
                          b"" if oversized else b"".join(chunks), version, not oversized,
                          oversized, str(client[0]) if client else None)
            try:
                resp = await handle(req)
            except BaseException as exc:
                if is_cancellation(exc):
                    await _send_cut_off(send, cut_off(req), method, version, cut_off_timeout)
                raise
        await _send(send, resp, method, version, close=oversized or late)

    return asgi


def declared_length(headers: Any) -> int:
    """A request's ``Content-Length`` (0 without one; hypercorn's h11 has checked it)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value)
    return 0


async def _send(send: Any, resp: Response, method: bytes, version: str, *, close: bool
                ) -> None:
    """``resp`` through ASGI ``send``, framed as the lean path frames it; ``close``:
    with ``Connection: close`` (over HTTP/1.x)."""
    status, headers, body = resp
    out = [(n, v) for n, v in headers if n.lower() not in FRAMING]
    if close and version.startswith("1"):
        out.append((b"connection", b"close"))
    if status in NO_BODY_STATUS or status < 200:
        body = b""
    else:
        out.append((b"content-length", b"%d" % len(body)))
    if method == b"HEAD":
        body = b""
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_cut_off(send: Any, resp: Response, method: bytes, version: str,
                        seconds: float) -> None:
    """Send the cut-off answer from a cancelled task: shielded, with ``Connection:
    close``, given up after ``seconds``. (hypercorn shields its own socket write, as
    :func:`shield_sends` does each send, and this deadline cannot end those: the
    front closes the socket of a connection still open then, which ends them.)
    Never raises but Cancelled: this runs while a Cancelled is on its way out."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + seconds
        try:
            await _send(send, resp, method, version, close=True)
        except Exception as exc:  # the connection broke meanwhile: nobody to answer
            log.debug("event=handover_cut_off_unsent error=%r", exc)


def origin_scope(scope: Any) -> Any:
    """``scope`` with an absolute-form target (``http://host/p``, which hypercorn passes
    on as it came) in origin-form (``/p``: :func:`web.http1.wire.origin_form`), as the
    lean path reads it. Else a framework would find the path by parsing the decoded
    ``http://host/...`` as a URL, where an encoded ``#`` or ``?`` cuts it short."""
    if scope["type"] not in ("http", "websocket"):
        return scope
    raw = scope.get("raw_path")
    if not raw or raw[:1] == b"/":
        return scope
    origin = origin_form(raw)
    if origin is None:
        return scope
    # (a query after an empty path, http://host?q, is hypercorn's query_string already)
    return {**scope, "raw_path": origin, "path": unquote(origin.decode("ascii"))}


def shield_sends(app: Asgi) -> Asgi:
    """``app`` with each HTTP ``send`` shielded. quart-trio cancels a request's task as
    soon as hypercorn reports the stream closed, which hypercorn does *inside* the final
    ``send``, or when a client half-closes (shuts its write side) after its request:
    the answer is then cut after its head, or a ``Connection: close`` socket stays open.
    hypercorn already shields the socket write itself, so this adds no new wait."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def shielded(message: Any) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await app(scope, receive, shielded)

    return asgi


class _ReplayBase(trio.abc.Stream):
    """A stream whose first read returns ``head`` (bytes the front read already), then
    reads and writes go to the wrapped stream. With a ``guard``, what is read is what
    the guard lets through (web/http1/guard.py); bytes that come while a websocket
    handshake is being answered wait, and no more is read, until the answer's first
    write, which tells the guard whether it was a 101. A write that takes longer than
    ``send_timeout`` breaks the stream (see :meth:`send_all`); ``timed_out`` is called
    then."""

    def __init__(self, stream: trio.abc.Stream, head: bytes, guard: Guard | None, *,
                 send_timeout: float = math.inf,
                 timed_out: Callable[[], None] | None = None) -> None:
        self._inner = stream
        self._head = head
        self._guard = guard
        self._send_timeout = send_timeout
        self._timed_out = timed_out
        self._broken = False  # a write was cut short: the stream's bytes are unknown
        # what ends the connection's reading once a write timed out (_Http1Server.end)
        self.on_broken: Callable[[], None] = _nothing
        self._ready = b""  # let through, not read yet
        self._closed = trio.Event()
        self._answered = trio.Event()  # (a websocket handshake's answer is going out)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        guard = self._guard
        if guard is None:
            if self._head:
                data, self._head = self._head, b""
                await trio.lowlevel.checkpoint()
                return data
            return bytes(await self._inner.receive_some(max_bytes))
        if not self._ready:
            if self._head:
                self._ready, self._head = guard.feed(self._head), b""
            while not self._ready:
                if guard.mode == HANDSHAKE and guard.holding:
                    # bytes came while a websocket handshake is answered: hypercorn
                    # would take them for frames of a websocket not accepted yet
                    await self._answered.wait()
                    if self._closed.is_set():
                        raise trio.ClosedResourceError("closed before the handshake's answer")
                    continue
                data = bytes(await self._inner.receive_some(max_bytes))
                if not data:
                    if guard.mode == DROP:
                        # what hypercorn has ends the connection: an EOF now would
                        # make it cancel the answer it is giving (quart-trio cancels a
                        # request whose stream closes); it closes once it answered
                        await self._closed.wait()
                        raise trio.ClosedResourceError("closed after its last answer")
                    return b""
                self._ready = guard.feed(data)
        await trio.lowlevel.checkpoint()
        n = len(self._ready) if max_bytes is None else max_bytes
        data, self._ready = self._ready[:n], self._ready[n:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        guard = self._guard
        if guard is not None and guard.mode == HANDSHAKE:
            # maybe the answer to a websocket handshake (hypercorn writes its head at
            # once), maybe that of a request pipelined before it
            self._ready += guard.answered(data)
            if guard.mode != HANDSHAKE:
                self._answered.set()
        if self._broken:
            raise trio.BrokenResourceError("an earlier write timed out")
        # hypercorn shields its writes from cancellation and has no send timeout: a
        # client that reads slowly (opening its window a little every few seconds,
        # which TCP_USER_TIMEOUT does not catch) would hold its connection, its task
        # and the answer for as long as it liked. Past the lean path's send_timeout
        # the stream is broken: hypercorn takes that as the client gone and closes.
        with trio.move_on_after(self._send_timeout) as scope:
            await self._inner.send_all(data)
        if scope.cancelled_caught:
            self._broken = True
            if self._timed_out is not None:
                self._timed_out()
            self.on_broken()
            raise trio.BrokenResourceError(f"a write took over {self._send_timeout}s")

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._closed.set()
        self._answered.set()
        await self._inner.aclose()


class _Replay(_ReplayBase):
    """Over a plain socket stream. It has no ``do_handshake``: that is how
    ``TCPServer`` tells plain from TLS."""

    def __init__(self, stream: trio.SocketStream, head: bytes, guard: Guard | None,
                 **bounds: Any) -> None:
        super().__init__(stream, head, guard, **bounds)
        self._stream = stream
        self.socket = stream.socket

    async def send_eof(self) -> None:
        await self._stream.send_eof()


class _ReplayTLS(_ReplayBase):
    """Over a ``trio.SSLStream`` whose handshake is done: what ``TCPServer`` asks of a
    TLS stream (``do_handshake``, ``selected_alpn_protocol``,
    ``transport_stream.socket``), and no ``send_eof``, as a TLS stream has none."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], head: bytes,
                 guard: Guard | None, **bounds: Any) -> None:
        super().__init__(stream, head, guard, **bounds)
        self._stream = stream
        self.transport_stream = stream.transport_stream

    async def do_handshake(self) -> None:
        await self._stream.do_handshake()  # done already: returns at once

    def selected_alpn_protocol(self) -> str:
        # what hypercorn picks its protocol by: HTTP/1.1, whatever ALPN chose (a
        # client that chose h2 had its preface refused before any hand-over)
        return "http/1.1"


def _nothing() -> None:
    return None


async def _no_protocol_switch(event: object) -> None:
    """Stands for ``H11Protocol._check_protocol``, which answers ``Upgrade: h2c`` with
    101 and takes the HTTP/2 preface as h2: both stay HTTP/1.1 requests instead."""


def _json_errors(protocol: H11Protocol) -> Callable[[int], Awaitable[None]]:
    """Stands for ``H11Protocol._send_error_response``, hypercorn's answer to bytes its
    h11 cannot parse (a bare status, no body), with the front's JSON error instead.
    The guard refuses every head hypercorn would fail on before hypercorn reads it
    (web/http1/guard.py), so what reaches this is a body whose chunked framing is
    malformed: its head went to the app already, only hypercorn sees the body fail.
    Never a 5xx: h11's 501 (a transfer coding it lacks) is the guard's 400 too."""
    extra = protocol.config.response_headers("h11")

    async def send_error(status_code: int) -> None:
        if status_code == 431:
            resp = error_response(431, "head_too_large", "request head too large")
        elif status_code == 501:
            resp = error_response(400, "unsupported_transfer_encoding",
                                  "Transfer-Encoding must be exactly chunked")
        else:
            resp = error_response(400, "bad_request",
                                  "malformed request: its body's chunked framing is invalid")
        status, headers, body = resp
        await protocol._send_h11_event(h11.Response(
            status_code=status,
            headers=[*headers, (b"content-length", b"%d" % len(body)),
                     (b"connection", b"close"), *extra]))
        # (to a HEAD, h11 sends no body: it refuses it, and hypercorn's send lets
        # that go since the client's side is in error)
        await protocol._send_h11_event(h11.Data(data=body))
        await protocol._send_h11_event(h11.EndOfMessage())

    return send_error


_EXTENSIONS = b"sec-websocket-extensions"


def _without_extensions(request: h11.Request) -> h11.Request:
    """``request`` without ``Sec-WebSocket-Extensions``, so hypercorn negotiates none.
    It always takes permessage-deflate when offered, and wsproto inflates what comes
    before hypercorn checks a message's size: a few hundred KiB sent made the node
    hold hundreds of MiB. (The feed's messages are small; RFC 6455 §9.1 lets a server
    decline every extension.)"""
    raw = request.headers.raw_items()
    kept = [(n, v) for n, v in raw if n.lower() != _EXTENSIONS]
    if len(kept) == len(raw):
        return request
    return h11.Request(method=request.method, target=request.target, headers=kept,
                       http_version=request.http_version)


def _fail_too_large(stream: WSStream) -> None:
    """Make a websocket message over ``websocket_max_message_size`` fail the
    connection (RFC 6455 §7.1.7), as the limit promises. hypercorn only sends close
    1009: it goes on appending whatever the client sends after it to the message
    (without bound, as long as the client does not answer the close) and never tells
    the app, whose websocket (a feed subscriber) then lives on, sends into the void
    and is never cut off. Here the stream is closed right after the 1009: the app
    gets its disconnect and hypercorn closes the connection."""
    buffer = stream.buffer
    handle_events = stream._handle_events
    if not (hasattr(buffer, "length") and hasattr(buffer, "max_length")):
        raise RuntimeError("hypercorn changed: cannot bound a websocket message")

    async def handle() -> None:
        await handle_events()
        # (hypercorn empties its buffer after each whole message: only a message
        # over the limit leaves it longer than that)
        if buffer.length > buffer.max_length and not stream.closed:
            await stream.send(StreamClosed(stream_id=stream.stream_id))

    setattr(stream, "_handle_events", handle)  # noqa: B010


def _bounded_websockets(protocol: H11Protocol) -> Callable[[h11.Request], Awaitable[None]]:
    """Stands for ``H11Protocol._create_stream``: the same, with a websocket stream's
    bounds made to hold (:func:`_without_extensions`, :func:`_fail_too_large`)."""
    create = protocol._create_stream

    async def create_stream(request: h11.Request) -> None:
        await create(_without_extensions(request))
        # (before the stream handles any frame: this task reads them, once this returns)
        if isinstance(protocol.stream, WSStream):
            _fail_too_large(protocol.stream)

    return create_stream


def _continue_within(protocol: H11Protocol, max_body: float) -> None:
    """Make ``protocol`` answer ``Expect: 100-continue`` only for a body it may take.
    hypercorn sends ``100 Continue`` as soon as it has the head of a request that asks
    for it, so a body declared over the limit was invited before its 413 (or another
    refusal): the client sent it all, only for it to be dropped. Here that 100 is not
    sent; the answer comes at once, and the client is spared the body (RFC 9110
    §10.1.1), as on the lean path."""
    create, send_event = protocol._create_stream, protocol._send_h11_event
    declared = 0

    async def create_stream(request: h11.Request) -> None:
        nonlocal declared
        declared = declared_length(request.headers.raw_items())
        await create(request)

    async def send_h11_event(event: Any) -> None:
        if (isinstance(event, h11.InformationalResponse) and event.status_code == 100
                and declared > max_body):
            return
        await send_event(event)

    setattr(protocol, "_create_stream", create_stream)  # noqa: B010
    setattr(protocol, "_send_h11_event", send_h11_event)  # noqa: B010


class _Http1Server(TCPServer):
    """hypercorn's connection handler, kept on HTTP/1.1 (see the module docstring),
    its websockets bounded (:func:`_bounded_websockets`), its parse errors answered
    in JSON (:func:`_json_errors`), closed once its client has sent its last byte
    and been answered (:meth:`protocol_send`), or as soon as a write to it timed out
    (:meth:`end`)."""

    # the client's side is over (EOF: it half-closed, or the connection broke)
    _read_done = False
    # the largest body a 100 Continue invites (see _continue_within)
    max_body: float = math.inf

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._reading = trio.CancelScope()

    def end(self) -> None:
        """A write to the client timed out (the stream broke it): the connection ends
        now. hypercorn takes a broken write for that one answer lost, not for the
        client gone: it went on to the next request pipelined behind it (running the
        app for each, every answer lost too), then waited for more bytes from the
        client, the connection held until ``keep_alive_timeout``, or for good by a
        client that sent a request within each. Ending the read loop is what hypercorn
        does when the client is gone: the app is told (a disconnect) and the
        connection closes once its tasks are done."""
        self._reading.cancel()

    async def protocol_send(self, event: Event) -> None:
        # hypercorn keeps a connection whose client half-closed (shut its sending
        # side) open, once answered, until keep_alive_timeout: its read loop is over,
        # but its idle timer is what ends the connection. Nothing more can come to be
        # answered, so none is started: the connection closes once the answer in
        # flight (if any) is out, as the lean path closes at an EOF.
        if isinstance(event, Updated) and event.idle and self._read_done:
            await self.idle_task.stop()
            return
        await super().protocol_send(event)

    async def _read_data(self) -> None:
        # (runs once the protocol is made, before the first byte is handled)
        protocol = self.protocol.protocol
        if not isinstance(protocol, H11Protocol) or not all(
                hasattr(protocol, name) for name in ("_check_protocol", "_create_stream",
                                                     "_send_error_response")):
            raise RuntimeError("hypercorn changed: cannot keep a connection on HTTP/1.1")
        setattr(protocol, "_check_protocol", _no_protocol_switch)  # noqa: B010
        setattr(protocol, "_create_stream", _bounded_websockets(protocol))  # noqa: B010
        setattr(protocol, "_send_error_response", _json_errors(protocol))  # noqa: B010
        _continue_within(protocol, self.max_body)
        with self._reading:
            await super()._read_data()
        if self._reading.cancelled_caught:  # (see end: as super() ends, client gone)
            await self.protocol.handle(Closed())
        self._read_done = True
        await self.idle_task.stop()  # (an idle connection's timer: see protocol_send)


class HandOver:
    """hypercorn for the connections the front gives away (``app`` under
    :func:`shield_sends`), each HTTP/1.1 one behind a guard (web/http1/guard.py) that
    refuses what hypercorn would answer with a bare error (``refused`` is called for
    each such refusal), each write bounded by ``send_timeout`` (past it the connection
    is closed and ``timed_out`` called), ``100 Continue`` sent only to a request whose
    declared body is at most ``max_body``. Owns the app's lifespan:
    :meth:`startup` runs it in a nursery the caller owns, :meth:`terminate` makes
    idle handed-over connections close and busy ones close after their response,
    :meth:`shutdown` runs the app's shutdown (call it after the connections ended)."""

    def __init__(self, app: Asgi, config: Config,
                 refused: Callable[[], None] | None = None, *,
                 send_timeout: float = math.inf,
                 timed_out: Callable[[], None] | None = None,
                 max_body: float = math.inf) -> None:
        self._config = config
        self._max_body = max_body
        self._send_timeout = send_timeout
        self._timed_out = timed_out
        self.refusals = Refusals(refused)
        self._app = wrap_app(shield_sends(self.refusals.app(app)), config.wsgi_max_body_size,
                             "asgi")
        self._context = WorkerContext(None)
        self._lifespan_state: LifespanState = {}
        self._lifespan = Lifespan(self._app, config, self._lifespan_state)
        self._state = ConnectionState(self._lifespan_state)
        self._started = False

    async def startup(self, nursery: trio.Nursery) -> None:
        """Start the app's lifespan in ``nursery`` and wait for its startup to finish
        (raises hypercorn's ``LifespanFailureError``/``LifespanTimeoutError``)."""
        await nursery.start(self._lifespan.handle_lifespan)
        await self._lifespan.wait_for_startup()
        self._state = ConnectionState(self._lifespan_state.copy())
        self._started = True

    async def serve(self, stream: trio.abc.Stream, head: bytes) -> None:
        """Serve the rest of ``stream`` (``head`` first) with hypercorn; returns when
        hypercorn closed the connection."""
        wrapped: _ReplayBase
        # Every handed-over connection speaks HTTP/1.1 (an h2 preface never gets here,
        # whatever ALPN said: the front refuses it), so every one is guarded.
        guard = Guard(self.refusals, self._config.h11_max_incomplete_size)
        if isinstance(stream, trio.SSLStream):
            wrapped = _ReplayTLS(stream, head, guard, send_timeout=self._send_timeout,
                                 timed_out=self._timed_out)
        elif isinstance(stream, trio.SocketStream):
            wrapped = _Replay(stream, head, guard, send_timeout=self._send_timeout,
                              timed_out=self._timed_out)
        else:
            raise TypeError(f"cannot hand over a {type(stream).__name__}")
        server = _Http1Server(self._app, self._config, self._context, self._state,
                              cast(Any, wrapped))
        server.max_body = self._max_body
        wrapped.on_broken = server.end
        try:
            await server.run()
        except* trio.BusyResourceError:
            # hypercorn closes (send_eof) from one task while another still writes an
            # error answer to a broken request: the connection is over either way
            log.debug("event=handover_close_race")
        except* UnicodeDecodeError:
            # a websocket handshake header with bytes wsproto decodes as ASCII: the
            # front and the guard refuse those (web/http1/heads.py), so this is a header
            # they do not know of; hypercorn dropped the connection without an answer
            log.info("event=handover_undecodable_handshake")
        finally:
            guard.close()  # (a refusal still waiting: its stand-in will not come)

    async def terminate(self) -> None:
        await self._context.terminated.set()

    async def shutdown(self) -> None:
        """Run the app's lifespan shutdown (bounded by hypercorn's
        ``shutdown_timeout``), if its startup ran."""
        if self._started:
            await self._lifespan.wait_for_shutdown()
