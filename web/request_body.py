"""The checks of a request body, as plain functions over plain values: content type
(415), framing (411, 413), JSON object (400). The quart routes and the lean front
(web/user_request.py) both call them, in the same order, so a body gets the same
answer whichever server read it."""

from __future__ import annotations

from typing import Any

import orjson

from web.errors import BadRequest

JSON_TYPES = ("application/json",)
# curl -d sends form-urlencoded by default; the seed's transcript relies on it.
SEED_TYPES = (*JSON_TYPES, "application/x-www-form-urlencoded", "text/plain", "")


def media_type(raw: str) -> str:
    return raw.split(";", 1)[0].strip().lower()


def check_media_type(raw: str, allowed_types: tuple[str, ...]) -> None:
    """415 unless ``raw`` (a Content-Type value, ``""`` when absent) is allowed or is
    some ``+json`` type."""
    mtype = media_type(raw)
    if mtype not in allowed_types and not mtype.endswith("+json"):
        raise BadRequest(415, "unsupported_media_type",
                         f"Content-Type {mtype!r} is not supported; send application/json")


def too_large(max_body: int) -> BadRequest:
    return BadRequest(413, "body_too_large", f"body is larger than {max_body} bytes")


def check_framing(length: int | None, chunked: bool, max_body: int) -> None:
    """411 for a body with neither a length nor chunked framing; 413 for a declared
    length over ``max_body`` (before a byte of it is read)."""
    if length is None and not chunked:
        raise BadRequest(411, "length_required", "a body with Content-Length is required")
    if length is not None and length > max_body:
        raise too_large(max_body)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400 (``invalid_json``, ``invalid_body``)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "invalid_body", "body must be a JSON object")
    return doc
