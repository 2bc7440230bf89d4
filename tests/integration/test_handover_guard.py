"""The guard of connections handed over to hypercorn (web/http1/guard.py), on a live
node over real sockets: a request with ``Upgrade: h2c`` is plain HTTP/1.1, so the
requests after it on its connection are still guarded (a bad one gets the front's JSON
4xx, never hypercorn's bare 400/431/501); the HTTP/2 preface on a handed-over
connection is refused 400 ``http2_not_supported`` in its turn, as on the lean path; a
websocket handshake with a body, or with bytes sent along with it before the server's
101, is refused 400 ``bad_websocket_handshake``, and a frame that comes on its own
before the 101 waits for it. None of these leaves a traceback in the node's log, a feed
subscriber behind, or the node any less healthy.

One node serves the whole module (one per case would cost seconds each); an autouse
check proves it is still alive, healthy, and without a traceback in its log."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import trio
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.events import CloseConnection, TextMessage

from tests.support.http1 import Reply, connect, h2_preface, parse_replies, read_until_closed
from tests.support.ready_node import assert_node_survived, ready_node
from tools.procs import Node

# One worker runs this module: its node (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_handover_guard")

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"
H2C = (b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
WS = (b"GET /changes%s HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
MAX_HEAD = 16384  # the node's default http_max_head_bytes


@pytest.fixture(scope="module")
def node(kafka_bootstrap: str) -> Iterator[Node]:
    with ready_node(kafka_bootstrap, "test_handover_guard") as n:
        yield n


def _subscribers(node: Node) -> int:
    with httpx.Client(trust_env=False, timeout=5) as c:
        r = c.get(f"{node.base}/readyz")
        assert r.status_code == 200, r.text
        return int(r.json()["feed"]["subscribers"])


@pytest.fixture(autouse=True)
def _node_survives(node: Node) -> Iterator[None]:
    yield
    assert_node_survived(node)
    # every websocket of the test was refused or closed: none is left subscribed
    deadline = time.monotonic() + 10
    while _subscribers(node):
        assert time.monotonic() < deadline, "a feed subscriber outlived its connection"
        time.sleep(0.1)


def expect_refusal(raw: bytes, before: int, status: int, code: str) -> list[Reply]:
    """``raw`` (all a connection was answered until it closed) is ``before`` 200s, then
    a JSON error ``code`` with ``status`` and ``Connection: close``."""
    replies = parse_replies(raw)
    assert [r.status for r in replies] == [200] * before + [status], raw
    refusal = replies[-1]
    assert refusal.headers[b"content-type"] == b"application/json", raw
    assert refusal.json()["error"] == code, raw
    assert refusal.headers[b"connection"] == b"close", raw
    return replies


async def answered(node: Node, data: bytes) -> bytes:
    """What ``data``, sent in one write on a new connection, is answered until the node
    closes it."""
    s = await connect(node.url)
    await s.send_all(data)
    return await read_until_closed(s)


# -- after an h2c upgrade request: still HTTP/1.1, still guarded -------------------

BAD_AFTER_H2C = {
    "transfer_coding": (b"GET /healthz HTTP/1.1\r\nHost: h\r\n"
                        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                        400, "unsupported_transfer_encoding"),
    "length_and_chunked": (b"PUT /users/a@b.c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"),
    "head_too_large": (b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"p" * MAX_HEAD
                       + b"\r\n\r\n", 431, "head_too_large"),
    "websocket_without_key": (
        WS.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"") % b"" + b"\r\n",
        400, "bad_websocket_handshake"),
    "http2_preface": (h2_preface(), 400, "http2_not_supported"),
}


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("bad", list(BAD_AFTER_H2C))
async def test_requests_after_an_h2c_upgrade_are_still_guarded(node, later, bad):
    """The upgrade is ignored (hypercorn answers it in HTTP/1.1), so the request after
    it is refused by the guard with the front's JSON answer, in its turn."""
    request, status, code = BAD_AFTER_H2C[bad]
    raw = await answered(node, (HEALTH if later else b"") + H2C + request)
    assert b"HTTP/1.1 101 " not in raw, raw
    expect_refusal(raw, 1 + later, status, code)


# -- the HTTP/2 preface on a handed-over connection ---------------------------------

async def test_the_http2_preface_after_a_handed_over_request_is_refused_in_its_turn(node):
    # pipelined behind the handed-over request
    raw = await answered(node, HEALTH + h2_preface())
    replies = expect_refusal(raw, 1, 400, "http2_not_supported")
    assert replies[-1].json()["message"] == "this server speaks HTTP/1.1 only"
    # on its own, once the handed-over request is answered
    s = await connect(node.url)
    await s.send_all(HEALTH)
    data = b""
    with trio.fail_after(5):
        while not parse_replies(data):
            chunk = await s.receive_some(65536)
            assert chunk, data
            data += chunk
    await s.send_all(h2_preface())
    expect_refusal(data + await read_until_closed(s), 1, 400, "http2_not_supported")


# -- a websocket handshake to the feed that hypercorn (wsproto) would fail on -------

