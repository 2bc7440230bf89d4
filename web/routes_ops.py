"""Operations: /healthz, /readyz, /groupinfo."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from kstate.core.wire import GENERATION_HEADER, GROUPINFO_ROUTE, PARTITIONS_HEADER
from web.responses import json_response
from web.services import Services
from web.status import readiness


def register(app: QuartTrio, s: Services) -> None:
    @app.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.route("/readyz", methods=["GET"])
    async def readyz() -> Response:
        doc = readiness(s)
        return json_response(doc, 200 if doc["ready"] else 503)

    @app.route(GROUPINFO_ROUTE, methods=["GET"])
    async def groupinfo() -> Response:
        table = s.router.table
        doc = {f"{s.config.topic}-{p}": url for p, url in sorted(table.owners.items())}
        out = json_response(doc)
        out.headers[GENERATION_HEADER] = str(table.generation)
        out.headers[PARTITIONS_HEADER] = str(s.router.num_partitions)
        return out
