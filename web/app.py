"""The HTTP app: ``create_app(handles)`` builds a QuartTrio app (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.feed import FeedHandle
from actors.kafka import KafkaBridge
from actors.router import RouterHandle
from actors.settings import Settings
from actors.state import StateHandle
from actors.writer import WriterHandle
from web.errors import BadRequest, error
from web.proxy import Proxy


@dataclass
class Handles:
    """Everything the routes may use; built by the supervisor."""

    settings: Settings
    topic: str
    router: RouterHandle
    state: StateHandle
    writer: WriterHandle
    proxy: Proxy
    started_at: float = 0.0
    feed: FeedHandle | None = None
    bridge: KafkaBridge | None = None
    extras: dict[str, object] = field(default_factory=dict)


# How long an answer given before its request body was read waits for the rest of
# that body, so the connection can serve the next request.
DRAIN_TIMEOUT = 2.0


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
            async for chunk in request.body:
                read += len(chunk)
                if read > max_body:
                    break
            else:
                drained = True
    if not drained:
        response.headers["Connection"] = "close"
    return response


def create_app(h: Handles) -> QuartTrio:
    from web import routes_dashboard, routes_feed, routes_ops, routes_user

    app = QuartTrio("kstate", static_folder=None)  # no /static: the dashboard serves its own
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    # /users//a@b is a 404 (/user?email= reads such a key), never a 308 to another key.
    app.url_map.merge_slashes = False

    @app.errorhandler(BadRequest)
    async def _bad(e: BadRequest) -> Response:
        return e.response()

    @app.errorhandler(HTTPException)
    async def _http(e: HTTPException) -> Response:
        code = (e.name or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in e.get_headers() if k.lower() == "allow"}
        return error(e.code or 500, code, e.description or e.name or "error", headers=headers)

    @app.after_request  # registered first, so it runs after every other hook
    async def _settle(response: Response) -> Response:
        return await settle_body(response, h.settings.max_body)

    from web import auth, metrics, openapi

    # first: its hooks time every request, even one auth refuses; web/fast.py counts
    # the requests it answers itself through the same object
    h.extras["metrics"] = metrics.register(app, h)
    auth.register(app, h)
    openapi.register(app, h)
    routes_user.register(app, h)
    routes_ops.register(app, h)
    routes_feed.register(app, h)
    routes_dashboard.register(app, h)
    return app