FRAME = WsConnection(ConnectionType.CLIENT).send(TextMessage(data="hi"))
BAD_HANDSHAKES = {
    "content_length": WS % b"" + b"Content-Length: 5\r\n\r\nhello",
    "chunked": WS % b"" + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "empty_chunked": WS % b"" + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "frame_before_the_101": WS % b"" + b"\r\n" + FRAME,
    "resume_frame_before_the_101": WS % b"?from=beginning" + b"\r\n" + FRAME,
}


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("bad", list(BAD_HANDSHAKES))
async def test_a_websocket_handshake_with_a_body_or_an_early_frame_is_a_400_json(
        node, later, bad):
    raw = await answered(node, (HEALTH if later else b"") + BAD_HANDSHAKES[bad])
    expect_refusal(raw, int(later), 400, "bad_websocket_handshake")


async def _handshake(s: trio.SocketStream) -> tuple[bytes, bytes]:
    """The head of the answer to a handshake sent on ``s``, and what came after it."""
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            chunk = await s.receive_some(65536)
            assert chunk, data
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def _feed_hello(s: trio.SocketStream, ws: WsConnection, rest: bytes) -> str:
    ws.receive_data(rest)
    with trio.fail_after(10):
        while True:
            for event in ws.events():
                assert isinstance(event, TextMessage), event
                return event.data
            chunk = await s.receive_some(65536)
            assert chunk
            ws.receive_data(chunk)


async def _close(s: trio.SocketStream, ws: WsConnection) -> None:
    await s.send_all(ws.send(CloseConnection(code=1000)))
    await read_until_closed(s, 10)


@pytest.mark.parametrize("length", [b"", b"Content-Length: 0\r\n"], ids=["no_body", "length_0"])
async def test_a_frame_sent_on_its_own_before_the_101_waits_for_it(node, length):
    """A client that does not wait for the 101 before its first frame (RFC 6455 §4.1
    says it must), the frame in a write of its own: the handshake still succeeds (the
    frame is held until the answer is out), and the subscriber goes with its close."""
    s = await connect(node.url)
    # from=beginning: the route opens a reader before it accepts, so the frame comes
    # while the handshake is still being answered
    await s.send_all(WS % b"?from=beginning" + length + b"\r\n")
    await trio.sleep(0.02)
    await s.send_all(FRAME)
    head, rest = await _handshake(s)
    assert head.startswith(b"HTTP/1.1 101 "), head
    ws = WsConnection(ConnectionType.CLIENT)
    assert '"type":"hello"' in await _feed_hello(s, ws, rest)
    await _close(s, ws)


async def test_a_refused_handshake_leaves_nothing_behind(node):
    """Many refused handshakes in a row: each answered, none a traceback or a
    subscriber (the autouse check), and a proper handshake is served after them."""
    for i in range(20):
        bad = list(BAD_HANDSHAKES.values())[i % len(BAD_HANDSHAKES)]
        expect_refusal(await answered(node, bad), 0, 400, "bad_websocket_handshake")
    s = await connect(node.url)
    await s.send_all(WS % b"" + b"\r\n")
    head, rest = await _handshake(s)
    assert head.startswith(b"HTTP/1.1 101 "), head
    ws = WsConnection(ConnectionType.CLIENT)
    assert '"type":"hello"' in await _feed_hello(s, ws, rest)
    assert _subscribers(node) == 1
    await _close(s, ws)


# -- a body hypercorn's h11 fails on, its head already with the app ----------------

BAD_CHUNKED = {
    "size_not_hex": b"zz\r\nabcde\r\n0\r\n\r\n",
    "data_longer_than_its_size": b"5\r\nabcdefgh\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("path", [b"/cluster", b"/healthz", b"/nothing"])
@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("bad", list(BAD_CHUNKED))
async def test_a_malformed_chunked_body_on_a_handed_over_route_is_a_400_json(
        node, bad, later, path):
    """The guard passes a head on once it is checked, so only hypercorn sees such a body
    fail, with the route already running: it answered a bare 400 (no body)."""
    request = (b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               + BAD_CHUNKED[bad])
    raw = await answered(node, (HEALTH if later else b"") + request)
    replies = expect_refusal(raw, int(later), 400, "bad_request")
    assert "chunked" in replies[-1].json()["message"]


# a chunk-size line of 17 hex digits or more, over 2^64 - 1: the lean path's parser
# (llhttp) refuses it; hypercorn's h11 takes up to 20 digits and waits for the chunk
HUGE_CHUNK = b"10000000000000000\r\nabc\r\n0\r\n\r\n"
PUT_CHUNKED = (b"PUT /users/a@b.c HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")


@pytest.mark.parametrize("request_head", [
    PUT_CHUNKED, b"GET /cluster HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"],
    ids=["hot", "quart"])
@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
async def test_a_chunk_size_over_64_bits_is_a_400_json_at_once(node, later, request_head):
    """The same bytes get the same answer on either path, at once: a hot PUT on a
    handed-over connection waited for the 2^64-byte chunk until ``http_body_timeout``
    (408), a quart route answered as if the body were fine (and closed after draining
    it for seconds), where the lean path answers 400."""
    with trio.fail_after(10):  # (the bug: 408 at http_body_timeout, 30 s)
        raw = await answered(node, (HEALTH if later else b"") + request_head + HUGE_CHUNK)
    expect_refusal(raw, int(later), 400, "bad_request")
