"""One accepted connection on the lean path: parse, answer hot requests, or say where
the connection must be handed over.

Framing is found here, not left to llhttp: a request head ends at the first
``\\r\\n\\r\\n`` (llhttp requires CRLF, so this is where it ends for llhttp too) and
only that head is fed to the parser; a body is fed exactly ``Content-Length`` bytes,
or (chunked) up to one CRLF at a time, since a chunked message can only end right
after a CRLF. So the offset where each request starts is always known, and a request
that is not hot can be handed over from its first byte, together with whatever was
pipelined behind it. A parser that ever sees a second message begin inside one
request's bytes (it cannot, but this is where a framing disagreement would show)
is answered 400 and closed rather than trusted.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import cast

import httptools
import trio

from web.http1.guard import head_refusal
from web.http1.heads import (
    HTTP2_PREFACE,
    Refusal,
    framing_refusal,
    handshake_ascii,
    host_refusal,
    target_refusal,
    websocket_refusal,
)
from web.http1.limits import Limits
from web.http1.stats import Counters
from web.http1.wire import (
    CLOSE,
    CONTINUE,
    KEEP_ALIVE,
    CutOff,
    Headers,
    Request,
    Response,
    cut_off_response,
    encode_response,
    error_response,
    is_cancellation,
    origin_form,
)

log = logging.getLogger(__name__)

IsHot = Callable[[bytes, bytes], bool]
Handler = Callable[[Request], Awaitable[Response]]
# Every stream this module reads: trio.SocketStream or trio.SSLStream over one.
Stream = trio.abc.Stream
_BARE_LF = re.compile(rb"(?<!\r)\n")
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _is_head(buf: bytes, pos: int) -> bool:
    """Whether the request whose bytes start at ``buf[pos]`` (empty lines first, which
    llhttp skips) is a HEAD: known before the parser has read its method."""
    if buf.startswith(b"HEAD ", pos):
        return True
    return buf[pos:pos + 1] in (b"\r", b"\n") and buf[pos:].lstrip(b"\r\n").startswith(b"HEAD ")


def _peer(stream: Stream) -> str | None:
    """The host of the connection's peer (one syscall per connection)."""
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        peer = inner.socket.getpeername() if isinstance(inner, trio.SocketStream) else None
    except OSError:
        return None
    return str(peer[0]) if isinstance(peer, tuple) else None


