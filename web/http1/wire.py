"""The values the lean HTTP/1.1 path exchanges with its handler, and their bytes.

:class:`Request` and :class:`Response` are immutable named tuples (not frozen
dataclasses: building a frozen dataclass costs several times a tuple, and one of each
is built per request). :func:`encode_response` turns a response into the exact bytes
written to the socket; :func:`error_response` is the one JSON error shape every
answer the front gives by itself uses: ``{"error": code, "message": text}``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import NamedTuple

import trio

Headers = list[tuple[bytes, bytes]]


class Request(NamedTuple):
    """One complete request as the front read it.

    ``path`` is the raw request target up to ``?`` (not percent-decoded), in
    origin-form (an absolute-form target, ``http://host/p?q``, arrives as ``/p?q``:
    :func:`origin_form`); ``query`` is what follows ``?`` (``b""`` when absent).
    Header names are lower-cased, values are exactly as received. ``body`` is the
    whole body, chunked bodies already decoded. ``keep_alive`` says whether the
    connection stays open after this request (HTTP version and ``Connection`` header
    considered).
    ``oversized``: the body is larger than ``Limits.max_body_bytes`` and was not
    (wholly) read, so ``body`` is ``b""``; only a Front made with
    ``oversized_to_handler=True`` passes such a request on, and it closes the
    connection after the answer. ``client``: the peer's address (host only), when
    known."""

    method: bytes
    path: bytes
    query: bytes
    headers: Headers
    body: bytes
    http_version: str
    keep_alive: bool
    oversized: bool = False
    client: str | None = None


class Response(NamedTuple):
    """What a handler answers. The front writes ``Content-Length``, ``Connection``
    and ``Date`` itself and drops those (and ``Transfer-Encoding``, ``Keep-Alive``)
    from ``headers``; names are sent as given. Header values must not contain CR,
    LF or NUL: the handler is trusted, nothing checks them on this path."""

    status: int
    headers: Headers
    body: bytes


_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*")


def origin_form(target: bytes) -> bytes | None:
    """The origin-form (path and query) of an absolute-form request target, or None
    when ``target`` is not one (origin-form, ``*``, authority-form).

    RFC 9112 §3.2.2: a server must accept ``http://host/p?q`` and serve it as
    ``/p?q`` (``/`` when the path is empty). Everything after the authority is kept
    byte for byte, so a key is the same whichever form names it: a ``%23`` or ``%3F``
    in the path stays encoded here, where a URL parser run over the *decoded* path
    (quart's, for a target that does not start with ``/``) would cut the key at it."""
    found = _authority(target)
    if found is None:
        return None
    rest = target[found[1]:]
    return rest if rest[:1] == b"/" else b"/" + rest


def _authority(target: bytes) -> tuple[int, int] | None:
    """Where the authority of an absolute-form ``target`` starts and ends, or None."""
    sep = target.find(b"://")
    if sep <= 0 or not _SCHEME.fullmatch(target, 0, sep):
        return None
    start = sep + 3
    cut = len(target)
    for stop in (b"/", b"?", b"#"):  # the authority ends at the first of these
        at = target.find(stop, start, cut)
        if at >= 0:
            cut = at
    return start, cut


# RFC 3986 §3.2.2-3: host [":" port], the host an IP literal in brackets or a reg-name
# (IPv4 is one), never empty (RFC 9110 §4.2.1: an http URI with an empty host is
# invalid); no userinfo (RFC 9110 §4.2.4 has a recipient treat it as an error).
_AUTHORITY = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?")


def authority_ok(value: bytes) -> bool:
    """Whether ``value`` is an authority as a ``Host`` header or an absolute-form target
    carries one (host and optional port; see ``_AUTHORITY``)."""
    return _AUTHORITY.fullmatch(value) is not None


def bad_absolute_form(target: bytes) -> bool:
    """Whether ``target`` is in absolute-form (``scheme://...``) with an authority that
    is not one: empty, an IP literal left open (``http://[::1``), a port that is not
    digits, a userinfo. :func:`origin_form` would serve such a target as its path
    (``/``), an answer to a request nobody made."""
    found = _authority(target)
    return found is not None and _AUTHORITY.fullmatch(target, *found) is None


JSON_CT = (b"content-type", b"application/json")
# Framing headers the front owns; a handler's (or a proxied answer's) copies are dropped.
FRAMING = frozenset({b"content-length", b"connection", b"transfer-encoding", b"keep-alive",
                     b"date"})
NO_BODY_STATUS = frozenset({204, 304})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("ascii"))


