"""Unit tests of web/validate.py: emails, user documents, and request bodies (through
a tiny QuartTrio app and its test client, so no node and no broker)."""

from __future__ import annotations

import orjson
import pytest
from quart import Response, request
from quart_trio import QuartTrio

from web.errors import BadRequest
from web.validate import (
    JSON_TYPES,
    MAX_EMAIL_BYTES,
    SEED_TYPES,
    parse_email,
    read_json_body,
    user_value,
)

# -- parse_email --------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "email"), [
    ("bob@example.com", "bob@example.com"),
    ("  bob@example.com\t", "bob@example.com"),
    ("Bob.Smith+tag@Example.COM", "Bob.Smith+tag@Example.COM"),  # kept exactly
    ("é@exämple.com", "é@exämple.com"),
    ("a@b", "a@b"),
    ("x" * (MAX_EMAIL_BYTES - 2) + "@y", "x" * (MAX_EMAIL_BYTES - 2) + "@y"),
])
def test_valid_emails(raw, email):
    assert parse_email(raw) == email


@pytest.mark.parametrize("raw", [
    "", "   ", "plain", "@", "@b.com", "a@", "a@b@c", "a b@c.com", "a@b .com",
    "a\tb@c.com", "a\x00b@c.com", "a\x1fb@c.com", "a\x7fb@c.com", "a\x9bb@c.com",
    "a\u200bb@c.com", "a\u00a0b@c.com",
    "x" * (MAX_EMAIL_BYTES - 1) + "@y",  # 255 bytes
    "é" * 125 + "@y.com",  # 125 characters, 256 bytes
])
def test_invalid_emails(raw):
    with pytest.raises(BadRequest) as info:
        parse_email(raw, "path email")
    assert info.value.status == 400
    assert info.value.code == "invalid_email"
    assert "path email" in info.value.message


def test_missing_email():
    with pytest.raises(BadRequest) as info:
        parse_email(None, "email")
    assert (info.value.status, info.value.code) == (400, "missing_email")


# -- user_value ---------------------------------------------------------------------


def test_user_value_is_canonical_compact_json_name_first():
    key, value = user_value({"email": "a@b.c", "name": "A"}, None)
    assert key == "a@b.c"
    assert value == b'{"name":"A","email":"a@b.c"}'
    key, value = user_value({"name": "Zoë \"Z\""}, "z@b.c")
    assert key == "z@b.c"
    assert orjson.loads(value) == {"name": "Zoë \"Z\"", "email": "z@b.c"}


def test_key_email_wins_when_body_has_none_or_the_same():
    assert user_value({"name": "A"}, "a@b.c")[0] == "a@b.c"
    assert user_value({"name": "A", "email": None}, "a@b.c")[0] == "a@b.c"
    assert user_value({"name": "A", "email": " a@b.c "}, "a@b.c") == \
        ("a@b.c", b'{"name":"A","email":"a@b.c"}')


@pytest.mark.parametrize(("doc", "key", "code"), [
    ({"name": "A", "email": "other@b.c"}, "a@b.c", "email_mismatch"),
    ({"name": "A", "email": "A@b.c"}, "a@b.c", "email_mismatch"),  # case matters
    ({"name": "A"}, None, "missing_email"),
    ({"name": "A", "email": None}, None, "missing_email"),
    ({"name": "A", "email": "bad"}, None, "invalid_email"),
    ({"name": "A", "email": "bad"}, "a@b.c", "invalid_email"),
    ({"name": "A", "email": 3}, "a@b.c", "invalid_email"),
    ({"name": "A", "email": ["a@b.c"]}, None, "invalid_email"),
    ({}, "a@b.c", "invalid_name"),
    ({"name": None}, "a@b.c", "invalid_name"),
    ({"name": 1}, "a@b.c", "invalid_name"),
    ({"name": True}, "a@b.c", "invalid_name"),
    ({"name": {"first": "A"}}, "a@b.c", "invalid_name"),
    ({"name": "A", "age": 3}, "a@b.c", "unknown_fields"),
    ({"name": "A", "Email": "a@b.c"}, "a@b.c", "unknown_fields"),
])
def test_user_value_refusals(doc, key, code):
    with pytest.raises(BadRequest) as info:
        user_value(doc, key)
    assert info.value.status == 400
    assert info.value.code == code
    assert info.value.message


