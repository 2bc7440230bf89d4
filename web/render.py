"""One renderer from outcome to HTTP: status, headers and body bytes. The quart routes,
the lean front (web/hot.py) and forwarding all answer through it, so a key answers the
same bytes whichever path served it."""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.exceptions import HTTPException

from kstate.core.outcomes import Conflict, Found, Missing, TooLarge, Unavailable, Written
from kstate.core.wire import JSON, error_body, etag, retry_after_value
from web.errors import BadRequest
from web.proxy import PeerResponse

Headers = list[tuple[bytes, bytes]]
_JSON = JSON.encode()


@dataclass(frozen=True, slots=True)
class Rendered:
    """An HTTP answer: status, headers and body bytes."""
    status: int
    headers: Headers
    body: bytes


def error(status: int, code: str, message: str, *, retry_after: float | None = None,
          extra: Headers | None = None) -> Rendered:
    headers: Headers = [(b"content-type", _JSON)]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after_value(retry_after).encode()))
    if extra:
        headers.extend(extra)
    return Rendered(status, headers, error_body(code, message))


def http_error(e: HTTPException) -> Rendered:
    """A framework error (werkzeug's 404, 405 with ``Allow``, ...) as a JSON error:
    the code is its name in snake case, the message its description. A 500 (a route
    that raised) reads as the front's own (web/http1/server.py): one code for "the
    server failed", whichever half of the node served the request."""
    if e.code == 500:
        return error(500, "internal_error", "the server failed to answer")
    code = (e.name or "error").lower().replace(" ", "_")
    allow = [(b"allow", v.encode("latin-1")) for k, v in e.get_headers()
             if k.lower() == "allow"]
    return error(e.code or 500, code, e.description or e.name or "error", extra=allow)


def unavailable(u: Unavailable) -> Rendered:
    return error(503, u.reason, u.message, retry_after=u.retry_after)


def bad_request(e: BadRequest) -> Rendered:
    return error(e.status, e.code, e.message)


def found(f: Found) -> Rendered:
    tag = etag(f.partition, f.offset).encode()
    return Rendered(200, [(b"content-type", _JSON), (b"etag", tag)], f.value)


def missing(email: str) -> Rendered:
    return error(404, "not_found", f"no user with email {email}")


def peer(r: PeerResponse) -> Rendered:
    """The owner's answer, as the proxy kept it (web/proxy.py)."""
    return Rendered(r.status, r.headers, r.body)


def read(outcome: Found | Missing | Unavailable | PeerResponse, email: str) -> Rendered:
    """A read's answer: 200 with the stored bytes and ETag, 404, 503, or the owner's."""
    if isinstance(outcome, Found):
        return found(outcome)
    if isinstance(outcome, Missing):
        return missing(email)
    if isinstance(outcome, Unavailable):
        return unavailable(outcome)
    return peer(outcome)


def written(w: Written, value: bytes | None, *, seed: bool) -> Rendered:
    """A write's success: the seed API answers 200 with no body; REST answers 201
    (created) or 200 with the stored document, or 204 for a delete. ETag when a record
    was written."""
    tag: Headers = [(b"etag", etag(w.partition, w.offset).encode())] if w.offset >= 0 else []
    if seed:
        return Rendered(200, tag, b"")
    if value is None:
        return Rendered(204, tag, b"")
    return Rendered(201 if w.created else 200, [(b"content-type", _JSON), *tag], value)


def write(outcome: Written | Conflict | TooLarge | Unavailable | PeerResponse,
          value: bytes | None, *, seed: bool) -> Rendered:
    if isinstance(outcome, Written):
        return written(outcome, value, seed=seed)
    if isinstance(outcome, Conflict):
        return error(412, "precondition_failed", outcome.message)
    if isinstance(outcome, TooLarge):
        return error(413, "value_too_large", outcome.message)
    if isinstance(outcome, Unavailable):
        return unavailable(outcome)
    return peer(outcome)
