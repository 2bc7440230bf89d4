"""A lean pooled HTTP/1.1 client for node-to-node requests: keep-alive connections per
``host:port``, answers parsed by llhttp (``httptools.HttpResponseParser``), one hard
deadline per request, optional TLS.

Its errors say what a caller may do next. :class:`NotSent`: no byte of the request
can have been read by the peer (the connection could not be made, or could not be
made in time), so trying again cannot apply the request twice. :class:`NoAnswer`:
the request was sent, or partly sent, and no complete answer came: the peer may or
may not have acted on it.

The stale-connection rule (as in the h11 pool it replaces): a pooled connection that
is already readable before use (the peer closed it, or sent bytes nobody asked for)
is dropped unused, which is certain; one that ends without a byte of answer after the
request went out was most likely closed by the peer's idle timer at that same moment,
so an idempotent request is sent once more on a new connection (RFC 9110 §9.2.2) and
every other idle connection to that peer is dropped with it.
"""

from __future__ import annotations

import select
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

import httptools
import trio

from web.http1.request_bytes import FRAMING, Headers, encode_request
from web.http1.request_bytes import InvalidRequest as InvalidRequest

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class ClientError(Exception):
    """The peer at ``target`` gave no usable answer."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target


class NotSent(ClientError):
    """No byte of the request can have reached the peer: safe to retry."""


class NoAnswer(ClientError):
    """The request was (maybe partly) sent and no complete answer came: ambiguous."""


class Answer(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]  # names lower-cased, values as received
    body: bytes


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    opened: int
    reused: int
    #: pooled connections found closed (or readable, or idle past ``max_idle_age``)
    #: before use, dropped unused
    stale_dropped: int
    #: idempotent requests sent again after a reused connection ended unanswered
    retried: int
    idle: int


class _Stale(Exception):
    """A reused connection ended before a byte of the answer."""


class _Conn:
    """One connection and its response parser (callbacks are methods here)."""

    __slots__ = ("begun", "body", "done", "framed", "headers", "idle_since", "keep", "parser",
                 "poll", "reusable", "size", "status", "stream", "used")

    def __init__(self, stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
                 fileno: int) -> None:
        self.stream = stream
        self.poll = select.poll()
        self.poll.register(fileno, select.POLLIN)
        self.parser = httptools.HttpResponseParser(self)
        self.reusable = self.keep = True
        self.begun = self.size = self.status = self.used = 0
        self.done = self.framed = False
        self.idle_since = 0.0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def readable(self) -> bool:
        return bool(self.poll.poll(0))

    def on_message_begin(self) -> None:
        self.begun += 1
        self.headers, self.body, self.size, self.framed = [], [], 0, False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in FRAMING:
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.begun -= 1
        else:
            self.done = True
            # now: llhttp resets the flags this reads as soon as the callback returns
            self.keep = self.parser.should_keep_alive()


Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


async def open_stream(target: str, connect_timeout: float,
                      ssl_context: ssl.SSLContext | None = None,
                      server_hostname: str | None = None) -> tuple[Stream, int]:
    """A connection to ``target`` ("host:port"; TLS with ``ssl_context``, checked
    against ``server_hostname``, default the target's host) and its socket's file
    descriptor, within ``connect_timeout`` seconds. Raises :class:`NotSent`."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    stream: Stream
    try:
        with trio.fail_after(connect_timeout):
            tcp = await trio.open_tcp_stream(host, int(port))
            stream = tcp
            if ssl_context is not None:
                stream = trio.SSLStream(
                    tcp, ssl_context, server_hostname=server_hostname or host,
                    https_compatible=True)
                try:
                    await stream.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
    except (*_ERRORS, trio.TooSlowError, ValueError) as exc:
        # a failed TLS handshake is a BrokenResourceError whose cause says why
        # (CERTIFICATE_VERIFY_FAILED...): that is what an operator needs to read
        why = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else None
        raise NotSent(target, f"cannot connect: {why or exc!r}") from None
    return stream, tcp.socket.fileno()


class Pool:
    """Keep-alive connections per ``host:port``. ``timeout`` bounds a whole request
    (connect included); ``connect_timeout`` a connection; ``max_idle`` the idle
    connections kept per peer, ``max_idle_age`` how long one may stay idle before it is
    dropped unused (keep it below the peers' keep-alive idle timeout, so that a peer
    rarely closes a connection just as a request goes out on it). With
    ``ssl_context`` every connection is TLS, checked against ``server_hostname``
    (default: the target's host)."""

    def __init__(self, *, timeout: float = 5.0, connect_timeout: float = 2.0,
                 max_idle: int = 32, max_idle_age: float = 30.0,
                 max_answer_bytes: int = 16 * 1024 * 1024,
                 ssl_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, read_size: int = 65_536) -> None:
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._max_idle = max_idle
        self._max_idle_age = max_idle_age
        self._max_answer = max_answer_bytes
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._read_size = read_size
        self._idle: dict[str, list[_Conn]] = {}
        self._opened = self._reused = self._stale = self._retried = 0

    async def connect(self, target: str) -> tuple[Stream, int]:
        """A new connection to ``target``, made as the pool makes its own (its connect
        timeout, TLS context and server name); raises :class:`NotSent`."""
        return await open_stream(target, self._connect_timeout, self._ssl,
                                 self._server_hostname)

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(self._opened, self._reused, self._stale, self._retried,
                              sum(len(c) for c in self._idle.values()))

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await trio.aclose_forcefully(conn.stream)

    async def request(self, target: str, method: bytes, path: bytes, headers: Headers = (),
                      body: bytes = b"", *, deadline_after: float | None = None,
                      idempotent: bool | None = None,
                      on_send: Callable[[], object] | None = None) -> Answer:
        """Send one request to ``target`` ("host:port") and return the complete answer
        within ``deadline_after`` seconds (default: the pool's ``timeout``).
        ``idempotent`` (default: by method) says whether the request may be sent a
        second time after a reused connection ended without a byte of answer (a
        conditional write is not: its second copy could fail on its first).
        ``on_send`` is called when the request's bytes start to go out (from then on
        a failure is :class:`NoAnswer`): a caller cancelled later knows the peer may
        have it. Raises :class:`InvalidRequest` (nothing sent), :class:`NotSent`,
        :class:`NoAnswer`."""
        try:
            host = target.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidRequest(f"target {target!r} is not ASCII") from None
        data = encode_request(host, method, path, headers, body)
        closing = any(n.lower() == b"connection" and b"close" in v.lower()
                      for n, v in headers)
        limit = self._timeout if deadline_after is None else deadline_after
        sent = [False]
        again = method in IDEMPOTENT if idempotent is None else idempotent
        with trio.move_on_after(limit):
            return await self._request(target, method, data, closing, sent, again, on_send)
        if sent[0]:
            raise NoAnswer(target, f"no complete answer within {limit}s")
        raise NotSent(target, f"no connection within {limit}s")

    async def _request(self, target: str, method: bytes, data: bytes, closing: bool,
                       sent: list[bool], again: bool,
                       on_send: Callable[[], object] | None) -> Answer:
        for attempt in (0, 1):
            try:
                conn = await self._acquire(target)
            except NotSent as exc:
                if attempt == 0:
                    raise
                # the first attempt went out on the stale connection: maybe it was read
                raise NoAnswer(target, f"retry after a closed connection: {exc}") from None
            try:
                sent[0] = True
                if on_send is not None:
                    on_send()
                answer = await self._exchange(conn, target, data, method == b"HEAD")
            except _Stale:
                await trio.aclose_forcefully(conn.stream)
                for idle in self._idle.pop(target, []):
                    await trio.aclose_forcefully(idle.stream)
                if attempt == 0 and again:
                    self._retried += 1
                    continue
                raise NoAnswer(target, "connection closed before any answer") from None
            except BaseException:
                await trio.aclose_forcefully(conn.stream)
                raise
            if closing or not conn.reusable or not conn.keep:
                await trio.aclose_forcefully(conn.stream)
            else:
                pool = self._idle.setdefault(target, [])
                if len(pool) < self._max_idle:
                    conn.idle_since = trio.current_time()
                    pool.append(conn)
                else:
                    await trio.aclose_forcefully(conn.stream)
            return answer
        raise AssertionError("unreachable")

    async def _acquire(self, target: str) -> _Conn:
        pool = self._idle.get(target)
        while pool:
            conn = pool.pop()
            if (not conn.readable()
                    and trio.current_time() - conn.idle_since <= self._max_idle_age):
                self._reused += 1
                return conn
            # closed by the peer (or unasked-for bytes), or idle so long that the peer
            # may be closing it right now: never used
            self._stale += 1
            await trio.aclose_forcefully(conn.stream)
        stream, fileno = await self.connect(target)
        self._opened += 1
        return _Conn(stream, fileno)

    async def _exchange(self, conn: _Conn, target: str, data: bytes, head: bool) -> Answer:
        reused = conn.used > 0
        conn.used += 1
        conn.begun = 0
        conn.done = False
        conn.status = 0
        try:
            await conn.stream.send_all(data)
        except _ERRORS as exc:
            if reused:
                raise _Stale() from None
            raise NoAnswer(target, f"send failed: {exc!r}") from None
        got = b""
        while True:
            try:
                chunk = cast(bytes, await conn.stream.receive_some(self._read_size))
            except _ERRORS as exc:
                if reused and not got:
                    raise _Stale() from None
                raise NoAnswer(target, f"receive failed: {exc!r}") from None
            if not chunk:
                if reused and not got:
                    raise _Stale()
                if conn.status >= 200 and not conn.framed and not head:
                    conn.reusable = False  # an answer delimited by the close: it is complete
                    return Answer(conn.status, conn.headers, b"".join(conn.body))
                raise NoAnswer(target, "connection closed before the answer ended")
            if head:  # a HEAD answer has no body whatever its content-length says
                got += chunk
                answer = self._head_answer(conn, target, got)
                if answer is not None:
                    return answer
                continue
            got = got or chunk
            try:
                conn.parser.feed_data(chunk)
            except httptools.HttpParserError as exc:
                conn.reusable = False
                raise NoAnswer(target, f"malformed answer: {exc}") from None
            if conn.size > self._max_answer:
                conn.reusable = False
                raise NoAnswer(target, f"answer larger than {self._max_answer} bytes")
            if conn.done:
                if conn.begun > 1:
                    conn.reusable = False  # bytes after the answer: the stream is not ours
                return Answer(conn.status, conn.headers, b"".join(conn.body))

    def _head_answer(self, conn: _Conn, target: str, got: bytes) -> Answer | None:
        """The answer to a HEAD once its (final) head is in ``got``, else None. The
        connection gets a fresh parser: the old one waits for a body that never comes."""
        start = 0
        while True:
            end = got.find(b"\r\n\r\n", start)
            if end < 0:
                if len(got) - start > self._max_answer:
                    raise NoAnswer(target, "answer head too large")
                return None
            conn.parser = httptools.HttpResponseParser(conn)
            conn.begun = 0
            try:
                conn.parser.feed_data(got[start:end + 4])
            except httptools.HttpParserError as exc:
                conn.reusable = False
                raise NoAnswer(target, f"malformed answer: {exc}") from None
            if not 100 <= conn.status < 200:
                if end + 4 != len(got):
                    conn.reusable = False
                conn.keep = conn.parser.should_keep_alive()
                conn.parser = httptools.HttpResponseParser(conn)
                return Answer(conn.status, conn.headers, b"")
            start = end + 4
