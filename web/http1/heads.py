"""Checks of a request head that the two parsers of the front do not make alike, so
that a head one of them would take and hypercorn (h11, wsproto) would refuse with a
bare answer (no body; for a transfer coding, a 501) is refused here first, with the
front's JSON error and a 4xx: on the lean path (web/http1/connection.py) and on a
handed-over connection (web/http1/guard.py).

Headers are ``(lower-case name, value)`` pairs, values as received.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import NamedTuple

from web.http1.wire import authority_ok, bad_absolute_form

Headers = Iterable[tuple[bytes, bytes]]


class Refusal(NamedTuple):
    """A JSON error answer (``{"error": code, "message": message}``) with ``headers``
    besides, after which the connection closes."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def connection(self) -> bytes:
        """Its ``Connection`` value: ``close``, with ``upgrade`` when it names a
        protocol in ``Upgrade`` (RFC 9110 §7.8: a sender of Upgrade says so there)."""
        return b"upgrade, close" if any(n == b"upgrade" for n, _ in self.headers) else b"close"


# The headers of a websocket handshake that hypercorn (wsproto) decodes as ASCII: a
# byte above 0x7F in one would fail it with a traceback instead of an answer.
HANDSHAKE = frozenset({b"connection", b"upgrade", b"sec-websocket-extensions",
                       b"sec-websocket-protocol", b"sec-websocket-key",
                       b"sec-websocket-version"})
WEBSOCKET_VERSION = b"13"


def handshake_ascii(headers: Headers) -> bool:
    return all(value.isascii() for name, value in headers if name in HANDSHAKE)


# The HTTP/2 preface (``PRI * HTTP/2.0``): the front speaks HTTP/1.1 only, wherever on a
# connection the preface comes (hypercorn would switch to h2 on it)
HTTP2_PREFACE = Refusal(400, "http2_not_supported", "this server speaks HTTP/1.1 only")

BAD_TARGET = Refusal(400, "bad_request",
                     "malformed request target: its authority (host[:port]) is not valid")


def target_refusal(target: bytes) -> Refusal | None:
    """A request target in absolute-form whose authority is malformed (both parsers
    take it, and its path would be served): :func:`web.http1.wire.bad_absolute_form`."""
    return BAD_TARGET if bad_absolute_form(target) else None


def host_refusal(http_version: str, headers: Headers) -> Refusal | None:
    """RFC 9112 §3.2: a server answers 400 to an HTTP/1.1 request without ``Host``, and
    to any request with more than one or with one whose value is not an authority
    (empty is one: a target without an authority). h11 refuses the first two, llhttp
    none, so the lean path served what a handed-over connection refused, and neither
    parser checked a value (``Host: [::1``)."""
    hosts = [value for name, value in headers if name == b"host"]
    if not hosts:
        if http_version == "1.1":
            return Refusal(400, "bad_request", "a Host header is required (HTTP version 1.1)")
        return None
    if len(hosts) > 1:
        return Refusal(400, "bad_request", "a request has one Host header at most")
    value = hosts[0].strip(b" \t")
    if value and not authority_ok(value):
        return Refusal(400, "bad_request", "the Host header is not a host[:port]")
    return None


# 400, not the 501 RFC 9112 §6.1 suggests: a client's fault is never a 5xx here
UNSUPPORTED_CODING = Refusal(400, "unsupported_transfer_encoding",
                             "Transfer-Encoding must be exactly chunked (no other coding "
                             "is supported)")


def framing_refusal(headers: Headers) -> Refusal | None:
    """A ``Transfer-Encoding`` other than one ``chunked`` (h11 knows no other coding
    and answers 501; llhttp decodes ``gzip, chunked`` as chunked and leaves the gzip
    to the handler), or one beside a ``Content-Length`` (RFC 9112 §6.3: a request
    smuggling vector; llhttp refuses it, h11 lets the coding win)."""
    codings: list[bytes] = []
    length = False
    for name, value in headers:
        if name == b"transfer-encoding":
            codings += (c.strip().lower() for c in value.split(b","))
        elif name == b"content-length":
            length = True
    if not codings:
        return None
    if codings != [b"chunked"]:
        return UNSUPPORTED_CODING
    if length:
        return Refusal(400, "bad_request",
                       "a request must not have both Content-Length and Transfer-Encoding")
    return None


def is_websocket(method: bytes, headers: Headers) -> bool:
    """Whether hypercorn serves the request as a websocket handshake: a GET whose
    (last) ``Connection`` has the token ``upgrade`` and (last) ``Upgrade`` is
    ``websocket``; any other upgrade is an HTTP request to it."""
    connection = upgrade = b""
    for name, value in headers:
        if name == b"connection":
            connection = value
        elif name == b"upgrade":
            upgrade = value
    return (method.upper() == b"GET" and upgrade.strip().lower() == b"websocket"
            and any(t.strip().lower() == b"upgrade" for t in connection.split(b",")))


def _key_ok(key: bytes) -> bool:
    """RFC 6455 §4.2.1: the key is the base64 of 16 bytes."""
    try:
        return len(binascii.a2b_base64(key.strip(), strict_mode=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _has_body(headers: Headers) -> bool:
    """Whether a request has a body: a ``Transfer-Encoding`` (an empty chunked body is
    a body's framing still) or a ``Content-Length`` other than 0."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip().lstrip(b"0") != b"":
            return True
    return False


def websocket_refusal(method: bytes, http_version: str, headers: Headers) -> Refusal | None:
    """Why a websocket handshake (:func:`is_websocket`) cannot succeed, as RFC 6455
    §4.2 answers it, or None (also for a request that is not one). hypercorn answers
    these with a bare 400 (or a traceback: for a byte it cannot decode, for a body)."""
    if not isinstance(headers, list):
        headers = list(headers)
    if not is_websocket(method, headers):
        return None
    if not handshake_ascii(headers):
        return Refusal(400, "bad_request", "an upgrade header has bytes that are not ASCII")
    if http_version != "1.1":
        return Refusal(400, "bad_websocket_handshake",
                       f"a websocket handshake needs HTTP/1.1, not HTTP/{http_version}")
    if _has_body(headers):
        # hypercorn would hand the body to wsproto as frames before its 101 and fail
        return Refusal(400, "bad_websocket_handshake", "a websocket handshake has no body")
    key = version = None
    for name, value in headers:  # the last of each, as hypercorn reads them
        if name == b"sec-websocket-key":
            key = value
        elif name == b"sec-websocket-version":
            version = value
    if key is None:
        return Refusal(400, "bad_websocket_handshake", "Sec-WebSocket-Key is missing")
    if not _key_ok(key):
        return Refusal(400, "bad_websocket_handshake",
                       "Sec-WebSocket-Key must be the base64 of 16 bytes")
    if version is None:
        return Refusal(400, "bad_websocket_handshake", "Sec-WebSocket-Version is missing")
    if version.strip() != WEBSOCKET_VERSION:
        return Refusal(426, "websocket_version_unsupported",
                       "this server speaks websocket version 13 only",
                       ((b"sec-websocket-version", WEBSOCKET_VERSION),
                        (b"upgrade", b"websocket")))
    return None
