"""A raw-ASGI fast path for the hottest requests: a GET of a key this node serves,
caught up, and a GET of a key another node owns (forwarded). Everything else (and
anything unusual about such a GET) goes to quart.

quart's per-request machinery (request/response objects, context locals, hooks)
costs more than the lookup itself (shared/DESIGN.md §10); this path answers the same
bytes, status and headers as the quart route, and counts itself in the same metrics.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from actors.messages import Refused
from actors.router import MAX_HOPS, Found, Missing
from actors.state import NotServing
from actors.writer import etag
from web.app import Handles
from web.errors import BadRequest
from web.proxy import GENERATION_HEADER, HOPS_HEADER, generation_of, hops_of
from web.validate import parse_email

Asgi = Callable[[Any, Any, Any], Awaitable[None]]

SEED_ROUTE = "/user"
REST_PREFIX = "/users/"
REST_ROUTE = "/users/<path:email>"
JSON = b"application/json"


def _email_of(scope: dict[str, Any]) -> tuple[str, str] | None:
    """(route template, raw email) of a GET this path may answer, else None."""
    path = scope["path"]
    if path == SEED_ROUTE:
        qs = scope.get("query_string", b"")
        try:
            pairs = parse_qsl(qs.decode("ascii"), keep_blank_values=True,
                              errors="strict")
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


def fast_path(app: Asgi, h: Handles) -> Asgi:
    router, state = h.router, h.state

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
        except BadRequest:
            await app(scope, receive, send)
            return
        key = email.encode()
        # Not router.locate(): it counts forwards and refusals, and the full path we
        # hand over to would count them a second time.
        pid = router.partition(key)
        owner = router.table.owners.get(pid)
        if owner is not None and owner != router.url:
            await _forward(scope, receive, send, app, h, owner, route_name, started,
                           pid, email)
            return
        if owner is None or not state.is_caught_up(pid):
            await app(scope, receive, send)  # gate or refusal: the full path
            return
        try:
            hit = state.get_nowait(pid, key)
        except NotServing:
            await app(scope, receive, send)
            return
        router.counters["local_reads"] += 1
        status = await _answer(send, pid, email, hit)
        metrics = h.extras.get("metrics")
        if metrics is not None:
            metrics.observe(route_name, "GET", status, "local",  # type: ignore[attr-defined]
                            time.perf_counter() - started)

    return asgi


async def _answer(send: Any, pid: int, email: str, hit: tuple[bytes, int] | None) -> int:
    """Send the answer to a GET of ``email`` found (``hit``: value, offset) or not."""
    if hit is None:
        status = 404
        body = (b'{"error":"not_found","message":"no user with email '
                + raw_json_string(email) + b'"}')
        headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
    else:
        status = 200
        body = hit[0]
        headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode()),
                   (b"etag", etag(pid, hit[1]).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status


async def _forward(scope: dict[str, Any], receive: Any, send: Any, app: Asgi, h: Handles,
                   owner: str, route_name: str, started: float, pid: int, email: str
                   ) -> None:
    """GET of a key another node owns: forward it and pass the owner's answer on."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    hops, peer_generation = 0, None
    for k, v in headers:
        if k.lower() == HOPS_HEADER:
            hops = hops_of({HOPS_HEADER: v})
        elif k.lower() == GENERATION_HEADER:
            peer_generation = generation_of({GENERATION_HEADER: v})
    generation = h.router.table.generation
    if hops >= MAX_HOPS or (peer_generation is not None and peer_generation > generation):
        # the full path answers the 503, or waits for this node's newer table
        await app(scope, receive, send)
        return
    h.router.counters["forwards"] += 1
    resp = await h.proxy.exchange(method="GET", url=owner, path=scope["path"],
                                  query=scope.get("query_string", b""), headers=headers,
                                  body=b"", hops=hops, generation=generation)
    if isinstance(resp, Refused) and h.router.has_standby:
        # the owner did not answer: the standby copy may (fenced; routes_user.read_user)
        result = await h.router.standby_read(pid, email.encode(), resp, count=False)
        if isinstance(result, (Found, Missing)):
            hit = (result.value, result.offset) if isinstance(result, Found) else None
            status = await _answer(send, pid, email, hit)
            metrics = h.extras.get("metrics")
            if metrics is not None:
                metrics.observe(route_name, "GET", status, "local",  # type: ignore[attr-defined]
                                time.perf_counter() - started)
            return
    if isinstance(resp, Refused):
        status = resp.status
        body = orjson.dumps({"error": resp.code, "message": resp.message})
        out = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
        if resp.retry_after is not None:
            out.append((b"retry-after", str(max(1, round(resp.retry_after))).encode()))
    else:
        status, out, body = resp.status, resp.headers, resp.body
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    metrics = h.extras.get("metrics")
    if metrics is not None:
        metrics.observe(route_name, "GET", status, "proxied",  # type: ignore[attr-defined]
                        time.perf_counter() - started)


def raw_json_string(text: str) -> bytes:
    """``text`` as the inside of a JSON string, as orjson writes it."""
    return orjson.dumps(text)[1:-1]
