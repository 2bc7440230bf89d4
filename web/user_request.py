"""A request to the user API as plain values, and the one function that answers it, for
both servers: the lean front (web/hot.py) and quart's routes (web/routes_user.py).

Routing is quart's: the seed rule ``/user`` and the REST rule ``/users/<path:email>``
over the percent-decoded path. :func:`rest_email` is werkzeug's match of the REST rule
as a plain function (its path converter, ``[^/].*?``: an email that is not empty, does
not start with ``/`` and has no line feed after its first character; anything else
is a 404, as web/openapi.py documents); tests/unit/test_user_request.py holds it to
the app's own url_map.

What a request with several faults is answered is decided by the order of the checks,
the same on both servers: routing (404, 405), the API token (web/auth.py: 401), the
email of the path or query (400), then for a PUT the content type (415), the framing
(411, and 413 for a declared length), the body as it is read (413), JSON (400), the
user document (400).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" codec error handler)
from werkzeug.sansio.utils import get_content_length

from kstate.core.users import InvalidUser, parse_email, user_value
from kstate.core.wire import (
    GENERATION_HEADER,
    HOPS_HEADER,
    REST_PREFIX,
    SEED_ROUTE,
    parse_generation,
    parse_hops,
)
from web import render
from web.decide import Decider
from web.errors import BadRequest
from web.http1.wire import origin_form
from web.progress import Progress
from web.proxy import Headers, Incoming
from web.request_body import (
    JSON_TYPES,
    SEED_TYPES,
    check_framing,
    check_media_type,
    parse_json_object,
)

SEED_RULE = SEED_ROUTE
REST_RULE = REST_PREFIX + "<path:email>"  # the quart rule; also the metrics' route label
READS = frozenset({"GET", "HEAD"})
METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})  # what the two rules take

# The whole request body, or BadRequest 413 when it is over max_body.
BodyReader = Callable[[], Awaitable[bytes]]

_HOPS = HOPS_HEADER.encode()
_GENERATION = GENERATION_HEADER.encode()


def decode_path(raw: bytes) -> str:
    """A raw request path (ASCII: both HTTP parsers refuse anything else in a target)
    as the servers route it: percent-decoded as UTF-8, invalid sequences as U+FFFD
    (hypercorn's ``unquote``)."""
    return unquote(raw.decode("latin-1"))


def rest_email(path: str) -> str | None:
    """The email of a decoded ``/users/{email}`` path, or None where the REST rule does
    not match (a 404)."""
    if not path.startswith(REST_PREFIX):
        return None
    email = path[len(REST_PREFIX):]
    if not email or email[0] == "/" or "\n" in email[1:]:
        return None
    return email


def user_rule(path: str) -> tuple[str, str | None] | None:
    """The user rule a decoded path is routed to and its email (None for the seed
    rule), or None for no user rule (a 404)."""
    if path == SEED_RULE:
        return SEED_RULE, None
    email = rest_email(path)
    return None if email is None else (REST_RULE, email)


def scope_path(scope: Mapping[str, Any]) -> str:
    """The decoded path of an ASGI request, from the raw bytes of its target as the
    lean front reads them (:func:`decode_path` of the origin-form). Not quart's
    ``request.path``: for an absolute-form target it parses the *decoded* path as a
    URL, so ``http://h/users/a%23b`` would be the key ``a`` there, ``a#b`` here."""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    origin = raw if raw[:1] == b"/" else origin_form(raw)
    return decode_path(origin if origin is not None else raw)


def header(headers: Headers, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case), decoded as latin-1."""
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def content_length(headers: Headers) -> int | None:
    """What werkzeug's ``request.content_length`` says: None when absent or chunked."""
    return get_content_length(header(headers, b"content-length"),
                              header(headers, b"transfer-encoding"))


def is_chunked(headers: Headers) -> bool:
    return "chunked" in (header(headers, b"transfer-encoding") or "").lower()


def query_arg(query: bytes, name: str) -> str | None:
    """The first value of ``name`` in a raw query string, decoded as werkzeug's
    ``request.args`` does (invalid UTF-8 stays percent-encoded)."""
    for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True,
                          errors="werkzeug.url_quote"):
        if k == name:
            return v
    return None


def email_of(raw: str | None, where: str = "email") -> str:
    try:
        return parse_email(raw, where)
    except InvalidUser as exc:
        raise BadRequest.of(exc) from None


def _user(doc: dict[str, Any], key: str | None) -> tuple[str, bytes]:
    try:
        return user_value(doc, key)
    except InvalidUser as exc:
        raise BadRequest.of(exc) from None


@dataclass(frozen=True, slots=True)
class UserCall:
    """One request to a user route, however it arrived."""

    rule: str  # SEED_RULE or REST_RULE
    method: str  # one of METHODS
    path: str  # percent-decoded
    query: bytes  # raw
    headers: Headers  # names lower-case, values as received
    email: str | None  # the REST rule's email (decoded); None for the seed rule
    progress: Progress = field(default_factory=Progress)  # how far it got (web/progress.py)


async def answer(decider: Decider, max_body: int, call: UserCall, read_body: BodyReader
                 ) -> tuple[render.Rendered, bool]:
    """The answer to ``call`` (the API token already checked), and whether it came
    through the proxy (the latency kind "proxied"). Reads the body with ``read_body``
    only when it is needed (a PUT whose email and framing passed)."""
    try:
        return await _answer(decider, max_body, call, read_body)
    except BadRequest as exc:
        return render.bad_request(exc), False


async def _answer(decider: Decider, max_body: int, call: UserCall, read_body: BodyReader
                  ) -> tuple[render.Rendered, bool]:
    if call.method not in METHODS:
        raise ValueError(f"{call.method} is not a method of the user routes")
    seed = call.rule == SEED_RULE
    if seed:
        raw = query_arg(call.query, "email")
        where = "email"
    else:
        raw, where = call.email, "path email"
    if call.method in READS:
        email = email_of(raw, where)
        answer, proxied = await decider.read_user(
            email.encode(), _incoming(call, b""), _generation(call))
        return render.read(answer, email), proxied
    if header(call.headers, b"if-none-match") is not None:
        # "create only" (If-None-Match: *) is not implemented: ignoring it would
        # overwrite the user the client meant to keep
        raise BadRequest(400, "unsupported_precondition",
                         "If-None-Match is not supported on writes: use If-Match with a "
                         "version (ETag), or * for a user that must exist")
    if call.method == "DELETE":
        return await _write(decider, call, email_of(raw, where), None, b"", seed)
    url_email = None if raw is None else email_of(raw, where)
    check_media_type(header(call.headers, b"content-type") or "",
                     SEED_TYPES if seed else JSON_TYPES)
    check_framing(content_length(call.headers), is_chunked(call.headers), max_body)
    body = await read_body()
    key, value = _user(parse_json_object(body), url_email)
    return await _write(decider, call, key, value, body, seed)


async def _write(decider: Decider, call: UserCall, key: str, value: bytes | None,
                 body: bytes, seed: bool) -> tuple[render.Rendered, bool]:
    answer, proxied = await decider.write_user(
        key.encode(), value, header(call.headers, b"if-match"), _incoming(call, body),
        _generation(call))
    return render.write(answer, value, seed=seed), proxied


def _incoming(call: UserCall, body: bytes) -> Incoming:
    return Incoming(method=call.method, path=call.path, query=call.query,
                    headers=call.headers, body=body,
                    hops=parse_hops(header(call.headers, _HOPS)), progress=call.progress)


def _generation(call: UserCall) -> int | None:
    return parse_generation(header(call.headers, _GENERATION))
