"""The front server: one listening port, a lean HTTP/1.1 path for the hot routes and
hypercorn + an ASGI app for everything else, connection by connection.

``front = Front(is_hot=..., handle=..., app=...)``, then
``bound = await nursery.start(serve_front, front, "127.0.0.1:0", shutdown_trigger=...)``.
Each accepted connection is read by :class:`web.http1.connection.Connection`; the
first request whose ``is_hot(method, path)`` is false (or that asks for an upgrade)
hands that request and the rest of the connection to hypercorn
(:mod:`web.http1.handover`). Graceful shutdown: stop accepting, close idle
keep-alive connections, let busy ones finish their request (answered with
``Connection: close``) until ``Limits.drain_timeout``, then cancel what is left and
run the app's lifespan shutdown. A hot request whose handler is still running at
that deadline, on either path, is not dropped: it is answered ``cut_off(request)``
(shielded, within ``Limits.cut_off_timeout``) before its connection closes.
"""

from __future__ import annotations

import errno
import logging
import socket as stdlib_socket
import ssl
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config

from web.http1.connection import Closed, Connection, Handler, IsHot, Reject, Shared, Stream
from web.http1.handover import Asgi, HandOver, hot_asgi, hypercorn_config
from web.http1.limits import Limits
from web.http1.stats import FrontStatistics
from web.http1.wire import CutOff, Request, Response, error_bytes, error_response

log = logging.getLogger(__name__)

# accept() errors that mean "out of resources now", not "the listener is broken"
# (trio.serve_listeners treats them the same way: log, pause, go on).
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_CONNECTION_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
# accept() errors that concern only the connection being accepted (trio's
# SocketListener skips them too)
_SKIP_ACCEPT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPERM, errno.EPROTO})
# Connections taken from the backlog per pass of the scheduler (see _accept_loop): a
# storm of hundreds is in within a few dozen passes, and no single pass is flooded with
# new connections ahead of the requests already in flight.
ACCEPT_BURST = 16


