"""The user API on quart: the seed's ``/user`` (byte-compatible) and REST
``/users/{email}``. In a node the lean front (web/hot.py) answers these routes itself,
also on a connection it handed to hypercorn; the rules here still give quart's url_map
the routes (the ``OPTIONS`` answer and the 405s' ``Allow``, web/openapi.py's route
test), and serve the app wherever it runs without the front (tests/unit/test_hot.py
compares the two). Both go through one function (web/user_request.py)."""

from __future__ import annotations

from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

from web.request_body import too_large
from web.responses import respond
from web.services import Services
from web.user_request import REST_RULE, SEED_RULE, UserCall, answer, scope_path, user_rule


def scope_headers() -> list[tuple[bytes, bytes]]:
    """The request's headers as the server read them (ASGI scope: lower-case names,
    values as received). Not ``request.headers``: quart adds a ``Remote-Addr`` of its
    own there, which must not be forwarded nor differ from the lean front's view."""
    return [(bytes(k).lower(), bytes(v)) for k, v in request.scope["headers"]]


async def read_body(max_body: int) -> bytes:
    """The request body as quart streams it, or 413 once it is over ``max_body``."""
    body = bytearray()
    async for chunk in request.body:
        body += chunk
        if len(body) > max_body:
            raise too_large(max_body)
    return bytes(body)


async def _serve(s: Services, rule: str) -> Response:
    max_body = s.config.max_body
    # the key from the target's raw bytes, as the lean front reads it (not from the
    # url_map's match, made on quart's request.path: see scope_path)
    path = scope_path(request.scope)
    routed = user_rule(path)
    if routed is None or routed[0] != rule:
        raise NotFound()
    call = UserCall(rule=rule, method=request.method, path=path,
                    query=request.query_string,
                    headers=scope_headers(),
                    email=routed[1])

    async def body() -> bytes:
        return await read_body(max_body)

    rendered, proxied = await answer(s.decider, max_body, call, body)
    g.kstate_proxied = proxied  # the latency kind (web/app.py)
    return respond(rendered)


def register(app: QuartTrio, s: Services) -> None:
    @app.route(SEED_RULE, methods=["GET", "PUT", "DELETE"])
    async def seed_user() -> Response:
        return await _serve(s, SEED_RULE)

    @app.route(REST_RULE, methods=["GET", "PUT", "DELETE"])
    async def rest_user(email: str) -> Response:
        return await _serve(s, REST_RULE)