class Reject(Exception):
    """Answer ``status`` with a JSON error (and ``headers``), then close (after a
    lingering drain)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers

    @classmethod
    def of(cls, refusal: Refusal) -> Reject:
        return cls(refusal.status, refusal.code, refusal.message, refusal.headers)


class Closed(Exception):
    """Close the connection without an answer (client gone, or a write timed out)."""


# What a connection is waiting for; a deadline that passes in one of these phases
# ends it as follows. (While the handler runs there is no deadline.)
IDLE, HEAD, BODY, SEND, BUSY = range(5)
INF = math.inf


class Shared:
    """What a server shares with its connections: settings, callbacks, counters, the
    connections in their lean phase, and the drain state."""

    __slots__ = ("_cut_off", "conns", "counters", "draining", "handle", "is_hot", "limits",
                 "oversized_to_handler")

    def __init__(self, limits: Limits, is_hot: IsHot | None, handle: Handler,
                 oversized_to_handler: bool = False, cut_off: CutOff | None = None) -> None:
        self.limits = limits
        self.is_hot = is_hot  # None: no hand-over target, every request is hot
        self.handle = handle
        self._cut_off = cut_off or cut_off_response
        # a body over max_body_bytes: the handler answers (Request.oversized), not 413
        self.oversized_to_handler = oversized_to_handler
        self.counters = Counters()
        self.draining = False
        self.conns: set[Connection] = set()

    def tick(self) -> float:
        """How often :meth:`expire` should run: deadlines are that accurate."""
        lim = self.limits
        shortest = min(lim.head_timeout, lim.body_timeout, lim.idle_timeout,
                       lim.send_timeout)
        return min(max(shortest / 4, 0.01), 0.5)

    def expire(self) -> None:
        """End every connection whose deadline passed. One timer for all connections:
        a cancel scope per read and per write costs more than the rest of a small
        request (trio registers each deadline), so a connection only writes down its
        phase and deadline (two attribute stores) and this cancels it. Each deadline is
        read from the clock when its wait starts (~0.2 us): one computed from the time
        this last ran was early by however late it ran, seconds when the loop lags."""
        now = trio.current_time()
        for conn in [c for c in self.conns if c.deadline <= now]:
            conn.cancel(conn.phase)

    def cut_off_answer(self, req: Request) -> Response:
        """The answer to ``req``, whose handler the drain deadline cancelled (the
        front's ``cut_off``), counted and logged; the front's own if that one fails."""
        try:
            resp = self._cut_off(req)
        except Exception:
            log.exception("event=http1_cut_off_failed method=%r path=%r", req.method, req.path)
            resp = cut_off_response(req)
        self.counters.cut_off += 1
        log.warning("event=http1_cut_off method=%s path=%r status=%d",
                    req.method.decode("latin-1"), req.path.decode("latin-1"), resp.status)
        return resp

    def start_draining(self) -> None:
        self.draining = True
        for conn in [c for c in self.conns if c.phase == IDLE]:
            conn.cancel(IDLE)


class Connection:
    """Parser callbacks + the read/answer loop of one connection. :meth:`run`
    returns ``None`` when the connection is done (the caller closes it) or the
    bytes to hand over (starting at the first byte of the first request that is not
    hot); it raises :class:`Reject`, :class:`Closed`, or the stream's errors."""

    __slots__ = ("answered_close", "begun", "body", "body_size", "client", "coded", "deadline",
                 "done", "expired", "fresh", "head_request", "headers", "keep", "parser",
                 "phase", "scope", "shared", "stream", "too_large", "url")

    def __init__(self, shared: Shared, stream: Stream, accepted: float | None = None) -> None:
        self.shared = shared
        self.stream = stream
        self.parser = httptools.HttpRequestParser(self)
        self.begun = 0
        self.done = self.keep = False
        self.url = b""
        self.headers: Headers = []
        self.coded = False  # the request has a Transfer-Encoding
        self.body: list[bytes] = []
        self.body_size = 0
        self.too_large = False
        self.phase = IDLE
        # the first head's deadline runs from the accept (``accepted``: before a TLS
        # handshake), see Limits.head_timeout
        self.deadline = (trio.current_time() if accepted is None else accepted
                         ) + shared.limits.head_timeout
        self.scope = trio.CancelScope()
        self.expired = -1
        self.fresh = True  # nothing received yet
        self.answered_close = False  # the last answer said Connection: close
        # the request being read is a HEAD: a refusal of it has no body
        self.head_request = False
        self.client = _peer(stream)

    def cancel(self, phase: int) -> None:
        """End the connection: the deadline of ``phase`` passed (or, for IDLE, the
        server drains)."""
        if self.expired < 0:
            self.expired = phase
            self.scope.cancel()

    # -- httptools callbacks ------------------------------------------------------
    def on_message_begin(self) -> None:
        self.begun += 1
        self.url = b""
        self.headers = []
        self.coded = False
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"transfer-encoding":
            self.coded = True
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.shared.limits.max_body_bytes:
            self.too_large = True
            raise ValueError("body too large")  # stops the parser; run() answers 413
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True
        # now: llhttp resets the flags this reads as soon as the callback returns
        self.keep = self.parser.should_keep_alive()

    # -- the loop -----------------------------------------------------------------
    async def run(self) -> bytes | None:
        shared = self.shared
        shared.conns.add(self)
        try:
            with self.scope:
                return await self._loop()
        finally:
            shared.conns.discard(self)
        self._expired()
        return None

    def _expired(self) -> None:
        """The connection's deadline passed (or the server drains): how it ends.
        Returns (close silently) for IDLE; raises :class:`Reject` or :class:`Closed`."""
        lim, counters = self.shared.limits, self.shared.counters
        phase = self.expired
        if phase == IDLE:
            if not self.shared.draining:
                if self.fresh:
                    counters.head_timeouts += 1
                else:
                    counters.idle_timeouts += 1
            return None
        if phase == HEAD:
            counters.head_timeouts += 1
            raise Reject(408, "request_timeout",
                         f"request head not complete within {lim.head_timeout}s")
        if phase == BODY:
            counters.body_timeouts += 1
            raise Reject(408, "request_timeout",
                         f"request body not complete within {lim.body_timeout}s")
        counters.send_timeouts += 1
        raise Closed()

    async def _loop(self) -> bytes | None:
        out: list[bytes] = []
        try:
            return await self._requests(out)
        except (Reject, Closed):
            # The answers to the requests before the one refused are computed: they
            # go first. The refusal closes the connection, and a pipelining client
            # (a peer's link, web/http1/pipeline.py, among them) would otherwise give
            # the refusal to the oldest request it waits for, someone else's.
            if out:
                await self._flush(out)
            raise

    async def _requests(self, out: list[bytes]) -> bytes | None:
        """The loop of :meth:`_loop`; ``out`` holds answers not sent yet."""
        shared, parser = self.shared, self.parser
        lim, counters = shared.limits, shared.counters
        buf, pos, scanned = b"", 0, 0
        head_deadline = self.deadline  # the first request's: from accept
        while True:
            self.head_request = _is_head(buf, pos)
            end = buf.find(b"\r\n\r\n", max(pos, scanned - 3))
            if end < 0:
                pending = len(buf) - pos
                if pending > lim.max_head_bytes:
                    raise Reject(431, "head_too_large",
                                 f"request head larger than {lim.max_head_bytes} bytes")
                if b"\n" in buf[max(pos, scanned - 1):] and _BARE_LF.search(
                        buf[pos:].lstrip(b"\r\n")):
                    # a line ends in a bare LF: llhttp refuses the head, and a head
                    # of such lines never ends in CRLF CRLF here (408 at the head
                    # timeout, where a handed-over connection's guard answers 400)
                    raise Reject(400, "bad_request",
                                 "malformed request: a line of the head ends in a bare LF")
                if out:
                    await self._flush(out)
                if pending:
                    data = await self._read(HEAD, head_deadline)
                else:
                    if shared.draining:
                        return None
                    data = await self._read(IDLE, head_deadline if self.fresh
                                            else trio.current_time() + lim.idle_timeout)
                if not data:
                    return None  # EOF, or idle too long (a partial head: no answer either)
                if pending:
                    buf = buf[pos:] + data
                else:
                    if not self.fresh:
                        head_deadline = trio.current_time() + lim.head_timeout
                    self.fresh = False
                    buf = data
                scanned = len(buf) - len(data)
                pos = 0
                continue
            head_end = end + 4
            if head_end - pos > lim.max_head_bytes:
                raise Reject(431, "head_too_large",
                             f"request head larger than {lim.max_head_bytes} bytes")
            self.begun = 0
            self.done = False
            upgrade = False
            try:  # (a whole read that is one head goes as it is: a slice costs ~1us more)
                parser.feed_data(buf if pos == 0 and head_end == len(buf)
                                 else memoryview(buf)[pos:head_end])
            except httptools.HttpParserUpgrade:
                upgrade = True
            except httptools.HttpParserError as exc:
                # in the guard's words where it has a code of its own for these bytes
                # (a transfer coding but chunked, which llhttp refuses itself): one
                # cause, one code, handed over or not
                refusal = head_refusal(bytes(buf[pos:head_end]), lim.max_head_bytes)
                if refusal is not None and refusal.code != "bad_request":
                    raise Reject.of(refusal) from None
                raise Reject(400, "bad_request", f"malformed request: {exc}") from None
            if not self.begun:  # empty lines between requests: skipped
                pos = scanned = head_end
                continue
            method = parser.get_method()
            if method == b"PRI":  # the HTTP/2 preface: never handed to hypercorn (h2)
                raise Reject.of(HTTP2_PREFACE)
            if self.coded:
                refusal = framing_refusal(self.headers)
                if refusal is not None:
                    raise Reject.of(refusal)
            url = self.url
            version = parser.get_http_version()
            if version == "0.9":
                # a request line without a version, which llhttp takes for HTTP/0.9
                # and h11 (a handed-over connection) refuses: served here as HTTP/1.1
                raise Reject(400, "bad_request", "malformed request: no HTTP version")
            refusal = host_refusal(version, self.headers)
            if refusal is not None:
                raise Reject.of(refusal)
            if url[:1] != b"/":  # absolute-form: served as its origin-form
                refusal = target_refusal(url)
                if refusal is not None:
                    raise Reject.of(refusal)
                url = origin_form(url) or url
            q = url.find(b"?")
            path, query = (url, b"") if q < 0 else (url[:q], url[q + 1:])
            if shared.is_hot is not None and (upgrade or not shared.is_hot(method, path)):
                if upgrade and not handshake_ascii(self.headers):
                    raise Reject(400, "bad_request",
                                 "an upgrade header has bytes that are not ASCII")
                # a handshake hypercorn would refuse with a bare 400
                refusal = websocket_refusal(method, parser.get_http_version(), self.headers)
                if refusal is not None:
                    raise Reject.of(refusal)
                if out:
                    await self._flush(out)
                # without the empty lines llhttp skipped before the request line
                # (RFC 9112 §2.2): hypercorn's h11 answers them with a bare 400
                return buf[pos:].lstrip(b"\r\n")
            pos = scanned = head_end
            oversized = False
            if not self.done:
                try:
                    buf, pos = await self._read_body(buf, pos, out)
                except Reject as r:
                    if r.status != 413 or not shared.oversized_to_handler:
                        raise
                    # the handler answers (it may refuse for another reason first);
                    # the rest of the body is never read: the connection ends after
                    oversized = True
                    self.body, self.keep = [], False
                scanned = pos
            body = self.body
            keep = self.keep
            version = parser.get_http_version()
            req = Request(method, path, query, self.headers,
                          body[0] if len(body) == 1 else b"".join(body), version, keep,
                          oversized, self.client)
            try:
                resp = await shared.handle(req)
            except Exception:
                log.exception("event=http1_handler_failed method=%s path=%r", method, path)
                counters.handler_errors += 1
                resp = error_response(500, "internal_error", "the server failed to answer")
            except BaseException as exc:
                if is_cancellation(exc):
                    # The drain deadline (or the server's end) came first: the client is
                    # still answered, after the answers before this one.
                    await self._answer_cut_off(req, out)
                raise
            counters.served += 1
            keep = keep and not shared.draining
            out.append(encode_response(
                resp, head=method == b"HEAD",
                connection=CLOSE if not keep else (b"" if version == "1.1" else KEEP_ALIVE)))
            if not keep:
                self.answered_close = True
                await self._flush(out)
                return None
            if len(out) >= lim.max_pipelined:
                await self._flush(out)
            head_deadline = trio.current_time() + lim.head_timeout

    async def _answer_cut_off(self, req: Request, out: list[bytes]) -> None:
        """Answer ``req``, whose handler was just cancelled, with the cut-off answer
        (``Connection: close``), after the answers still in ``out``; then read what
        the client still sends until it closes (a close with unread bytes resets the
        connection, and the reset can destroy the answer before it is read). All of
        it shielded, as this runs in a cancelled scope, and within
        ``cut_off_timeout``: a client that does not read cannot hold the shutdown."""
        lim = self.shared.limits
        resp = self.shared.cut_off_answer(req)
        out.append(encode_response(resp, head=req.method == b"HEAD", connection=CLOSE))
        data = b"".join(out)
        out.clear()
        self.answered_close = True
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + lim.cut_off_timeout
            try:
                await self.stream.send_all(data)
                if isinstance(self.stream, trio.SocketStream):
                    await self.stream.send_eof()  # (TLS has no half-close)
                budget = lim.linger_bytes
                while budget > 0:
                    chunk = await self.stream.receive_some(min(budget, 65_536))
                    if not chunk:
                        break
                    budget -= len(chunk)
            except _STREAM_ERRORS:
                pass

    async def _read_body(self, buf: bytes, pos: int, out: list[bytes]) -> tuple[bytes, int]:
        """Feed the body of the current request; return the buffer and the offset just
        past the body's last byte."""
        lim, parser = self.shared.limits, self.parser
        length: int | None = None
        expect = False
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value)  # digits only and no duplicate: llhttp checked
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        if length is not None and length > lim.max_body_bytes:
            raise Reject(413, "body_too_large",
                         f"body is larger than {lim.max_body_bytes} bytes")
        if expect and len(buf) == pos and parser.get_http_version() == "1.1":
            out.append(CONTINUE)
            await self._flush(out)
        deadline = trio.current_time() + lim.body_timeout
        raw_limit = 2 * lim.max_body_bytes + 65_536  # chunk framing and extensions
        raw = 0
        while True:
            if length is not None:
                stop = pos + min(len(buf) - pos, length)
                length -= stop - pos
            else:
                crlf = buf.find(b"\r\n", pos)
                if crlf >= 0:
                    stop = crlf + 2
                else:  # no message end in here; keep a lone CR for its LF
                    stop = len(buf) - (1 if buf.endswith(b"\r") else 0)
                raw += stop - pos
                if raw > raw_limit:
                    raise Reject(413, "body_too_large",
                                 f"body is larger than {lim.max_body_bytes} bytes")
            if stop > pos:
                try:
                    parser.feed_data(memoryview(buf)[pos:stop])
                except httptools.HttpParserError as exc:
                    if self.too_large:
                        raise Reject(413, "body_too_large",
                                     f"body is larger than {lim.max_body_bytes} bytes"
                                     ) from None
                    raise Reject(400, "bad_request", f"malformed body: {exc}") from None
                pos = stop
                if self.done:
                    return buf, pos
                if self.begun != 1 or length == 0:
                    raise Reject(400, "bad_request", "request framing is inconsistent")
                continue
            if out:  # (a body deadline that passes drops what was not sent)
                await self._flush(out)
            data = await self._read(BODY, deadline)
            if not data:
                raise Closed()
            buf, pos = buf[pos:] + data, 0

    async def _read(self, phase: int, deadline: float) -> bytes | None:
        """Up to ``read_size`` bytes (``b""`` at EOF) before ``deadline``. When the
        deadline passes (or, IDLE, the server drains): ``None`` for IDLE, else
        :class:`Reject` (408) from :meth:`_expired`."""
        self.phase, self.deadline = phase, deadline
        data = await self.stream.receive_some(self.shared.limits.read_size)
        self.phase, self.deadline = BUSY, INF
        if self.expired >= 0:  # expired after the bytes came, before this task ran
            self._expired()
            return None
        return cast(bytes, data)  # trio's streams return bytes

    async def _flush(self, out: list[bytes]) -> None:
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.phase = SEND
        self.deadline = trio.current_time() + self.shared.limits.send_timeout
        await self.stream.send_all(data)
        self.phase, self.deadline = BUSY, INF
        if self.expired >= 0:
            self._expired()