class Front:
    """The server's configuration and counters; :func:`serve_front` runs it (once).

    ``is_hot(method, path)``: the raw method and path (before ``?``) of a request;
    true means ``handle`` answers it. ``handle`` must not raise (an exception is
    logged and answered 500). ``app``: the ASGI app for everything else; without
    one, every request goes to ``handle``. ``hypercorn``: the hypercorn Config for
    handed-over connections (default :func:`hypercorn_config` of ``limits``).
    ``ssl_context``: when given, every connection is TLS (server side); offer
    ``http/1.1`` only through its ALPN.

    HTTP/1.1 only: the HTTP/2 preface is answered 400 ``http2_not_supported`` and the
    connection closed (after ALPN ``h2`` too), and hypercorn never switches a
    handed-over connection to h2 (:mod:`web.http1.handover`), so every bound of one
    connection holds for one request at a time.

    On a handed-over connection hot requests still reach ``handle``
    (through hypercorn, see :func:`web.http1.handover.hot_asgi`): the app need not
    serve the hot routes at all.

    ``oversized_to_handler``: a hot request whose body is over ``max_body_bytes`` is
    not answered ``413`` by the front but given to ``handle`` marked ``oversized``
    (its body unread), so the handler may refuse it for another reason first, as a
    framework that reads the body only when it needs it would; the connection closes
    after that answer.

    ``cut_off(request)``: the answer to a hot request whose handler the drain deadline
    cancels (default :func:`web.http1.wire.cut_off_response`, a 503 that says it
    cannot tell whether the request took effect); it must not block or raise."""

    def __init__(self, *, handle: Handler, is_hot: IsHot | None = None,
                 app: Asgi | None = None, limits: Limits | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 hypercorn: Config | None = None, oversized_to_handler: bool = False,
                 cut_off: CutOff | None = None) -> None:
        if (app is None) != (is_hot is None):
            raise ValueError("Front: give both app and is_hot, or neither")
        self.limits = limits or Limits()
        self._shared = Shared(self.limits, is_hot, handle, oversized_to_handler, cut_off)
        self._ssl = ssl_context
        self._handover: HandOver | None = None
        if app is not None:
            assert is_hot is not None
            config = hypercorn if hypercorn is not None else hypercorn_config(self.limits)
            app = hot_asgi(app, is_hot, self._guarded, self.limits.max_body_bytes,
                           oversized_to_handler, body_timeout=self.limits.body_timeout,
                           cut_off=self._shared.cut_off_answer,
                           cut_off_timeout=self.limits.cut_off_timeout)
            self._handover = HandOver(app, config, self._refused,
                                      send_timeout=self.limits.send_timeout,
                                      timed_out=self._send_timed_out,
                                      max_body=self.limits.max_body_bytes)
        self._used = False
        self._accepted: set[trio.SocketStream] = set()  # the open connections

    def statistics(self) -> FrontStatistics:
        return self._shared.counters.snapshot()

    def _refused(self) -> None:
        self._shared.counters.bad_requests += 1

    def _send_timed_out(self) -> None:
        self._shared.counters.send_timeouts += 1

    async def _guarded(self, req: Request) -> Response:
        """The handler for hot requests on a handed-over connection: counted, and an
        exception logged and answered 500, as on the lean path."""
        counters = self._shared.counters
        counters.served += 1
        try:
            return await self._shared.handle(req)
        except Exception:
            log.exception("event=http1_handler_failed method=%s path=%r", req.method, req.path)
            counters.handler_errors += 1
            return error_response(500, "internal_error", "the server failed to answer")

    async def serve(self, listen: str | stdlib_socket.socket, *,
                    shutdown_trigger: Callable[[], Awaitable[object]],
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """:func:`serve_front` (a Front serves once)."""
        if self._used:
            raise RuntimeError("a Front serves once")
        self._used = True
        lim, handover = self.limits, self._handover
        raw = listen if isinstance(listen, stdlib_socket.socket) else bind_listening(
            listen, lim.backlog)
        # A socket only bound (bind_listening with no backlog) refuses connections until
        # now; listen() again on one that listens already only sets its backlog.
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        raw.listen(lim.backlog)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
        try:
            async with trio.open_nursery() as lifespan_nursery:
                if handover is not None:
                    await handover.startup(lifespan_nursery)
                async with trio.open_nursery() as timer:
                    timer.start_soon(self._expire_loop)
                    async with trio.open_nursery() as connections:
                        async with trio.open_nursery() as accepting:
                            accepting.start_soon(self._accept_loop, listener, raw,
                                                 connections)
                            task_status.started(_bound(listener))
                            await shutdown_trigger()
                            accepting.cancel_scope.cancel()
                        await listener.aclose()
                        self._shared.start_draining()
                        if handover is not None:
                            await handover.terminate()
                        deadline = trio.current_time() + lim.drain_timeout
                        connections.cancel_scope.deadline = deadline
                        timer.start_soon(self._close_every_socket_at,
                                         deadline + lim.cut_off_timeout)
                    timer.cancel_scope.cancel()
                # like hypercorn: the app's shutdown runs after a graceful drain only
                if handover is not None:
                    await handover.shutdown()
                lifespan_nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(listener)

    async def _close_every_socket_at(self, when: float) -> None:
        """At ``when`` (past the drain deadline and the cut-off answers' time) close the
        socket of every connection still open. All of them were cancelled at the drain
        deadline; what still holds one is a shielded write to a client that does not
        read (hypercorn shields its socket writes): closing the socket ends that write
        (ClosedResourceError), so no client can hold the shutdown."""
        await trio.sleep_until(when)
        for stream in list(self._accepted):
            log.warning("event=http1_connection_closed_at_shutdown")
            stream.socket.close()

    async def _connection(self, stream: trio.SocketStream) -> None:
        """Everything about one accepted connection; never raises but Cancelled."""
        counters, lim = self._shared.counters, self.limits
        accepted = trio.current_time()
        counters.open += 1
        self._accepted.add(stream)
        conn_stream: Stream = stream
        try:
            if counters.open > lim.max_connections:
                counters.refused += 1
                if self._ssl is None:  # (a TLS client could not read a plain answer)
                    await _close_with(stream, error_bytes(
                        503, "too_many_connections",
                        f"this server holds {lim.max_connections} connections; retry later"),
                        lim)
                return
            if self._ssl is not None:
                tls = trio.SSLStream(stream, self._ssl, server_side=True,
                                     https_compatible=True)
                conn_stream = tls
                shaken = False
                # (the handshake is part of the wait for the first head, whose deadline
                # runs from the accept: a client that sends nothing is closed at
                # head_timeout, TLS or not)
                with trio.move_on_at(accepted + min(lim.tls_handshake_timeout,
                                                    lim.head_timeout)):
                    try:
                        await tls.do_handshake()
                        shaken = True
                    except trio.BrokenResourceError:
                        pass
                if not shaken:
                    counters.tls_failures += 1
                    return
            conn = Connection(self._shared, conn_stream, accepted)
            try:
                rest = await conn.run()
            except Reject as r:
                if r.status != 408:
                    counters.bad_requests += 1
                await _close_with(conn_stream, error_bytes(r.status, r.code, r.message,
                                                           head=conn.head_request,
                                                           headers=r.headers), lim)
                return
            except Closed:
                return
            if rest is not None and self._handover is not None:
                counters.handed_over += 1
                await self._handover.serve(conn_stream, rest)
            elif conn.answered_close:  # that answer may still be on its way: no reset
                await _close_with(conn_stream, b"", lim)
            elif isinstance(conn_stream, trio.SocketStream):
                await conn_stream.send_eof()
        except _CONNECTION_ERRORS:
            pass
        except Exception:  # a bug here must not take the server down with it
            log.exception("event=http1_connection_failed")
        finally:
            counters.open -= 1
            self._accepted.discard(stream)
            await trio.aclose_forcefully(conn_stream)

    async def _expire_loop(self) -> None:
        tick = self._shared.tick()
        while True:
            await trio.sleep(tick)
            self._shared.expire()

    async def _accept_loop(self, listener: trio.SocketListener, raw: stdlib_socket.socket,
                           nursery: trio.Nursery) -> None:
        """Accept until cancelled. ``raw``: the listening socket under ``listener``."""
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("event=http1_accept_failed errno=%s pause_s=0.1", exc.errno)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream)
            # The rest of the backlog now, without yielding: an accept yields to every
            # other task, so under a storm of connections one accept per pass of the
            # scheduler left them queued for seconds, while their head deadlines (which
            # run from the accept) seemed to the clients to fire seconds late.
            for _ in range(ACCEPT_BURST - 1):
                try:
                    conn, _ = raw.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _SKIP_ACCEPT_ERRNOS:
                        continue
                    break  # the awaited accept above meets it again, and says what to do
                nursery.start_soon(self._connection,
                                   trio.SocketStream(trio.socket.from_stdlib_socket(conn)))


