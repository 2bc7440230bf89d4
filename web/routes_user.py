"""The user API: the seed's ``/user`` (byte-compatible) and REST ``/users/{email}``,
on quart. Each route reads the request, asks the one decision (web/decide.py) and
answers through the one renderer (web/render.py)."""

from __future__ import annotations

from quart import Response, g, request
from quart_trio import QuartTrio

from kstate.core.users import InvalidUser, parse_email, user_value
from kstate.core.wire import GENERATION_HEADER, HOPS_HEADER, parse_generation, parse_hops
from web import render
from web.errors import BadRequest
from web.proxy import Incoming
from web.request_body import JSON_TYPES, SEED_TYPES, read_json_body
from web.responses import respond
from web.services import Services


def _incoming(body: bytes) -> Incoming:
    return Incoming(method=request.method, path=request.path, query=request.query_string,
                    headers=list(request.headers.items()), body=body,
                    hops=parse_hops(request.headers.get(HOPS_HEADER)))


def _email(raw: str | None, where: str = "email") -> str:
    try:
        return parse_email(raw, where)
    except InvalidUser as exc:
        raise BadRequest.of(exc) from None


async def read_user(s: Services, email: str) -> Response:
    answer, proxied = await s.decider.read_user(
        email.encode(), _incoming(b""), parse_generation(request.headers.get(GENERATION_HEADER)))
    g.kstate_proxied = proxied  # the latency kind (web/app.py)
    return respond(render.read(answer, email))


async def write_user(s: Services, email: str, value: bytes | None, body: bytes, *,
                     seed: bool) -> Response:
    answer, proxied = await s.decider.write_user(
        email.encode(), value, request.headers.get("If-Match"), _incoming(body),
        parse_generation(request.headers.get(GENERATION_HEADER)))
    g.kstate_proxied = proxied
    return respond(render.write(answer, value, seed=seed))


def _user(doc: dict[str, object], key: str | None) -> tuple[str, bytes]:
    try:
        return user_value(doc, key)
    except InvalidUser as exc:
        raise BadRequest.of(exc) from None


def register(app: QuartTrio, s: Services) -> None:
    max_body = s.config.max_body

    @app.route("/user", methods=["GET", "PUT", "DELETE"])
    async def seed_user() -> Response:
        raw_email = request.args.get("email")
        if request.method in ("GET", "HEAD"):
            return await read_user(s, _email(raw_email))
        if request.method == "DELETE":
            return await write_user(s, _email(raw_email), None, b"", seed=True)
        query_email = None if raw_email is None else _email(raw_email)
        doc, body = await read_json_body(request, max_body, SEED_TYPES)
        key, value = _user(doc, query_email)
        return await write_user(s, key, value, body, seed=True)

    @app.route("/users/<path:email>", methods=["GET", "PUT", "DELETE"])
    async def rest_user(email: str) -> Response:
        key = _email(email, "path email")
        if request.method in ("GET", "HEAD"):
            return await read_user(s, key)
        if request.method == "DELETE":
            return await write_user(s, key, None, b"", seed=False)
        doc, body = await read_json_body(request, max_body, JSON_TYPES)
        _, value = _user(doc, key)
        return await write_user(s, key, value, body, seed=False)