STATUS_LINES: dict[int, bytes] = {int(s): _status_line(int(s)) for s in HTTPStatus}


class _DateCache:
    """``date: <IMF-fixdate>\\r\\n``, formatted at most once a second."""

    __slots__ = ("line", "second")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"date: %s\r\n" % formatdate(now, usegmt=True).encode("ascii")
        return self.line


_date = _DateCache()
KEEP_ALIVE = b"connection: keep-alive\r\n"
CLOSE = b"connection: close\r\n"


def encode_response(resp: Response, *, head: bool, connection: bytes) -> bytes:
    """The bytes of ``resp``: status line, headers, ``content-length``, ``date``,
    ``connection`` (``connection`` is :data:`KEEP_ALIVE`, :data:`CLOSE` or ``b""``),
    then the body unless ``head`` (a HEAD keeps the length of the body it omits)."""
    status, headers, body = resp
    parts = [STATUS_LINES.get(status) or _status_line(status)]
    for name, value in headers:
        if name.lower() not in FRAMING:
            parts.append(b"%s: %s\r\n" % (name, value))
    if status in NO_BODY_STATUS or status < 200:
        parts.append(b"%s%s\r\n" % (_date.get(), connection))
        return b"".join(parts)
    parts.append(b"content-length: %d\r\n%s%s\r\n" % (len(body), _date.get(), connection))
    if not head:
        parts.append(body)
    return b"".join(parts)


def error_response(status: int, code: str, message: str, *,
                   retry_after: int | None = None) -> Response:
    """A JSON error answer: ``{"error": code, "message": message}``, with
    ``Retry-After: <retry_after>`` (whole seconds) when given. (A keyword, so that a
    scan of the source for the codes answered reads it: tests/unit/test_error_codes.py.)"""
    body = json.dumps({"error": code, "message": message}).encode("ascii")
    if retry_after is None:
        return Response(status, [JSON_CT], body)
    return Response(status, [JSON_CT, (b"retry-after", b"%d" % retry_after)], body)


# The answer to a hot request whose handler is still running when the server's drain
# deadline passes (``Front(cut_off=...)``); called in the request's task just after its
# handler was cancelled, so a handler may leave there what it had done so far.
CutOff = Callable[[Request], Response]


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc``, out of a handler, is only its cancellation: ``trio.Cancelled``,
    or a group of nothing else (a nursery inside the handler wraps it so)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_cancellation(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def cut_off_response(req: Request) -> Response:
    """The front's own cut-off answer: 503 with ``Retry-After``. It cannot know what the
    handler had done, so it says just that."""
    return error_response(503, "shutting_down", "the server stopped before it answered; "
                          "the request may or may not have taken effect", retry_after=1)


def error_bytes(status: int, code: str, message: str, *, head: bool = False,
                headers: Headers | tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """:func:`error_response` as bytes, with ``Connection: close``: every error the
    front answers by itself ends the connection. ``head``: the answer to a HEAD
    request (no body). ``headers``: more headers; with an ``upgrade`` one (a 426), the
    connection option says ``upgrade`` too (RFC 9110 §7.8)."""
    resp = error_response(status, code, message)
    connection = CLOSE
    if headers:
        resp = Response(status, [*resp.headers, *headers], resp.body)
        if any(name == b"upgrade" for name, _ in headers):
            connection = b"connection: upgrade, close\r\n"
    return encode_response(resp, head=head, connection=connection)