async def _close_with(stream: Stream, data: bytes, lim: Limits) -> None:
    """Send ``data`` (an answer with ``Connection: close``, or nothing), then get ready
    to close without a reset: shut the write side and read (and drop) what the client
    still sends, for at most ``linger_timeout`` / ``linger_bytes``. (Closing a socket
    with unread bytes resets it, and a reset can destroy an answer the client has not
    read yet.)"""
    if data:
        with trio.move_on_after(lim.send_timeout):
            await stream.send_all(data)
    if isinstance(stream, trio.SocketStream):
        await stream.send_eof()  # (TLS has no half-close: the client closes once answered)
    budget = lim.linger_bytes
    with trio.move_on_after(lim.linger_timeout):
        while budget > 0:
            chunk = await stream.receive_some(min(budget, 65_536))
            if not chunk:
                break
            budget -= len(chunk)


def bind_listening(listen: str, backlog: int | None,
                   options: tuple[tuple[int, int, int], ...] = ()) -> stdlib_socket.socket:
    """A TCP socket bound to ``host:port`` (``[v6]:port`` too; port 0 = any; no host =
    every address) and listening (not yet when ``backlog`` is None: serving it listens),
    with SO_REUSEADDR and each ``(level, name, value)`` of ``options`` set before the
    bind."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family, kind, proto, _, addr = stdlib_socket.getaddrinfo(
        host, int(port), type=stdlib_socket.SOCK_STREAM, flags=stdlib_socket.AI_PASSIVE)[0]
    sock = stdlib_socket.socket(family, kind, proto)
    try:
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        for level, name, value in options:
            sock.setsockopt(level, name, value)
        sock.bind(addr)
        if backlog is not None:
            sock.listen(backlog)
        else:
            # Until it listens, SO_REUSEADDR would let another socket with it bind the
            # same port (Linux refuses that only against a listening one): a second
            # server on this port then failed only at its listen(), not at its bind.
            # Serving sets it again before listen(), for a restart over TIME_WAIT.
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 0)
    except BaseException:
        sock.close()
        raise
    return sock


def _bound(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_front(front: Front, listen: str | stdlib_socket.socket, *,
                      shutdown_trigger: Callable[[], Awaitable[object]],
                      task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``front`` on ``listen`` ("host:port", or a bound listening socket, which
    it takes over) until ``shutdown_trigger`` returns,
    then drain (see the module docstring). Reports the bound "host:port" through
    ``task_status`` once the app's lifespan startup is done and the port accepts."""
    await front.serve(listen, shutdown_trigger=shutdown_trigger, task_status=task_status)
