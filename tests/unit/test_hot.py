"""The lean front's user routes (web/hot.py) answer exactly what quart's do: the same
raw request bytes go to a node's front and to the same app served by quart alone
(hypercorn), and the answers (status, headers but date/server, body) and what each
forwarded to the key's owner must be equal. The node is offline (no Kafka): its
routing table sends every key to an owner the test plays, which answers or is gone;
``kstate-hops: 3`` gets a local 503. Also: the REST rule as a plain function
(:func:`web.user_request.rest_email`) against the app's own url_map, and the metrics
labels of both paths."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import MethodNotAllowed, NotFound

from kstate.core.messages import RoutingTable
from kstate.core.wire import user_path
from tests.support.http1 import connect, parse_replies, read_until_closed
from tests.support.offline import offline_services
from tools.procs import free_port
from web import auth
from web.app import create_app
from web.http1 import Front, Request, Response, serve_front
from web.http1.handover import shield_sends
from web.server import FrontSettings, build_front
from web.services import Services
from web.user_request import REST_RULE, decode_path, rest_email

TOKEN = "tok-0123456789abcdef"
MAX_BODY = 1024


class Owner:
    """The key's owner: records what it was sent, answers by method."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def handle(self, req: Request) -> Response:
        self.seen.append(req)
        if req.method == b"DELETE":
            return Response(204, [(b"etag", b'"1-9"')], b"")
        status = 201 if req.method == b"PUT" else 200
        return Response(status, [(b"content-type", b"application/json"), (b"etag", b'"1-8"'),
                                 (b"x-owner", b"yes")], b'{"name":"N","email":"a@b.c"}')


@dataclass
class Pair:
    lean: str
    quart: str
    owner: Owner
    services: Services


@asynccontextmanager
async def pair(owner_up: bool = True) -> AsyncIterator[Pair]:
    owner = Owner()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        owner_addr = f"127.0.0.1:{free_port()}"
        if owner_up:
            owner_addr = await nursery.start(partial(
                serve_front, Front(handle=owner.handle), "127.0.0.1:0",
                shutdown_trigger=stop.wait))
        s = offline_services(api_token=TOKEN, max_body=MAX_BODY)
        s.router.table = RoutingTable(generation=1, owners=dict.fromkeys(range(10), owner_addr))
        lean = build_front(s, create_app(s), FrontSettings(max_body=MAX_BODY), None)

        async def never(req: Request) -> Response:
            raise AssertionError("the quart-only server answered a request itself")

        quart_only = Front(handle=never, is_hot=lambda method, path: False, app=create_app(s))
        addrs = []
        for front in (lean, quart_only):
            addrs.append(await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                                     shutdown_trigger=stop.wait)))
        yield Pair(addrs[0], addrs[1], owner, s)
        stop.set()
        await s.proxy.aclose()


