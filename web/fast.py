"""A raw-ASGI fast path for the hottest requests: a GET of one user. It answers through
the same decision and renderer as the quart route (web/decide.py, web/render.py), and
counts itself in the same metrics; quart's per-request machinery (request/response
objects, context locals, hooks) costs more than the lookup itself. Anything unusual
about such a GET (a body, an email that does not parse, another route) goes to quart.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from kstate.core.users import InvalidUser, parse_email
from kstate.core.wire import (
    GENERATION_HEADER,
    HOPS_HEADER,
    REST_PREFIX,
    SEED_ROUTE,
    parse_generation,
    parse_hops,
)
from web import render
from web.proxy import Incoming
from web.services import Services

Asgi = Callable[[Any, Any, Any], Awaitable[None]]

REST_ROUTE = "/users/<path:email>"  # the quart route's template: the metrics label
_HOPS = HOPS_HEADER.encode()
_GENERATION = GENERATION_HEADER.encode()


def _email_of(scope: dict[str, Any]) -> tuple[str, str] | None:
    """(route template, raw email) of a GET this path may answer, else None."""
    path = scope["path"]
    if path == SEED_ROUTE:
        qs = scope.get("query_string", b"")
        try:
            pairs = parse_qsl(qs.decode("ascii"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return None
        for name, value in pairs:
            if name == "email":
                return SEED_ROUTE, value
        return None
    if path.startswith(REST_PREFIX):
        email = path[len(REST_PREFIX):]
        if email and "/" not in email:
            return REST_ROUTE, email
    return None


def _has_body(scope: dict[str, Any]) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


def fast_path(app: Asgi, s: Services) -> Asgi:
    """``app`` with GETs of one user answered before quart."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or _has_body(scope):
            await app(scope, receive, send)  # a GET with a body: the full path drains it
            return
        started = time.perf_counter()
        found = _email_of(scope)
        if found is None:
            await app(scope, receive, send)
            return
        route_name, raw = found
        try:
            email = parse_email(raw)
        except InvalidUser:
            await app(scope, receive, send)
            return
        hops, generation = 0, None
        for k, v in scope["headers"]:
            if k == _HOPS:
                hops = parse_hops(v.decode("latin-1"))
            elif k == _GENERATION:
                generation = parse_generation(v.decode("latin-1"))
        req = Incoming(method="GET", path=scope["path"], query=scope.get("query_string", b""),
                       headers=[(k.decode("latin-1"), v.decode("latin-1"))
                                for k, v in scope["headers"]],
                       body=b"", hops=hops)
        answer, proxied = await s.decider.read_user(email.encode(), req, generation)
        out = render.read(answer, email)
        headers = out.headers
        if out.status not in (204, 304):
            headers = [*headers, (b"content-length", str(len(out.body)).encode())]
        await send({"type": "http.response.start", "status": out.status, "headers": headers})
        await send({"type": "http.response.body", "body": out.body, "more_body": False})
        s.metrics.observe(route_name, "GET", out.status, "proxied" if proxied else "local",
                          time.perf_counter() - started)

    return asgi
