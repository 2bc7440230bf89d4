"""The quart-trio app: ``create_app(services)`` builds it (no globals). Hooks, in the
order they run: request timing (metrics), the API token check, the routes; after every
answer the request is counted and an unread body settled."""

from __future__ import annotations

import time

import trio
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from web import auth, openapi, render, routes_dashboard, routes_feed, routes_ops, routes_user
from web.errors import BadRequest
from web.metrics import UNMATCHED, Metrics
from web.request_body import too_large
from web.responses import respond
from web.services import Services
from web.user_request import REST_RULE, SEED_RULE

# How long an answer given before its request body was read waits for the rest of
# that body, so the connection can serve the next request.
DRAIN_TIMEOUT = 2.0
# The routes that read a request body.
_BODY_RULES = frozenset({SEED_RULE, REST_RULE})


async def settle_body(response: Response, max_body: int) -> Response:
    """Keep a keep-alive connection honest when the answer did not need the body.

    hypercorn reuses an HTTP/1.1 connection only if the request was read to its end
    when the answer finishes; otherwise it closes the socket *after* a keep-alive
    answer, and the client's next request on it fails ("Server disconnected").
    Answers given before the body was read (401, 415, 404, 405, a DELETE with a
    body) hit that whenever the body arrives after the head, as httpx sends it. So
    read what is left of a body up to ``max_body`` (bounded in time), and when that
    is not possible (413, a stalled client) say ``Connection: close`` instead.
    """
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return response
    drained = False
    if length is None or length <= max_body:
        read = 0
        with trio.move_on_after(DRAIN_TIMEOUT):
            try:
                async for chunk in request.body:
                    read += len(chunk)
                    if read > max_body:
                        break
                else:
                    drained = True
            except RequestEntityTooLarge:  # quart stopped keeping it (MAX_CONTENT_LENGTH)
                pass
    if not drained:
        response.headers["Connection"] = "close"
    return response


def _count_requests(app: QuartTrio, metrics: Metrics) -> None:
    """Time every request quart answers (registered first, so it sees those auth
    refuses too) and count it by route template, method and status."""

    @app.before_request
    async def _start_timer() -> None:
        g.kstate_started = time.perf_counter()

    @app.after_request
    async def _count(response: Response) -> Response:
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        started = g.get("kstate_started")
        if started is None:
            metrics.count(route, request.method, response.status_code)
        else:
            kind = "proxied" if g.get("kstate_proxied") else "local"
            metrics.observe(route, request.method, response.status_code, kind,
                            time.perf_counter() - started)
        return response

    @app.route("/metrics", methods=["GET"])
    async def prometheus() -> Response:
        return Response(metrics.exposition(), status=200, content_type=CONTENT_TYPE_LATEST)


def create_app(s: Services) -> QuartTrio:
    app = QuartTrio("kstate", static_folder=None)  # no /static: the dashboard serves its own
    max_body = s.config.max_body
    # What quart keeps of a body nobody has read yet: it appends every chunk that comes
    # while the route runs, and a route that never reads (GET /cluster) would keep all
    # of one streamed for as long as it runs. Past this, it keeps nothing more.
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    # /users//a@b is a 404 (/user?email= reads such a key), never a 308 to another key.
    app.url_map.merge_slashes = False

    @app.errorhandler(BadRequest)
    async def _bad(e: BadRequest) -> Response:
        return respond(render.bad_request(e))

    @app.errorhandler(HTTPException)
    async def _http(e: HTTPException) -> Response:
        return respond(render.http_error(e))

    @app.errorhandler(RequestEntityTooLarge)  # quart's, as the routes' own 413 reads
    async def _too_large(e: RequestEntityTooLarge) -> Response:
        return respond(render.bad_request(too_large(max_body)))

    @app.after_request  # registered first, so it runs after every other hook
    async def _settle(response: Response) -> Response:
        return await settle_body(response, s.config.max_body)

    _count_requests(app, s.metrics)
    auth.register(app, s.config.auth(), s.nonces)

    @app.before_request
    async def _refuse_large_body() -> None:
        # Only the user routes take a body, and check it themselves (in the order the
        # lean front does); any other route refuses one declared over max_body before
        # it runs, instead of answering while its client streams on.
        rule = request.url_rule
        if (rule is not None and rule.rule not in _BODY_RULES
                and (request.content_length or 0) > max_body):
            raise too_large(max_body)

    openapi.register(app, s.config.url)
    routes_user.register(app, s)
    routes_ops.register(app, s)
    routes_feed.register(app, s)
    routes_dashboard.register(app, s)
    return app
