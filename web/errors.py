"""JSON error responses: ``{"error": code, "message": text}``."""

from __future__ import annotations

import orjson
from quart import Response

from actors.messages import Refused


def error(status: int, code: str, message: str, *, retry_after: float | None = None,
          headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": code, "message": message})
    out = Response(body, status=status, content_type="application/json")
    if retry_after is not None:
        out.headers["Retry-After"] = str(max(1, round(retry_after)))
    for name, value in (headers or {}).items():
        out.headers[name] = value
    return out


def refused(r: Refused) -> Response:
    return error(r.status, r.code, r.message, retry_after=r.retry_after)


class BadRequest(Exception):
    """A client error found while reading a request; becomes a JSON 4xx."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        return error(self.status, self.code, self.message)
