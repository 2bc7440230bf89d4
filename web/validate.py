"""Reading and checking what clients send: emails, bodies, content types."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Request

from web.errors import BadRequest

MAX_EMAIL_BYTES = 254
JSON_TYPES = ("application/json",)
# curl -d sends form-urlencoded by default; the seed's transcript relies on it.
SEED_TYPES = (*JSON_TYPES, "application/x-www-form-urlencoded", "text/plain", "")


def parse_email(raw: str | None, where: str = "email") -> str:
    """Trimmed email, or BadRequest: one '@', non-empty local and domain, <= 254 bytes."""
    if raw is None:
        raise BadRequest(400, "missing_email", f"{where} is required")
    email = raw.strip()
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise BadRequest(400, "invalid_email",
                         f"{where} must have one '@' with text on both sides")
    if len(email.encode()) > MAX_EMAIL_BYTES:
        raise BadRequest(400, "invalid_email", f"{where} is longer than 254 bytes")
    if any(c.isspace() or not c.isprintable() for c in email):  # DEL, C1, U+200B...
        raise BadRequest(400, "invalid_email", f"{where} must not contain spaces or controls")
    return email


def _media_type(request: Request) -> str:
    raw = request.headers.get("Content-Type", "")
    return raw.split(";", 1)[0].strip().lower()


async def read_json_body(request: Request, max_body: int, allowed_types: tuple[str, ...]
                         ) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and raw body, or BadRequest (400/411/413/415)."""
    mtype = _media_type(request)
    if mtype not in allowed_types and not mtype.endswith("+json"):
        raise BadRequest(415, "unsupported_media_type",
                         f"Content-Type {mtype!r} is not supported; send application/json")
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
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "invalid_body", "body must be a JSON object")
    return doc, bytes(body)


def user_value(doc: dict[str, Any], key_email: str | None) -> tuple[str, bytes]:
    """(key, canonical value bytes) of a user document. The key is ``key_email`` when
    given (query or path), else the body's email; both given and different is a 400.
    Unknown fields are rejected, so what is stored is exactly ``{"name","email"}``."""
    extra = sorted(set(doc) - {"name", "email"})
    if extra:
        raise BadRequest(400, "unknown_fields", f"unknown fields: {', '.join(extra)}")
    name = doc.get("name")
    if not isinstance(name, str):
        raise BadRequest(400, "invalid_name", "name is required and must be a string")
    body_email = doc.get("email")
    if body_email is not None and not isinstance(body_email, str):
        raise BadRequest(400, "invalid_email", "email must be a string")
    if key_email is None:
        key = parse_email(body_email, "body email")
    else:
        key = key_email
        if body_email is not None and parse_email(body_email, "body email") != key:
            raise BadRequest(400, "email_mismatch",
                             "the email in the body differs from the one in the URL")
    return key, orjson.dumps({"name": name, "email": key})
