"""Reading a request's JSON body: content type, length, size (400/411/413/415)."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Request

from web.errors import BadRequest

JSON_TYPES = ("application/json",)
# curl -d sends form-urlencoded by default; the seed's transcript relies on it.
SEED_TYPES = (*JSON_TYPES, "application/x-www-form-urlencoded", "text/plain", "")


def media_type(raw: str) -> str:
    return raw.split(";", 1)[0].strip().lower()


def check_media_type(raw: str, allowed_types: tuple[str, ...]) -> None:
    mtype = media_type(raw)
    if mtype not in allowed_types and not mtype.endswith("+json"):
        raise BadRequest(415, "unsupported_media_type",
                         f"Content-Type {mtype!r} is not supported; send application/json")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "invalid_body", "body must be a JSON object")
    return doc


async def read_json_body(request: Request, max_body: int, allowed_types: tuple[str, ...]
                         ) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and raw body, or BadRequest (400/411/413/415)."""
    check_media_type(request.headers.get("Content-Type", ""), allowed_types)
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if length is None and not chunked:
        raise BadRequest(411, "length_required", "a body with Content-Length is required")
    if length is not None and length > max_body:
        raise BadRequest(413, "body_too_large", f"body is larger than {max_body} bytes")
    body = bytearray()
    async for chunk in request.body:
        body += chunk
        if len(body) > max_body:
            raise BadRequest(413, "body_too_large", f"body is larger than {max_body} bytes")
    return parse_json_object(bytes(body)), bytes(body)
