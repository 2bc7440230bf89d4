"""Unit tests of web/request_body.py: request bodies, through a tiny QuartTrio app and
its test client (no node, no broker)."""

from __future__ import annotations

import orjson
import pytest
from quart import Response, request
from quart_trio import QuartTrio

from web import render
from web.errors import BadRequest
from web.request_body import JSON_TYPES, SEED_TYPES, read_json_body
from web.responses import respond

# -- read_json_body, through a real (test-client) request ---------------------------

MAX = 2048


def body_app(types: tuple[str, ...]) -> QuartTrio:
    app = QuartTrio("validate-test")
    app.config["MAX_CONTENT_LENGTH"] = None

    @app.errorhandler(BadRequest)
    async def _bad(e: BadRequest) -> Response:
        return respond(render.bad_request(e))

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
