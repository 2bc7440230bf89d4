"""Operations: /healthz, /readyz, /groupinfo."""

from __future__ import annotations

import time

import orjson
from quart import Response
from quart_trio import QuartTrio

from web.app import Handles


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS), status=status,
                    content_type="application/json")


def readiness(h: Handles) -> dict[str, object]:
    table = h.router.table
    parts = h.state.statistics()
    mine = sorted(p for p, url in table.owners.items() if url == h.router.url)
    member = table.generation >= 0 and h.router.url in table.members.values()
    ready = member and all(parts.get(p, {}).get("caught_up") for p in mine)
    return {
        "ready": bool(ready),
        "url": h.router.url,
        "generation": table.generation,
        "member": member,
        "owned": mine,
        "partitions": {str(p): stats for p, stats in parts.items()},
        "writer": h.writer.statistics(),
        "router": dict(h.router.counters),
        "standby": h.router.standby_statistics(),
        "invalid_records": h.state.table.invalid_total(),
        "uptime_seconds": round(time.monotonic() - h.started_at, 3),
    }


def register(app: QuartTrio, h: Handles) -> None:
    @app.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.route("/readyz", methods=["GET"])
    async def readyz() -> Response:
        doc = readiness(h)
        return _json(doc, 200 if doc["ready"] else 503)

    @app.route("/groupinfo", methods=["GET"])
    async def groupinfo() -> Response:
        table = h.router.table
        doc = {f"{h.topic}-{p}": url for p, url in sorted(table.owners.items())}
        out = _json(doc)
        out.headers["kstate-generation"] = str(table.generation)
        return out