def test_unknown_fields_are_all_named():
    with pytest.raises(BadRequest) as info:
        user_value({"name": "A", "zeta": 1, "alpha": 2}, "a@b.c")
    assert "alpha" in info.value.message
    assert "zeta" in info.value.message


# -- read_json_body, through a real (test-client) request ---------------------------

MAX = 2048


def body_app(types: tuple[str, ...]) -> QuartTrio:
    app = QuartTrio("validate-test")
    app.config["MAX_CONTENT_LENGTH"] = None

    @app.errorhandler(BadRequest)
    async def _bad(e: BadRequest) -> Response:
        return e.response()

    @app.route("/b", methods=["PUT"])
    async def put() -> Response:
        doc, raw = await read_json_body(request, MAX, types)
        return Response(orjson.dumps({"doc": doc, "raw": raw.decode()}),
                        content_type="application/json")

    return app


async def put(app: QuartTrio, body: bytes, headers: dict[str, str], *,
              length: bool = True) -> tuple[int, dict]:
    client = app.test_client()
    if length:  # the test client does not add it; a real client does
        headers = {**headers, "Content-Length": str(len(body))}
    r = await client.put("/b", data=body, headers=headers)
    return r.status_code, orjson.loads(await r.get_data())


async def test_no_length_and_not_chunked_is_411():
    status, out = await put(body_app(JSON_TYPES), b"", {"Content-Type": "application/json"},
                            length=False)
    assert status == 411
    assert out["error"] == "length_required"


async def test_declared_length_over_the_limit_is_413_before_reading():
    status, out = await put(body_app(JSON_TYPES), b"{}",
                            {"Content-Type": "application/json", "Content-Length": str(MAX + 1)},
                            length=False)
    assert status == 413
    assert out["error"] == "body_too_large"


async def test_json_body_is_returned_with_its_raw_bytes():
    raw = b'{"name": "A",  "email": "a@b.c"}'
    status, out = await put(body_app(JSON_TYPES), raw, {"Content-Type": "application/json"})
    assert status == 200
    assert out == {"doc": {"name": "A", "email": "a@b.c"}, "raw": raw.decode()}


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "APPLICATION/JSON", "application/merge-patch+json"])
async def test_json_content_types_accepted(ctype):
    status, _ = await put(body_app(JSON_TYPES), b'{"name":"A"}', {"Content-Type": ctype})
    assert status == 200


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "application/xml", "multipart/form-data", ""])
async def test_other_content_types_are_415_for_rest(ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    status, out = await put(body_app(JSON_TYPES), b'{"name":"A"}', headers)
    assert status == 415
    assert out["error"] == "unsupported_media_type"


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain", ""])
async def test_seed_accepts_what_curl_sends(ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    status, out = await put(body_app(SEED_TYPES), b'{"name":"A"}', headers)
    assert status == 200
    assert out["doc"] == {"name": "A"}


async def test_seed_still_refuses_xml():
    status, out = await put(body_app(SEED_TYPES), b"<a/>", {"Content-Type": "application/xml"})
    assert status == 415
    assert out["error"] == "unsupported_media_type"


async def test_body_over_the_limit_is_413_at_the_limit_fine():
    app = body_app(JSON_TYPES)
    head, tail = b'{"name":"', b'"}'
    at_limit = head + b"a" * (MAX - len(head) - len(tail)) + tail
    status, _ = await put(app, at_limit, {"Content-Type": "application/json"})
    assert status == 200
    over = head + b"a" * (MAX + 1 - len(head) - len(tail)) + tail
    status, out = await put(app, over, {"Content-Type": "application/json"})
    assert status == 413
    assert out["error"] == "body_too_large"


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "invalid_json"), (b"{", "invalid_json"), (b"\xff", "invalid_json"),
    (b"[]", "invalid_body"), (b"1", "invalid_body"), (b'"s"', "invalid_body"),
    (b"null", "invalid_body"),
])
async def test_bad_json_is_400(raw, code):
    status, out = await put(body_app(JSON_TYPES), raw, {"Content-Type": "application/json"})
    assert status == 400
    assert out["error"] == code
    assert out["message"]
