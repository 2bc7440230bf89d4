"""What a user is: its key (the email) and its stored value (compact JSON
``{"name","email"}``), checked the same way wherever one enters: an HTTP request, a
record of the topic.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_EMAIL_BYTES = 254
FIELDS = frozenset({"name", "email"})


class InvalidUser(ValueError):
    """Input that is not a valid user: ``code`` names the rule, ``message`` is for a
    human."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_email(raw: str | None, where: str = "email") -> str:
    """The trimmed email, or InvalidUser: one '@', text on both sides, at most 254 UTF-8
    bytes, printable characters only, no spaces."""
    if raw is None:
        raise InvalidUser("missing_email", f"{where} is required")
    email = raw.strip()
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise InvalidUser("invalid_email", f"{where} must have one '@' with text on both sides")
    if len(email.encode("utf-8", "surrogatepass")) > MAX_EMAIL_BYTES:
        raise InvalidUser("invalid_email", f"{where} is longer than {MAX_EMAIL_BYTES} bytes")
    # Every whitespace character but ' ' is non-printable (categories Cc, Zs, Zl, Zp),
    # so this is "no whitespace, no control, no format char (U+200B...)" in two C loops.
    if " " in email or not email.isprintable():
        raise InvalidUser("invalid_email", f"{where} must not contain spaces or controls")
    return email


def user_value(doc: dict[str, Any], key_email: str | None) -> tuple[str, bytes]:
    """(key, canonical value bytes) of a user document. The key is ``key_email`` when
    given (query or path), else the body's email; both given and different is invalid.
    Unknown fields are rejected, so what is stored is exactly ``{"name","email"}``."""
    extra = sorted(set(doc) - FIELDS)
    if extra:
        raise InvalidUser("unknown_fields", f"unknown fields: {', '.join(extra)}")
    name = doc.get("name")
    if not isinstance(name, str):
        raise InvalidUser("invalid_name", "name is required and must be a string")
    body_email = doc.get("email")
    if body_email is not None and not isinstance(body_email, str):
        raise InvalidUser("invalid_email", "email must be a string")
    if key_email is None:
        key = parse_email(body_email, "body email")
    else:
        key = key_email
        if body_email is not None and parse_email(body_email, "body email") != key:
            raise InvalidUser("email_mismatch",
                              "the email in the body differs from the one in the URL")
    return key, orjson.dumps({"name": name, "email": key})


def validate_record(key: bytes, value: bytes) -> str | None:
    """Why a record's value is not a user kstate can serve for ``key``, or None. The
    value must be a JSON object with string ``name`` and ``email``, and ``email`` must
    equal the key."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "value is not JSON"
    if not isinstance(doc, dict):
        return "value is not a JSON object"
    name, email = doc.get("name"), doc.get("email")
    if not isinstance(name, str) or not isinstance(email, str):
        return "name and email must be strings"
    if email.encode() != key:
        return "key does not match email"
    return None
