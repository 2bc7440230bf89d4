"""The user API: the seed's ``/user`` (byte-compatible) and REST ``/users/{email}``."""

from __future__ import annotations

from typing import Literal

from quart import Response, request
from quart_trio import QuartTrio

from actors.messages import Refused, Written
from actors.router import Found, Local, Missing, Remote
from actors.writer import etag
from web.app import Handles
from web.errors import BadRequest, error, refused
from web.proxy import generation_of, hops_of
from web.validate import JSON_TYPES, SEED_TYPES, parse_email, read_json_body, user_value

Api = Literal["seed", "rest"]


async def _forward(h: Handles, route: Remote, body: bytes) -> Response | Refused:
    return await h.proxy.forward(
        method=request.method, url=route.url, path=request.path,
        query=request.query_string, headers=list(request.headers.items()), body=body,
        hops=hops_of(request.headers), generation=route.generation)


async def read_user(h: Handles, email: str, api: Api) -> Response:
    key = email.encode()
    route = await h.router.settle(key, hops_of(request.headers), read=True,
                                  peer_generation=generation_of(request.headers))
    if isinstance(route, Refused):
        if not h.router.has_standby:
            return refused(route)
        # no owner, moving, too many hops: the standby copy may answer (fenced)
        result = await h.router.standby_read(h.router.partition(key), key, route)
    elif isinstance(route, Remote):
        out = await _forward(h, route, b"")
        if not isinstance(out, Refused):
            return out
        if not h.router.has_standby:
            return refused(out)
        # the owner did not answer (died, or unreachable): the standby may (fenced);
        # the proxy counted the failure, the router does not count it again
        result = await h.router.standby_read(route.partition, key, out, count=False)
    else:
        result = await h.router.read(route.partition, key)
    if isinstance(result, Refused):
        return refused(result)
    if isinstance(result, Missing):
        return error(404, "not_found", f"no user with email {email}")
    assert isinstance(result, Found)
    out = Response(result.value, status=200, content_type="application/json")
    out.headers["ETag"] = etag(result.partition, result.offset)
    return out


async def write_user(h: Handles, email: str, value: bytes | None, body: bytes,
                     api: Api) -> Response:
    key = email.encode()
    route = await h.router.settle(key, hops_of(request.headers),
                                  peer_generation=generation_of(request.headers))
    if isinstance(route, Refused):
        return refused(route)
    if isinstance(route, Remote):
        out = await _forward(h, route, body)
        return refused(out) if isinstance(out, Refused) else out
    assert isinstance(route, Local)
    if_match = request.headers.get("If-Match")
    result = await h.router.write(route.partition, key, value, if_match)
    if isinstance(result, Refused):
        return refused(result)
    assert isinstance(result, Written)
    if api == "seed":
        out = Response(b"", status=200)
    elif value is None:
        out = Response(b"", status=204)
    else:
        out = Response(value, status=201 if result.created else 200,
                       content_type="application/json")
    if result.offset >= 0:
        out.headers["ETag"] = etag(result.partition, result.offset)
    return out


def register(app: QuartTrio, h: Handles) -> None:
    max_body = h.settings.max_body

    @app.route("/user", methods=["GET", "PUT", "DELETE"])
    async def seed_user() -> Response:
        raw_email = request.args.get("email")
        if request.method in ("GET", "HEAD"):
            return await read_user(h, parse_email(raw_email), "seed")
        if request.method == "DELETE":
            return await write_user(h, parse_email(raw_email), None, b"", "seed")
        query_email = None if raw_email is None else parse_email(raw_email)
        doc, body = await read_json_body(request, max_body, SEED_TYPES)
        key, value = user_value(doc, query_email)
        return await write_user(h, key, value, body, "seed")

    @app.route("/users/<path:email>", methods=["GET", "PUT", "DELETE"])
    async def rest_user(email: str) -> Response:
        key = parse_email(email, "path email")
        if request.method in ("GET", "HEAD"):
            return await read_user(h, key, "rest")
        if request.method == "DELETE":
            return await write_user(h, key, None, b"", "rest")
        doc, body = await read_json_body(request, max_body, JSON_TYPES)
        _, value = user_value(doc, key)
        return await write_user(h, key, value, body, "rest")

    _ = BadRequest  # raised by the helpers above; rendered by the app's handler
