"""Unit tests of web/request_body.py (the plain checks of a body, which both servers
call) and of quart's streaming body reader (web/routes_user.py), through a tiny
QuartTrio app and its test client (no node, no broker)."""

from __future__ import annotations

import orjson
import pytest
from quart import Response
from quart_trio import QuartTrio

from web import render
from web.errors import BadRequest
from web.request_body import (
    JSON_TYPES,
    SEED_TYPES,
    check_framing,
    check_media_type,
    parse_json_object,
)
from web.responses import respond
from web.routes_user import read_body
from web.user_request import content_length, is_chunked

MAX = 2048


def refusal(fn, *args) -> tuple[int, str]:
    with pytest.raises(BadRequest) as info:
        fn(*args)
    assert info.value.message
    return info.value.status, info.value.code


# -- the plain checks ----------------------------------------------------------------

def test_no_length_and_not_chunked_is_411():
    assert refusal(check_framing, None, False, MAX) == (411, "length_required")
    check_framing(None, True, MAX)  # chunked: the reader counts
    check_framing(0, False, MAX)


def test_declared_length_over_the_limit_is_413_before_reading():
    assert refusal(check_framing, MAX + 1, False, MAX) == (413, "body_too_large")
    check_framing(MAX, False, MAX)


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "APPLICATION/JSON", "application/merge-patch+json"])
def test_json_content_types_accepted(ctype):
    check_media_type(ctype, JSON_TYPES)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "application/xml", "multipart/form-data", ""])
def test_other_content_types_are_415_for_rest(ctype):
    assert refusal(check_media_type, ctype, JSON_TYPES) == (415, "unsupported_media_type")


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain", ""])
def test_seed_accepts_what_curl_sends(ctype):
    check_media_type(ctype, SEED_TYPES)


def test_seed_still_refuses_xml():
    assert refusal(check_media_type, "application/xml", SEED_TYPES) == (
        415, "unsupported_media_type")


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "invalid_json"), (b"{", "invalid_json"), (b"\xff", "invalid_json"),
    (b"[]", "invalid_body"), (b"1", "invalid_body"), (b'"s"', "invalid_body"),
    (b"null", "invalid_body"),
])
def test_bad_json_is_400(raw, code):
    assert refusal(parse_json_object, raw) == (400, code)


def test_json_object_is_returned():
    assert parse_json_object(b'{"name": "A",  "email": "a@b.c"}') == {
        "name": "A", "email": "a@b.c"}


@pytest.mark.parametrize(("headers", "length", "chunked"), [
    ([], None, False),
    ([(b"content-length", b"12")], 12, False),
    ([(b"content-length", b"x")], 0, False),  # werkzeug's reading: not a number is 0
    ([(b"transfer-encoding", b"chunked")], None, True),
    ([(b"content-length", b"5"), (b"transfer-encoding", b"gzip, chunked")], None, True),
])
def test_framing_headers_read_as_werkzeug_reads_them(headers, length, chunked):
    assert content_length(headers) == length
    assert is_chunked(headers) is chunked


# -- quart's streaming reader ---------------------------------------------------------

def body_app() -> QuartTrio:
    app = QuartTrio("validate-test")
    app.config["MAX_CONTENT_LENGTH"] = None

    @app.errorhandler(BadRequest)
    async def _bad(e: BadRequest) -> Response:
        return respond(render.bad_request(e))

    @app.route("/b", methods=["PUT"])
    async def put() -> Response:
        raw = await read_body(MAX)
        return Response(orjson.dumps({"raw": raw.decode()}), content_type="application/json")

    return app


async def put(body: bytes) -> tuple[int, dict]:
    client = body_app().test_client()
    r = await client.put("/b", data=body, headers={"Content-Length": str(len(body))})
    return r.status_code, orjson.loads(await r.get_data())


async def test_body_over_the_limit_is_413_at_the_limit_fine():
    status, out = await put(b"a" * MAX)
    assert (status, out) == (200, {"raw": "a" * MAX})
    status, out = await put(b"a" * (MAX + 1))
    assert status == 413
    assert out["error"] == "body_too_large"
