"""The HTTP app: ``create_app(handles)`` builds a QuartTrio app (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from quart import Response
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
