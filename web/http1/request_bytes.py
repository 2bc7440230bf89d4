"""The bytes of a request the pool sends (web/http1/client.py): the request line and
headers exactly as given, checked first, so that nothing a peer would refuse or read
differently (a control byte in a value, a name that is not a token, a target with
spaces) ever goes on the wire. :class:`InvalidRequest` is raised before anything is
sent."""

from __future__ import annotations

import re
from collections.abc import Sequence

Headers = Sequence[tuple[bytes, bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# CR, LF, NUL and every other control byte but HTAB: RFC 9110 §5.5 (a strict peer,
# llhttp among them, refuses them too)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff]")  # percent-encode the rest
# The headers that frame a message: the pool writes them, a caller may not.
FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class InvalidRequest(ValueError):
    """A method, path or header that cannot go on the wire as given (raised before
    anything is sent)."""


def header_ok(name: bytes, value: bytes) -> bool:
    """Whether :func:`encode_request` sends this header as it is (a token name, a value
    without CR, LF, NUL or another control byte but HTAB). Bytes 0x80-0xFF in a value
    (obs-text) travel byte-exact."""
    return _TOKEN.fullmatch(name) is not None and _BAD_VALUE.search(value) is None


def encode_request(host: bytes, method: bytes, path: bytes, headers: Headers,
                   body: bytes) -> bytes:
    """The request's bytes; headers exactly as given (plus ``host`` unless given,
    and ``content-length``). Raises :class:`InvalidRequest`."""
    if not _TOKEN.fullmatch(method):
        raise InvalidRequest(f"method {method!r} is not a token")
    if not path or _BAD_TARGET.search(path):
        raise InvalidRequest(f"request target {path!r} is empty or has spaces/controls")
    parts = [b"%s %s HTTP/1.1\r\n" % (method, path)]
    has_host = False
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise InvalidRequest(f"header name {name!r} is not a token")
        if _BAD_VALUE.search(value):
            raise InvalidRequest(f"header {name!r} has CR, LF, NUL or another control "
                                 "byte in its value")
        lowered = name.lower()
        if lowered in FRAMING:
            raise InvalidRequest(f"header {name!r} is written by the pool")
        has_host = has_host or lowered == b"host"
        parts.append(b"%s: %s\r\n" % (name, value))
    if not has_host:
        parts.append(b"host: %s\r\n" % host)
    if body or method in (b"POST", b"PUT", b"PATCH"):
        parts.append(b"content-length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)
