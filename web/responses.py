"""quart adapters: a rendered answer (web/render.py) or a JSON document as a quart
Response."""

from __future__ import annotations

import orjson
from quart import Response

from web.render import Rendered


def respond(r: Rendered) -> Response:
    """``r`` with exactly its headers: none of quart's defaults (``text/html`` for an
    answer without a type, a ``Content-Length`` on a 204), so quart answers what the
    lean front (web/hot.py) answers."""
    out = Response(r.body, status=r.status)
    out.headers.pop("Content-Type", None)
    if r.status in (204, 304):
        out.headers.pop("Content-Length", None)
    for k, v in r.headers:
        out.headers.add(k.decode("latin-1"), v.decode("latin-1"))
    return out


def json_response(doc: object, status: int = 200, *, no_store: bool = False) -> Response:
    out = Response(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS), status=status,
                   content_type="application/json")
    if no_store:
        out.headers["Cache-Control"] = "no-store"
    return out
