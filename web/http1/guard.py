"""What stands between a handed-over HTTP/1.1 connection and hypercorn: every byte the
client sends goes through a :class:`Guard` before hypercorn reads it, so that a head
hypercorn would answer with a bare error (no body: a 400, a 431, or a 501 for a
transfer coding it does not know) gets the front's JSON 4xx instead, in its turn.

The guard parses the stream with its own h11 (the parser hypercorn uses, with the same
head bound), so it finds each request where hypercorn will. It gives hypercorn a
request's head only once the head is complete and passed the checks hypercorn's own
parser skips (web/http1/heads.py: the head's size, its framing, a websocket handshake);
body bytes go through as they come. Among those checks: each head is read by the lean
path's parser (llhttp) too (:func:`lean_refusal`), so a head the lean path refuses is
refused here alike, framing ambiguities first (obs-fold, a Content-Length twice). A head
it refuses is replaced by a *stand-in*: a request of its own, ``Connection: close``, to
a path nobody can guess, which :meth:`Refusals.app` answers with the refusal. hypercorn
serves requests of a connection one after another, so the refusal is answered after
every request before it and closes the connection, as the lean path's refusals do. After
a request that ends the connection (``Connection: close``, HTTP/1.0) the rest of the
stream is read and dropped: hypercorn's parser would fail on it and answer that failure
instead of the request.

The connection stays HTTP/1.1 to its end: hypercorn is kept from switching protocols
(web/http1/handover.py), so a request with ``Upgrade: h2c`` is one more HTTP/1.1
request, the requests after it guarded as any, and the HTTP/2 preface (``PRI *
HTTP/2.0``) is refused ``http2_not_supported`` in its turn, as the lean path refuses
it. Only a websocket handshake ends the guard's parsing: the rest is websocket frames.

A websocket handshake is refused (400 ``bad_websocket_handshake``) when it has a body
(web/http1/heads.py) or bytes come with it: RFC 6455 §4.1 has the client wait for the
server's 101 before its first frame, and hypercorn hands what comes before its answer
to the handshake as frames to a websocket not yet accepted, fails (a bare 400 and a
traceback, or a 400 on a connection left open while the route goes on) and loses the
route's answer. Bytes that come on their own while the handshake is being answered are
held until the answer is out (:meth:`Guard.answered`), then passed on after a 101 or
dropped after a refusal (the connection closes after it).

A body whose chunked framing is malformed is left to hypercorn (the request's head has
gone to the app by then), whose answer to it is the front's JSON 400 too
(web/http1/handover.py, ``_json_errors``). So is a chunk larger than 2^64 - 1 bytes,
which the lean path's parser (llhttp) refuses and h11 takes (a chunk-size of up to 20
hex digits) and waits for: the guard passes hypercorn a chunk-size line its h11 fails
on in place of that one. And so is chunked framing llhttp refuses and h11 takes or waits
on (a line ending in a bare LF, whitespace after a chunk-size): the guard feeds a
chunked body to llhttp as it passes it on (:meth:`Guard._vetted`), and in place of the
framing llhttp refuses passes bytes hypercorn's h11 fails on.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

import h11
import httptools

from web.http1.heads import (
    HTTP2_PREFACE,
    UNSUPPORTED_CODING,
    Refusal,
    framing_refusal,
    host_refusal,
    is_websocket,
    target_refusal,
    websocket_refusal,
)
from web.http1.wire import JSON_CT, error_response

Asgi = Callable[[Any, Any, Any], Any]

# What a guard does with the bytes it is given: parse them (GUARD), pass them on
# unread (PASS: the connection carries websocket frames now, or a body went astray),
# drop them (DROP: the connection ends after what hypercorn has), hold them (HANDSHAKE:
# a websocket handshake went on, its answer has not).
GUARD, PASS, DROP, HANDSHAKE = range(4)
# The largest chunk llhttp takes (the lean path answers a larger one 400 at once).
MAX_CHUNK = 2**64 - 1
# What the guard passes hypercorn for a chunk-size line over MAX_CHUNK: a line h11
# refuses, so that hypercorn answers it as any malformed chunked framing.
_BAD_CHUNK_LINE = b"-\r\n"
# ... and for chunked framing llhttp refuses: a line (a trailer section too) h11 refuses
_BAD_FRAMING = b"-\r\n\r\n"
_SWITCHED = b"HTTP/1.1 101 "
_STAND_IN = b"/.front-refusal/"


class Refusals:
    """The refusals waiting for their stand-in request, by the stand-in's path, and the
    ASGI wrapper that answers them. ``counted`` is called once per refusal."""

    def __init__(self, counted: Callable[[], None] | None = None) -> None:
        self._waiting: dict[bytes, Refusal] = {}
        self._counted = counted

    def stand_in(self, refusal: Refusal, head: bool) -> tuple[bytes, bytes]:
        """(the stand-in's path, its bytes) for ``refusal``; ``head``: the refused
        request was a HEAD (its answer has no body)."""
        path = _STAND_IN + secrets.token_hex(16).encode("ascii")
        self._waiting[path] = refusal
        if self._counted is not None:
            self._counted()
        method = b"HEAD" if head else b"GET"
        return path, b"%s %s HTTP/1.1\r\nhost: front\r\nconnection: close\r\n\r\n" % (
            method, path)

    def forget(self, path: bytes) -> None:
        """The connection ended: its stand-in will not come (or came)."""
        self._waiting.pop(path, None)

    def __len__(self) -> int:
        return len(self._waiting)

    def app(self, app: Asgi) -> Asgi:
        """``app``, except that a stand-in request is answered its refusal."""
        waiting = self._waiting

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if waiting and scope["type"] == "http":
                refusal = waiting.pop(scope.get("raw_path") or b"", None)
                if refusal is not None:
                    status, code, message, extra = refusal
                    body = error_response(status, code, message).body
                    await send({"type": "http.response.start", "status": status,
                                "headers": [JSON_CT, *extra,
                                            (b"content-length", b"%d" % len(body)),
                                            (b"connection", refusal.connection())]})
                    await send({"type": "http.response.body", "body": body})
                    return
            await app(scope, receive, send)

        return asgi


class Guard:
    """One connection's guard (see the module's docstring): :meth:`feed` takes the bytes
    read from the client and returns those hypercorn may read now."""

    def __init__(self, refusals: Refusals, max_head: int) -> None:
        self._refusals = refusals
        self._max_head = max_head
        self._h11 = self._parser()
        # read, not passed on yet; h11's unparsed bytes are always its tail, and at a
        # request's start it is exactly that request's bytes so far
        self._pending = bytearray()
        self.mode = GUARD
        self._stand_in: bytes | None = None
        self._held = bytearray()  # (HANDSHAKE) read before the handshake's answer
        # (a chunked body) llhttp, fed the request's bytes as they are passed on
        self._chunks: httptools.HttpRequestParser | None = None

    def _parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)

    def close(self) -> None:
        if self._stand_in is not None:
            self._refusals.forget(self._stand_in)

    @property
    def holding(self) -> bool:
        """Bytes wait for the answer to a websocket handshake: read no more till then."""
        return bool(self._held)

    def feed(self, data: bytes) -> bytes:
        if self.mode == PASS:
            return data
        if self.mode == DROP:
            return b""
        if self.mode == HANDSHAKE:
            self._held += data
            return b""
        if not self._pending:
            # at a request's start (a body ends with what h11 was given): the empty
            # lines a client may send before a request line (RFC 9112 §2.2), which h11
            # refuses, go nowhere
            if self._h11.their_state is h11.IDLE:
                data = data.lstrip(b"\r\n")
                if not data:
                    return b""
        self._pending += data
        self._h11.receive_data(data)
        out = bytearray()
        self._run(out)
        return bytes(out)

    def _unparsed(self) -> int:
        return len(self._h11.trailing_data[0])

    def _release(self, out: bytearray) -> None:
        """Pass on what h11 has parsed."""
        n = len(self._pending) - self._unparsed()
        if n > 0:
            out += self._pending[:n]
            del self._pending[:n]

    def _run(self, out: bytearray) -> None:
        pending = self._pending
        while True:
            conn = self._h11
            at_head = conn.their_state is h11.IDLE
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if at_head:
                    self._refuse(out, self._refusal_of(exc), pending.startswith(b"HEAD "))
                else:  # in a body hypercorn already reads: it answers as it does
                    out += pending
                    pending.clear()
                    self.mode = PASS
                return
            if _chunk_size(conn, event) > MAX_CHUNK:
                self._refuse_chunk(out)
                return
            if event is h11.NEED_DATA:
                if self._chunks is not None and _BARE_LF.search(
                        self._pending, len(self._pending) - self._unparsed()):
                    # h11 waits for a CRLF that llhttp would not (a line ends at its LF)
                    self._refuse_framing(out)
                    return
                if not self._vetted(out):
                    return
                self._release(out)
                return
            if isinstance(event, h11.Request):
                headers = [(n.lower(), v) for n, v in event.headers.raw_items()]
                refusal = self._check(event, headers, len(pending) - self._unparsed())
                if refusal is not None:
                    self._refuse(out, refusal, event.method == b"HEAD")
                    return
                if is_websocket(event.method, headers):  # no HTTP/1.1 from here
                    if self._unparsed():
                        self._refuse(out, _EARLY_FRAME, False)
                        return
                    out += pending
                    pending.clear()
                    self.mode = HANDSHAKE
                    return
                self._chunks = _chunked_vetter(headers, pending[:len(pending) - self._unparsed()])
                self._release(out)
            elif isinstance(event, h11.Data):
                if not self._vetted(out):
                    return
                self._release(out)
            elif isinstance(event, h11.EndOfMessage):
                if not self._vetted(out):
                    return
                self._chunks = None
                self._release(out)
                if conn.their_state is h11.MUST_CLOSE:
                    # (hypercorn's h11 fails on any byte after such a request)
                    pending.clear()
                    self.mode = DROP
                    return
                # a parser per request: h11 would wait for a response to cycle, and
                # refuse the empty lines stripped here
                rest = bytes(pending).lstrip(b"\r\n")
                pending[:] = rest
                self._h11 = self._parser()
                if rest:
                    self._h11.receive_data(rest)
            else:  # (PAUSED, ConnectionClosed: not for a parser fed like this)
                out += pending
                pending.clear()
                self.mode = PASS
                return

    def _vetted(self, out: bytearray) -> bool:
        """Whether the chunked framing h11 has parsed and not passed on yet is framing
        llhttp (the lean path) takes too; if not, it is failed as :meth:`_refuse_chunk`
        fails a chunk too large. h11 takes whitespace after a chunk-size (``2 ``) and a
        bare LF ending the trailer section, where llhttp refuses them."""
        if self._chunks is None:
            return True
        try:
            self._chunks.feed_data(bytes(self._pending[:len(self._pending) - self._unparsed()]))
        except httptools.HttpParserError:
            self._refuse_framing(out)
            return False
        return True

    def _refuse_framing(self, out: bytearray) -> None:
        """Pass on, in place of what h11 parsed and did not pass on yet, bytes hypercorn's
        h11 fails on wherever the bytes before left it (a chunk-size line, the CRLF
        after a chunk's data, the trailer section), and drop the rest: hypercorn answers
        the front's JSON 400 and closes."""
        out += _BAD_FRAMING
        self._pending.clear()
        self.mode = DROP

    def _refuse_chunk(self, out: bytearray) -> None:
        """h11 has just read a chunk-size line over MAX_CHUNK (it reads one per call, and
        what it parses is passed on after each): pass on what comes before that line
        (the end of the chunk before), then a line hypercorn's h11 fails on, and drop the
        rest: hypercorn answers the front's JSON 400 and closes."""
        parsed = bytes(self._pending[:len(self._pending) - self._unparsed()])
        line = len(parsed) - len(parsed.lstrip(b"\r\n"))  # (a chunk-size is hex digits)
        out += parsed[:line] + _BAD_CHUNK_LINE
        self._pending.clear()
        self.mode = DROP

    def answered(self, data: bytes | bytearray | memoryview) -> bytes:
        """``data``: bytes written to the client while a websocket handshake went on
        unanswered (mode HANDSHAKE). Only its 101 ends the wait: the bytes held since
        are then passed on, frames of the accepted websocket. Anything else is either
        the answer to a request pipelined before the handshake (the 101 is still to
        come) or the handshake's refusal, after which hypercorn closes the connection:
        either way the held bytes stay held, never read as frames."""
        if bytes(data[:len(_SWITCHED)]) != _SWITCHED:
            return b""
        held = bytes(self._held)
        self._held.clear()
        self.mode = PASS
        return held

    def _check(self, event: h11.Request, headers: list[tuple[bytes, bytes]], size: int
               ) -> Refusal | None:
        if size > self._max_head:
            return self._too_large()
        if event.method == b"PRI":
            return HTTP2_PREFACE
        version = event.http_version.decode("ascii")
        return (target_refusal(event.target) or host_refusal(version, headers)
                or framing_refusal(headers) or websocket_refusal(event.method, version, headers)
                or lean_refusal(bytes(self._pending[:size])))

    def _too_large(self) -> Refusal:
        return Refusal(431, "head_too_large",
                       f"request head larger than {self._max_head} bytes")

    def _refusal_of(self, exc: h11.RemoteProtocolError) -> Refusal:
        if exc.error_status_hint == 431:
            return self._too_large()
        if exc.error_status_hint == 501:  # h11's word for a transfer coding it lacks
            return UNSUPPORTED_CODING
        return Refusal(400, "bad_request", f"malformed request: {exc}")

    def _refuse(self, out: bytearray, refusal: Refusal, head: bool) -> None:
        self._stand_in, stand_in = self._refusals.stand_in(refusal, head)
        out += stand_in
        self._pending.clear()
        self.mode = DROP


def head_refusal(head: bytes, max_head: int) -> Refusal | None:
    """What the guard of a handed-over connection answers ``head`` (one complete
    request head), or None if it lets it through. The lean path asks this of a head
    its own parser (llhttp) refuses, so that one cause gets one code on either path:
    llhttp refuses a transfer coding other than ``chunked`` by itself (``gzip``,
    ``chunked, gzip``, ``chunked`` twice), in a message of its own."""
    guard = Guard(Refusals(), max_head)
    conn = guard._h11
    conn.receive_data(head.lstrip(b"\r\n"))  # (the empty lines both parsers skip)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        return guard._refusal_of(exc)
    if not isinstance(event, h11.Request):
        return None
    headers = [(n.lower(), v) for n, v in event.headers.raw_items()]
    return guard._check(event, headers, len(head))


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _chunked_vetter(headers: list[tuple[bytes, bytes]], head: bytes | bytearray
                    ) -> httptools.HttpRequestParser | None:
    """llhttp fed ``head``, for :meth:`Guard._vetted`, if the request's body is chunked
    (else None: a Content-Length frames it alike for both parsers)."""
    if not any(name == b"transfer-encoding" for name, _ in headers):
        return None
    parser = httptools.HttpRequestParser(_Heads())
    parser.feed_data(bytes(head))  # (lean_refusal took it)
    return parser


class _Heads:
    """httptools callbacks for :func:`lean_refusal`: none, the head is only vetted."""


def lean_refusal(head: bytes) -> Refusal | None:
    """The lean path's refusal of ``head`` (one complete request head, as h11 found
    it), or None. h11 takes what llhttp refuses: a folded header line (obs-fold), a
    Content-Length twice or as a list (``2, 2``), a bare LF ending a line (h11 even ends
    the head at ``\n\n``), a control byte or DEL in a value, ``HTTP/1.2``, a method
    llhttp does not know (``get``, which hypercorn serves as GET). Reading the same
    bytes with the lean path's own parser gives them the lean path's answer, and the
    framing ambiguities among them (a proxy before the node may frame the message
    otherwise: request smuggling, RFC 9112 §6.3, §11.2) are refused on either path."""
    parser = httptools.HttpRequestParser(_Heads())
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        return None  # (an upgrade or CONNECT head: llhttp stops after it)
    except httptools.HttpParserError as exc:
        return Refusal(400, "bad_request", f"malformed request: {exc}")
    return None


def _chunk_size(conn: h11.Connection, event: object) -> int:
    """The size of the chunk whose chunk-size line h11 read to give ``event``, or a
    number no larger (0 outside a chunked body): what is left of the chunk, plus
    ``event``'s data if the chunk starts with it. h11 keeps no public record of what is
    left; a test (tests/unit/test_http1_guard.py) fails should it rename these."""
    left = int(getattr(getattr(conn, "_reader", None), "_bytes_in_chunk", 0))
    if isinstance(event, h11.Data) and event.chunk_start:
        left += len(event.data)
    return left


# RFC 6455 §4.1
_EARLY_FRAME = Refusal(400, "bad_websocket_handshake",
                       "a websocket client sends nothing after its handshake until the "
                       "server's 101")