async def exchange(addr: str, raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request on its own connection; the answer read until the server closes."""
    stream = await connect(addr)
    data = b""
    async with stream:
        await stream.send_all(raw)
        with trio.fail_after(10):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = sorted((k.strip().lower(), v.strip()) for k, _, v in
                     (line.partition(b":") for line in lines[1:])
                     if k.strip().lower() not in (b"date", b"server"))
    return status, headers, body


def req(method: str, target: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: h", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


JSON = {"Content-Type": "application/json"}
# A well-formed node signature that does not verify: the check needs the body for it.
SIG = f"v2 {int(time.time())} {'0' * 32} {'f' * 64}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = b'{"name":"N"}'


def chunked(body: bytes, size: int = 100) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                   for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


CASES: list[tuple[str, bytes]] = [
    # reads, every way of naming a key
    ("rest_get", req("GET", "/users/a@b.c")),
    ("rest_head", req("HEAD", "/users/a@b.c")),
    ("rest_get_encoded_at", req("GET", "/users/a%40b.c")),
    ("rest_get_encoded_prefix", req("GET", "/us%65rs/a@b.c")),
    ("rest_get_slash_encoded", req("GET", "/users%2Fa@b.c")),
    ("rest_get_odd_chars", req("GET", "/users/a%25b%3F%23c@d.e")),
    ("rest_get_invalid_utf8", req("GET", "/users/a%FFb@c.d")),
    ("rest_get_leading_newline", req("GET", "/users/%0Ab@c.d")),
    ("rest_get_newline_inside_404", req("GET", "/users/a%0Ab@c.d")),
    ("rest_get_double_slash_404", req("GET", "/users//a@b.c")),
    ("rest_get_encoded_slash_404", req("GET", "/users/%2Fa@b.c")),
    ("rest_get_empty_404", req("GET", "/users/")),
    ("rest_get_trailing_slash", req("GET", "/users/a@b.c/")),
    ("rest_get_bad_email", req("GET", "/users/not-an-email")),
    ("rest_get_spaces", req("GET", "/users/%20a@b.c%20")),
    ("rest_get_fragment", req("GET", "/users/a@b.c#frag")),
    ("rest_get_absolute_form", req("GET", "http://h/users/a%23b%3Fc@d.e")),
    # (an empty path is "/", RFC 9112 §3.2.2: the dashboard, not a user route)
    ("absolute_form_empty_path_is_the_root", req("GET", "http://h?email=a@b.c")),
    ("seed_get_absolute_form", req("GET", "http://h/user?email=a%23b@c.d")),
    ("seed_get", req("GET", "/user?email=a@b.c")),
    ("seed_head", req("HEAD", "/user?email=a@b.c")),
    ("seed_get_first_of_two", req("GET", "/user?email=a@b.c&email=x@y.z")),
    ("seed_get_plus", req("GET", "/user?email=a+b@c.d")),
    ("seed_get_invalid_utf8", req("GET", "/user?email=a%FF@b.c")),
    ("seed_get_missing", req("GET", "/user")),
    ("seed_get_empty", req("GET", "/user?email=")),
    ("seed_get_other_arg", req("GET", "/user?mail=a@b.c")),
    ("seed_get_semicolon", req("GET", "/user?x=1;email=a@b.c")),
    ("seed_get_encoded_path", req("GET", "/us%65r?email=a@b.c")),
    ("get_with_body", req("GET", "/users/a@b.c", JSON, GOOD)),
    ("get_with_oversized_body", req("GET", "/users/a@b.c", JSON, b"x" * (MAX_BODY + 1))),
    ("get_too_many_hops", req("GET", "/users/a@b.c", {"kstate-hops": "3"})),
    ("get_bad_hops", req("GET", "/users/a@b.c", {"kstate-hops": "x\xff"})),
    ("get_bad_generation", req("GET", "/users/a@b.c", {"kstate-generation": "-x"})),
    ("get_odd_headers_forwarded", req("GET", "/users/a@b.c",
                                      {"X-Note": "caf\u00e9\u00ff", "If-Match": '"1-2"'})),
    # 405s
    ("rest_post", req("POST", "/users/a@b.c", JSON, GOOD)),
    ("rest_patch", req("PATCH", "/users/a@b.c", JSON, GOOD)),
    ("seed_post", req("POST", "/user", JSON, GOOD)),
    ("seed_trace", req("TRACE", "/user?email=a@b.c")),
    ("post_404", req("POST", "/users//x", JSON, GOOD)),
    # writes: the token
    ("put_no_token", req("PUT", "/users/a@b.c", JSON, GOOD)),
    ("put_wrong_token", req("PUT", "/users/a@b.c", {**JSON, "Authorization": "Bearer nope"},
                            GOOD)),
    ("put_odd_token", req("PUT", "/users/a@b.c", {**JSON, "Authorization": "Bearer \u00ff"},
                          GOOD)),
    ("put_forged_node", req("PUT", "/users/a@b.c", {**JSON, "kstate-cluster-auth": "v1 1 x"},
                            GOOD)),
    ("put_signed_wrongly", req("PUT", "/users/a@b.c", {**JSON, "kstate-cluster-auth": SIG},
                               GOOD)),
    ("put_signed_wrongly_oversized", req("PUT", "/users/a@b.c",
                                         {**JSON, "kstate-cluster-auth": SIG},
                                         b"x" * (MAX_BODY + 1))),
    ("put_signed_wrongly_bad_type", req("PUT", "/users/a@b.c",
                                        {"Content-Type": "text/xml", "kstate-cluster-auth": SIG},
                                        GOOD)),
    ("delete_signed_wrongly", req("DELETE", "/user?email=a@b.c", {"kstate-cluster-auth": SIG})),
    ("delete_no_token", req("DELETE", "/user?email=a@b.c")),
    ("put_no_token_bad_type", req("PUT", "/users/a@b.c", {"Content-Type": "text/xml"}, GOOD)),
    ("put_no_token_oversized", req("PUT", "/users/a@b.c", JSON, b"x" * (MAX_BODY + 1))),
    # writes with the token: validation, then forwarding
    ("rest_put", req("PUT", "/users/a@b.c", {**JSON, **AUTH, "If-Match": '"1-2"'}, GOOD)),
    ("rest_put_charset", req("PUT", "/users/a@b.c",
                             {"Content-Type": "Application/JSON; charset=utf-8", **AUTH}, GOOD)),
    ("rest_put_plus_json", req("PUT", "/users/a@b.c",
                               {"Content-Type": "application/x+json", **AUTH}, GOOD)),
    ("rest_put_form", req("PUT", "/users/a@b.c",
                          {"Content-Type": "application/x-www-form-urlencoded", **AUTH}, GOOD)),
    ("rest_put_no_type", req("PUT", "/users/a@b.c", AUTH, GOOD)),
    ("rest_put_no_length", req("PUT", "/users/a@b.c", {**JSON, **AUTH})),
    ("rest_put_oversized", req("PUT", "/users/a@b.c", {**JSON, **AUTH},
                               b"x" * (MAX_BODY + 1))),
    ("rest_put_chunked", req("PUT", "/users/a@b.c",
                             {**JSON, **AUTH, "Transfer-Encoding": "chunked"},
                             chunked(GOOD))),
    ("rest_put_chunked_oversized", req("PUT", "/users/a@b.c",
                                       {**JSON, **AUTH, "Transfer-Encoding": "chunked"},
                                       chunked(b"x" * (MAX_BODY + 50)))),
    ("rest_put_bad_json", req("PUT", "/users/a@b.c", {**JSON, **AUTH}, b'{"name":')),
    ("rest_put_array", req("PUT", "/users/a@b.c", {**JSON, **AUTH}, b"[1]")),
    ("rest_put_unknown_field", req("PUT", "/users/a@b.c", {**JSON, **AUTH},
                                   b'{"name":"N","age":3}')),
    ("rest_put_mismatch", req("PUT", "/users/a@b.c", {**JSON, **AUTH},
                              b'{"name":"N","email":"x@y.z"}')),
    ("rest_put_bad_path_email", req("PUT", "/users/nope", {**JSON, **AUTH}, GOOD)),
    ("rest_delete", req("DELETE", "/users/a@b.c", AUTH)),
    ("rest_delete_with_body", req("DELETE", "/users/a@b.c", {**JSON, **AUTH}, GOOD)),
    ("seed_put_form", req("PUT", "/user?email=a@b.c",
                          {"Content-Type": "application/x-www-form-urlencoded", **AUTH},
                          GOOD)),
    ("seed_put_body_email", req("PUT", "/user", {**AUTH}, b'{"name":"N","email":"q@r.s"}')),
    ("seed_put_no_email", req("PUT", "/user", {**AUTH}, GOOD)),
    ("seed_put_bad_query_email", req("PUT", "/user?email=bad", {**AUTH}, GOOD)),
    ("seed_put_xml", req("PUT", "/user?email=a@b.c", {"Content-Type": "application/xml",
                                                       **AUTH}, GOOD)),
    ("seed_delete", req("DELETE", "/user?email=a@b.c", AUTH)),
    ("seed_delete_missing_email", req("DELETE", "/user", AUTH)),
]


# The well-formed requests among CASES: they go to the key's owner (and answer what it
# answers, or 503 when it cannot be reached). Every other case is bad input, answered
# 4xx by the node itself, never 5xx; but for too many hops, a local 503 (a rebalance).
TO_OWNER = {
    "rest_get", "rest_head", "rest_get_encoded_at", "rest_get_encoded_prefix",
    "rest_get_slash_encoded", "rest_get_odd_chars", "rest_get_invalid_utf8",
    "rest_get_leading_newline", "rest_get_trailing_slash", "rest_get_spaces",
    "rest_get_fragment", "seed_get", "seed_head", "seed_get_first_of_two",
    "seed_get_invalid_utf8", "seed_get_encoded_path", "get_with_body",
    "get_with_oversized_body", "get_bad_hops", "get_bad_generation",
    "get_odd_headers_forwarded", "rest_put", "rest_put_charset", "rest_put_plus_json",
    "rest_put_chunked", "rest_delete", "rest_delete_with_body", "seed_put_form",
    "rest_get_absolute_form", "seed_get_absolute_form",
    "seed_put_body_email", "seed_delete",
}
LOCAL_503 = {"get_too_many_hops": "too_many_hops"}
LOCAL_200 = {"absolute_form_empty_path_is_the_root"}  # a route the node serves itself


def error_code(body: bytes) -> str | None:
    return json.loads(body)["error"] if body else None


def test_the_case_classes_name_cases():
    assert TO_OWNER | set(LOCAL_503) | LOCAL_200 <= {name for name, _ in CASES}


@pytest.mark.parametrize("owner_up", [True, False], ids=["owner_up", "owner_gone"])
async def test_the_lean_front_answers_what_quart_answers(owner_up):
    async with pair(owner_up) as p:
        for name, raw in CASES:
            before = len(p.owner.seen)
            lean = await exchange(p.lean, raw)
            forwarded = p.owner.seen[before:]
            quart = await exchange(p.quart, raw)
            assert lean == quart, name
            status, _, body = lean
            if name in TO_OWNER and owner_up:
                assert len(forwarded) == 1, name
                assert status in (200, 201, 204), (name, status, body)
            elif name in TO_OWNER:
                assert status == 503, (name, status, body)
                assert raw.startswith(b"HEAD ") or \
                    error_code(body) == "owner_not_reached", (name, body)
            elif name in LOCAL_503:
                assert not forwarded, name
                assert (status, error_code(body)) == (503, LOCAL_503[name]), (name, body)
            elif name in LOCAL_200:
                assert not forwarded, name
                assert status == 200, (name, status)
            else:  # bad input
                assert not forwarded, name
                assert 400 <= status < 500, (name, status, body)
            again = p.owner.seen[before + len(forwarded):]
            assert [(r.method, r.path, r.query, r.headers, r.body) for r in forwarded] == [
                (r.method, r.path, r.query, r.headers, r.body) for r in again], name


async def test_both_paths_count_the_same_labels():
    async with pair() as p:
        for addr in (p.lean, p.quart):
            await exchange(p.lean if addr == p.lean else p.quart,
                           req("GET", "/users/a@b.c"))
            await exchange(addr, req("GET", "/user?email=a@b.c"))
            await exchange(addr, req("POST", "/user", JSON, GOOD))
            await exchange(addr, req("PUT", "/users/a@b.c", JSON, GOOD))
        text = p.services.metrics.exposition().decode()
        for labels, count in [
            (f'method="GET",route="{REST_RULE}",status="200"', 2),
            ('method="GET",route="/user",status="200"', 2),
            ('method="POST",route="unmatched",status="405"', 2),
            (f'method="PUT",route="{REST_RULE}",status="401"', 2),
        ]:
            assert f"kstate_http_requests_total{{{labels}}} {count}.0" in text, labels
        assert f'kstate_http_request_duration_seconds_count{{kind="proxied",method="GET",' \
               f'route="{REST_RULE}"}} 2.0' in text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab@/\n\r %.\u00e9\t"), max_size=8))
def test_the_rest_rule_is_the_url_maps(tail):
    adapter = create_app(offline_services()).url_map.bind("localhost")
    path = "/users/" + tail
    try:
        endpoint, args = adapter.match(path, method="GET")
        routed = args.get("email") if endpoint == "rest_user" else None
    except (NotFound, MethodNotAllowed):
        routed = None
    assert rest_email(path) == routed


class SigningOwner(Owner):
    """An owner that also checks the node's signature of each write it is sent, as a
    node with the token would (web/auth.py), over the path it decodes itself."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals: list[int | None] = []
        self.guard: auth.WriteGuard | None = None

    async def handle(self, req: Request) -> Response:
        if self.guard is not None and req.method in (b"PUT", b"DELETE"):
            refused = self.guard.check(req.method.decode(), decode_path(req.path),
                                       req.query.decode("latin-1"), req.headers, req.body,
                                       req.client)
            self.refusals.append(None if refused is None else refused.status)
        return await super().handle(req)


# Keys whose encoded form holds what a URL parser cuts at ('#', '?'), a '/' inside the
# key, and a '%' that must not be decoded twice.
ODD_KEYS = ["bob@x.com#work", "a?v=1@b.c", "a/b@c.d", "a%41b@c.d"]


async def _served_by(addr: str, raw: bytes, handed_over: bool) -> int:
    """The status of ``raw``'s answer: sent alone, or (``handed_over``) after a request
    quart serves on the same connection, so that hypercorn parses ``raw``."""
    first = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n" if handed_over else b""
    stream = await connect(addr)
    await stream.send_all(first + raw)
    replies = parse_replies(await read_until_closed(stream))
    assert len(replies) == (2 if handed_over else 1)
    if handed_over:
        assert replies[0].status == 200
    return replies[-1].status


async def test_an_absolute_form_target_names_the_same_key():
    """RFC 9112 §3.2.2: ``http://h/users/<key>`` is ``/users/<key>``, byte for byte, on
    the lean path, on a connection hypercorn parses, and on quart alone; the owner is
    sent that very key, and the node's signature of a write checks out there."""
    owner = SigningOwner()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        owner_addr = await nursery.start(partial(serve_front, Front(handle=owner.handle),
                                                 "127.0.0.1:0", shutdown_trigger=stop.wait))
        owner_node = offline_services(url=owner_addr, api_token=TOKEN)
        owner.guard = auth.write_guard(owner_node.config.auth(), owner_node.nonces)
        s = offline_services(api_token=TOKEN, max_body=MAX_BODY)
        s.router.table = RoutingTable(generation=1, owners=dict.fromkeys(range(10), owner_addr))
        front = build_front(s, create_app(s), FrontSettings(max_body=MAX_BODY), None)
        lean = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        config = HypercornConfig()
        config.bind = [f"127.0.0.1:{free_port()}"]
        config.accesslog = config.errorlog = None
        # (shield_sends: else quart-trio leaves a Connection: close socket open)
        await nursery.start(partial(hypercorn_serve, shield_sends(create_app(s)), config,
                                    shutdown_trigger=stop.wait))
        alone = config.bind[0]
        ways = [("lean", lean, False), ("handed_over", lean, True), ("quart_alone", alone, False)]
        for key in ODD_KEYS:
            path = user_path(key)
            for method, body in [("GET", None), ("PUT", GOOD), ("DELETE", None)]:
                headers = {**JSON, **AUTH} if method == "PUT" else AUTH
                for target in (path, "http://h" + path, "HTTP://h:80" + path):
                    for way, addr, handed_over in ways:
                        case = (key, method, target, way)
                        before, hot = len(owner.seen), front.statistics().requests_served
                        status = await _served_by(addr, req(method, target, headers, body),
                                                  handed_over)
                        # the front's hot handler answered it, also after a hand-over
                        assert front.statistics().requests_served == hot + (addr == lean), case
                        assert status == {"GET": 200, "PUT": 201, "DELETE": 204}[method], case
                        got = [(r.method, decode_path(r.path), r.query)
                               for r in owner.seen[before:]]
                        assert got == [(method.encode(), "/users/" + key, b"")], case
                        if method != "GET":
                            assert owner.refusals[-1] is None, case
        stop.set()
        await s.proxy.aclose()
