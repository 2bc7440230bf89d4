"""web/http1's front over real loopback sockets: the lean path (pipelining, keep-alive,
HEAD, 100-continue, chunked, HTTP/1.0, every limit, a fuzz of raw bytes), the
hand-over to a real hypercorn + quart-trio app on the same port (plain route,
websocket, hot then not hot on one connection), TLS, and graceful shutdown."""

from __future__ import annotations

import errno
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial

import pytest
import trio
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.events import TextMessage

from tests.support.http1 import (
    LATE,
    Reply,
    Store,
    connect,
    make_app,
    parse_replies,
    read_replies,
    read_until_closed,
)
from web.http1 import CutOff, Front, Limits, Request, Response, error_response, serve_front
from web.http1.server import bind_listening


@dataclass
class Running:
    addr: str
    front: Front
    store: Store
    stop: trio.Event
    stopped: trio.Event  # serve_front returned


@asynccontextmanager
async def running(limits: Limits | None = None, *, app: bool = True,
                  ssl_context: ssl.SSLContext | None = None, store: Store | None = None,
                  cut_off: CutOff | None = None) -> AsyncIterator[Running]:
    store = store or Store()
    front = Front(handle=store.handle, is_hot=store.is_hot if app else None,
                  app=make_app() if app else None, limits=limits, ssl_context=ssl_context,
                  cut_off=cut_off)
    stop, stopped = trio.Event(), trio.Event()

    async def serve(task_status: trio.TaskStatus[str]) -> None:
        await serve_front(front, "127.0.0.1:0", shutdown_trigger=stop.wait,
                          task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve)
        yield Running(addr, front, store, stop, stopped)
        stop.set()


GET = b"GET /users/%s HTTP/1.1\r\nHost: t\r\n\r\n"


async def test_ten_pipelined_requests_in_one_write_are_answered_in_order():
    async with running() as srv:
        srv.store.data.update({b"k%d" % i: b'{"v":%d}' % i for i in range(10)})
        s = await connect(srv.addr)
        await s.send_all(b"".join(GET % b"k%d" % i for i in range(10)))
        replies = await read_replies(s, 10)
        assert [r.body for r in replies] == [b'{"v":%d}' % i for i in range(10)]
        assert all(r.status == 200 and r.headers[b"etag"] for r in replies)
        assert srv.front.statistics().requests_served == 10
        await s.aclose()


async def test_keep_alive_serves_many_requests_on_one_connection():
    async with running() as srv:
        s = await connect(srv.addr)
        for i in range(5):
            await s.send_all(b"PUT /users/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n"
                             b"v%02d" % i)
            await s.send_all(GET % b"a")
            put, get = await read_replies(s, 2)
            assert (put.status, get.status, get.body) == (204, 200, b"v%02d" % i)
        stats = srv.front.statistics()
        assert (stats.open_connections, stats.requests_served) == (1, 10)
        await s.aclose()


async def test_head_sends_the_length_and_no_body():
    async with running() as srv:
        srv.store.data[b"h"] = b'{"x":1}'
        s = await connect(srv.addr)
        await s.send_all(b"HEAD /users/h HTTP/1.1\r\nHost: t\r\n\r\n" + GET % b"h")
        data = b""
        with trio.fail_after(5):
            while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b'{"x":1}'):
                data += await s.receive_some(65536)
        head, _, get = data.partition(b"\r\n\r\n")
        assert b"content-length: 7" in head
        assert get.startswith(b"HTTP/1.1 200 OK")  # nothing between the two answers
        await s.aclose()


async def test_expect_100_continue_is_answered_before_the_body_is_read():
    async with running() as srv:
        s = await connect(srv.addr)
        await s.send_all(b"PUT /users/c HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
        with trio.fail_after(5):
            assert await s.receive_some(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        await s.send_all(b"body")
        [reply] = await read_replies(s, 1)
        assert reply.status == 204
        assert srv.store.data[b"c"] == b"body"
        await s.aclose()


async def test_a_chunked_body_is_decoded_and_the_next_request_follows():
    async with running() as srv:
        s = await connect(srv.addr)
        await s.send_all(b"PUT /users/ch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n4;ext=1\r\nd\r\nf\r\n0\r\nTrailer: x\r\n\r\n" + GET % b"ch")
        put, get = await read_replies(s, 2)
        assert (put.status, get.body) == (204, b"abcd\r\nf")
        await s.aclose()


async def test_connection_close_is_honoured():
    async with running() as srv:
        s = await connect(srv.addr)
        await s.send_all(b"GET /users/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                         + GET % b"y")
        [reply] = parse_replies(await read_until_closed(s))  # the second is never answered
        assert reply.status == 404
        assert reply.headers[b"connection"] == b"close"
        assert reply.json() == {"error": "not_found", "message": "no key b'x'"}


async def test_http_1_0_closes_unless_keep_alive_is_asked():
    async with running() as srv:
        s = await connect(srv.addr)
        await s.send_all(b"GET /users/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        [reply] = await read_replies(s, 1)
        assert reply.headers[b"connection"] == b"keep-alive"
        await s.send_all(b"GET /users/x HTTP/1.0\r\n\r\n")
        [reply] = parse_replies(await read_until_closed(s))
        assert reply.status == 404


async def test_a_raising_handler_is_a_500_json_and_the_connection_goes_on():
    async with running() as srv:
        s = await connect(srv.addr)
        await s.send_all(GET % b"boom" + GET % b"zz")
        boom, nxt = await read_replies(s, 2)
        assert boom.status == 500
        assert boom.json()["error"] == "internal_error"
        assert nxt.status == 404
        assert srv.front.statistics().handler_errors == 1
        await s.aclose()


# -- limits -----------------------------------------------------------------------


async def test_connections_over_the_cap_get_a_503_without_a_request():
    async with running(Limits(max_connections=2)) as srv:
        held = [await connect(srv.addr) for _ in range(2)]
        await trio.sleep(0.1)
        extra = await connect(srv.addr)
        [reply] = parse_replies(await read_until_closed(extra))
        assert reply.status == 503
        assert reply.headers[b"connection"] == b"close"
        assert reply.json()["error"] == "too_many_connections"
        assert srv.front.statistics().refused == 1
        await held[0].send_all(GET % b"x")  # the held ones still work
        assert (await read_replies(held[0], 1))[0].status == 404
        for s in held:
            await s.aclose()


async def expect_error(addr: str, data: bytes, status: int, code: str) -> None:
    async with await connect(addr) as s:
        await s.send_all(data)
        replies = parse_replies(await read_until_closed(s))
    assert [r.status for r in replies] == [status]
    assert replies[0].json()["error"] == code
    assert replies[0].headers[b"connection"] == b"close"


async def test_a_slow_head_is_a_408():
    async with running(Limits(head_timeout=0.3)) as srv:
        with trio.fail_after(3):
            await expect_error(srv.addr, b"GET /users/x HTTP/1.1\r\nHost:", 408,
                               "request_timeout")
        assert srv.front.statistics().head_timeouts == 1


async def test_a_slow_body_is_a_408():
    async with running(Limits(body_timeout=0.3)) as srv:
        with trio.fail_after(3):
            await expect_error(srv.addr, b"PUT /users/x HTTP/1.1\r\nHost: t\r\n"
                                         b"Content-Length: 9\r\n\r\nab",
                               408, "request_timeout")
        assert srv.front.statistics().body_timeouts == 1


async def test_an_idle_connection_is_closed_silently():
    async with running(Limits(idle_timeout=0.3)) as srv:
        s = await connect(srv.addr)
        await s.send_all(GET % b"x")
        await read_replies(s, 1)
        with trio.fail_after(3):
            assert await read_until_closed(s) == b""
        assert srv.front.statistics().idle_timeouts == 1


async def test_deadlines_run_from_now_even_when_the_event_loop_lags():
    """A deadline is set when its wait starts, from the clock, not from the time the
    front's timer last ran: when the event loop lags (a loaded machine, another thread
    holding the GIL, a slow handler) the timer runs late, and a deadline computed from
    its stale time fired early by the lag. (Issue 16: keep-alive connections closed
    seconds before http_idle_timeout under load.) Here the handler of a first request
    blocks the loop for 0.8 s; the second request's head, pipelined but incomplete,
    must then be given its whole head_timeout (within the timer's tick)."""
    limits = Limits(head_timeout=1.0)
    tick = 0.25  # a quarter of the shortest timeout

    async def handle(req: Request) -> Response:
        time.sleep(0.8)  # noqa: ASYNC251 (the loop lags: the front's timer cannot run)
        return 200, [(b"content-type", b"text/plain")], b"ok"

    front = Front(handle=handle, limits=limits)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        s = await connect(addr)
        await trio.sleep(0.3)  # the timer has run
        await s.send_all(GET % b"a" + b"GET /users/b HTTP/1.1\r\nHost:")
        await read_replies(s, 1)
        answered = trio.current_time()
        replies = parse_replies(await read_until_closed(s))
        waited = trio.current_time() - answered
        assert [r.status for r in replies] == [408]
        assert waited >= limits.head_timeout - tick - 0.05, waited
        stop.set()


async def test_a_backlog_of_connections_is_taken_in_a_few_passes_of_the_scheduler():
    """An accept yields to every other task, so the front took one connection from the
    backlog per pass of trio's scheduler. Under a storm of connections (the resources
    test opens ~450 at once while 250 websocket handshakes keep the node busy) they
    waited in the backlog for seconds, and since a head deadline runs from the accept,
    the clients saw 2 s deadlines fire at 4.7 s. Here a task busy for 5 ms per pass
    stands for the others, and 100 connections wait in the backlog: they are taken in
    a few passes, not a hundred."""
    async with running(app=False) as srv:
        host, port = srv.addr.rsplit(":", 1)
        # blocking connects: the kernel completes them into the backlog while the
        # front cannot run
        held = [socket.create_connection((host, int(port))) for _ in range(100)]
        passes = 0

        async def busy() -> None:
            nonlocal passes
            while True:
                time.sleep(0.005)  # noqa: ASYNC251 (a task that takes its time each pass)
                passes += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy)
            with trio.fail_after(10):
                while srv.front.statistics().open_connections < len(held):
                    await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        assert passes <= 10, passes
        for s in held:
            s.close()


async def test_a_head_too_large_is_a_431():
    async with running(Limits(max_head_bytes=1024)) as srv:
        await expect_error(srv.addr, b"GET /users/x HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 2000,
                           431, "head_too_large")
        await expect_error(srv.addr,
                           b"GET /users/x HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 2000 + b"\r\n\r\n",
                           431, "head_too_large")


async def test_a_body_too_large_is_a_413_from_its_length_or_its_chunks():
    async with running(Limits(max_body_bytes=100)) as srv:
        await expect_error(srv.addr,
                           b"PUT /users/x HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n",
                           413, "body_too_large")
        chunked = (b"PUT /users/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + (b"40\r\n" + b"a" * 64 + b"\r\n") * 2)
        await expect_error(srv.addr, chunked, 413, "body_too_large")
        assert srv.front.statistics().bad_requests == 2


async def test_pipelined_requests_beyond_the_batch_cap_are_still_answered():
    async with running(Limits(max_pipelined=3)) as srv:
        s = await connect(srv.addr)
        await s.send_all(GET % b"x" * 20)
        assert [r.status for r in await read_replies(s, 20)] == [404] * 20
        await s.aclose()


@pytest.mark.parametrize(("data", "status"), [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
    (b"GET /users/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"PUT /users/x HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    (b"PUT /users/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET /users/x HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET /users/\xff HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    # bare LF: refused at once, as a handed-over connection's guard (h11) refuses it
    (b"GET /users/x HTTP/1.1\nHost: x\n\n", 400),
])
async def test_malformed_requests_are_a_4xx_json_or_a_clean_close(data, status):
    async with running() as srv:
        s = await connect(srv.addr)
        await s.send_all(data)
        await s.send_eof()
        replies = parse_replies(await read_until_closed(s))
        assert [r.status for r in replies] == ([status] if status else [])
        if status:
            assert set(replies[0].json()) == {"error", "message"}


@pytest.mark.parametrize("app", [True, False])
async def test_an_http2_preface_is_refused_with_or_without_an_app(app):
    async with running(app=app) as srv:  # (with one, never handed to hypercorn's h2)
        await expect_error(srv.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400,
                           "http2_not_supported")


# -- fuzz ---------------------------------------------------------------------------


@contextmanager
def front_in_a_thread() -> Iterator[str]:
    """A Front with the test app on its own trio loop (hypothesis drives blocking
    sockets from the test thread)."""
    ready: list[str] = []
    started = threading.Event()
    token: list[trio.lowlevel.TrioToken] = []
    stop_holder: list[trio.Event] = []

    async def main() -> None:
        store = Store(delay=0.0)
        front = Front(handle=store.handle, is_hot=store.is_hot, app=make_app(),
                      limits=Limits(head_timeout=2, body_timeout=2, linger_timeout=0.2))
        stop = trio.Event()
        stop_holder.append(stop)
        token.append(trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            ready.append(await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                                     shutdown_trigger=stop.wait)))
            started.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield ready[0]
    finally:
        token[0].run_sync_soon(stop_holder[0].set)
        thread.join(10)
        assert not thread.is_alive()


def blocking_exchange(addr: str, data: bytes) -> bytes:
    host, _, port = addr.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=8) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed while we were still sending
        out = b""
        while True:  # a timeout here (the server hung) fails the test
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


_methods = st.sampled_from([b"GET", b"HEAD", b"PUT", b"DELETE", b"POST", b"G T", b"", b"\xff"])
_targets = st.one_of(st.sampled_from([b"/users/a", b"/healthz", b"/echo", b"*", b"/ws"]),
                     st.binary(max_size=40))
_versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 x", b"", b"HTP"])
_eol = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n"])
_header = st.tuples(
    st.one_of(st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Expect", b"Host",
                               b"Connection", b"Upgrade"]), st.binary(max_size=12)),
    st.one_of(st.sampled_from([b"5", b"-1", b"chunked", b"100-continue", b"close",
                               b"websocket", b"1, 2", b"99999999999999999999"]),
              st.binary(max_size=20)))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))  # anything at all
    eol = draw(_eol)
    head = draw(_methods) + b" " + draw(_targets) + b" " + draw(_versions) + eol
    for name, value in draw(st.lists(_header, max_size=5)):
        head += name + b": " + value + eol
    return head + eol + draw(st.binary(max_size=40))


def test_fuzzed_request_bytes_get_a_4xx_json_or_a_clean_close_never_a_5xx():
    with front_in_a_thread() as addr:

        @settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(data=requests())
        def check(data: bytes) -> None:
            out = blocking_exchange(addr, data)
            for part in out.split(b"HTTP/1.1 ")[1:]:
                status = int(part[:3])
                assert status < 500, out
                body = part.partition(b"\r\n\r\n")[2]
                if status >= 400 and b"server: hypercorn" not in part and body:  # HEAD: none
                    assert set(json.loads(body)) == {"error", "message"}, out

        check()
        # and it still serves a well-behaved client
        out = blocking_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
                                       b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
        assert out.endswith(b'{"ok":true}\n')


# -- hand-over --------------------------------------------------------------------


async def test_a_route_that_is_not_hot_is_served_by_the_app_on_the_same_port():
    async with running() as srv:
        s = await connect(srv.addr)
        await s.send_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        [reply] = await read_replies(s, 1)
        assert reply.json() == {"len": 5, "scheme": "http"}
        assert srv.front.statistics().handed_over == 1
        await s.aclose()


async def test_hot_then_not_hot_then_hot_on_one_connection():
    async with running() as srv:
        srv.store.data[b"a"] = b'"A"'
        s = await connect(srv.addr)
        await s.send_all(GET % b"a" + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" + GET % b"a")
        first, health, again = await read_replies(s, 3)
        assert (first.body, health.json(), again.body) == (b'"A"', {"ok": True}, b'"A"')
        assert b"server" not in first.headers
        assert b"server" in health.headers
        assert again.headers[b"etag"] == b'"3"'  # the hot handler, through hypercorn
        stats = srv.front.statistics()
        assert (stats.handed_over, stats.requests_served) == (1, 2)
        await s.aclose()


async def test_hand_over_starts_exactly_after_a_pipelined_body_of_either_framing():
    async with running() as srv:
        s = await connect(srv.addr)
        health = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        await s.send_all(
            b"PUT /users/a HTTP/1.1\r\nHost: t\r\nContent-Length: 21\r\n\r\nGET /healthz HTTP/1.1"
            + b"PUT /users/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"4\r\n\r\n\r\n\r\n0\r\n\r\n" + health + GET % b"a" + GET % b"b")
        put_a, put_b, ok, a, b = await read_replies(s, 5)
        assert (put_a.status, put_b.status, ok.json()) == (204, 204, {"ok": True})
        assert (a.body, b.body) == (b"GET /healthz HTTP/1.1", b"\r\n\r\n")
        await s.aclose()


async def test_oversized_bodies_reach_a_handler_that_asked_for_them_then_the_connection_ends():
    seen: list[Request] = []

    async def handle(req: Request) -> Response:
        seen.append(req)
        if req.oversized:
            return error_response(401, "unauthorized", "refused before the body mattered")
        return Response(200, [], b"%d" % len(req.body))

    front = Front(handle=handle, is_hot=Store.is_hot, app=make_app(),
                  limits=Limits(max_body_bytes=100), oversized_to_handler=True)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        for framing in (b"Content-Length: 101\r\n\r\n" + b"a" * 101,
                        b"Transfer-Encoding: chunked\r\n\r\n"
                        + (b"40\r\n" + b"a" * 64 + b"\r\n") * 2 + b"0\r\n\r\n"):
            async with await connect(addr) as s:
                await s.send_all(b"PUT /users/x HTTP/1.1\r\nHost: t\r\n" + framing + GET % b"x")
                replies = parse_replies(await read_until_closed(s))
            assert [r.status for r in replies] == [401]  # the pipelined GET is not read
            assert replies[0].headers[b"connection"] == b"close"
        assert [(r.oversized, r.body, r.keep_alive) for r in seen] == [(True, b"", False)] * 2
        # Through a handed-over connection the handler gets the same request.
        async with await connect(addr) as s:
            await s.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                             b"PUT /users/x HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n"
                             + b"a" * 101)
            replies = parse_replies(await read_until_closed(s))
        assert [r.status for r in replies] == [200, 401]
        assert replies[1].headers[b"connection"] == b"close"
        assert seen[-1].oversized
        # At the limit it is a plain request.
        async with await connect(addr) as s:
            await s.send_all(b"PUT /users/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
                             + b"a" * 100)
            [ok] = await read_replies(s, 1)
        assert (ok.status, ok.body) == (200, b"100")
        stop.set()


async def test_a_socket_bound_before_is_served():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    store = Store()
    store.data[b"k"] = b"v"
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(partial(serve_front, Front(handle=store.handle), sock,
                                           shutdown_trigger=stop.wait))
        assert addr == f"127.0.0.1:{port}"
        async with await connect(addr) as s:
            await s.send_all(GET % b"k")
            [reply] = await read_replies(s, 1)
        assert reply.body == b"v"
        stop.set()
    assert sock.fileno() == -1  # taken over: closed with the server


async def test_a_port_bound_to_serve_later_refuses_connections_and_a_second_bind():
    """A node binds its port long before it serves (it waits for Kafka first): until
    then a connection is refused at once (not accepted and left hanging), and a second
    server binding the same port fails at its bind, as against a listening port. Once
    served, the port answers."""
    sock = bind_listening("127.0.0.1:0", None)
    port = sock.getsockname()[1]
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", port)
    with pytest.raises(OSError, match="in use") as in_use:
        bind_listening(f"127.0.0.1:{port}", None).close()
    assert in_use.value.errno == errno.EADDRINUSE
    store = Store()
    store.data[b"k"] = b"v"
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(partial(serve_front, Front(handle=store.handle), sock,
                                           shutdown_trigger=stop.wait))
        async with await connect(addr) as s:
            await s.send_all(GET % b"k")
            [reply] = await read_replies(s, 1)
        assert reply.body == b"v"
        stop.set()


async def test_a_websocket_handshake_header_that_is_not_ascii_is_a_400_not_a_crash():
    async with running() as srv:
        await expect_error(srv.addr, b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n"
                           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: \xfe\r\n\r\n",
                           400, "bad_request")
        assert srv.front.statistics().handed_over == 0


async def test_a_websocket_is_handed_over_and_echoes():
    async with running() as srv, open_websocket_url(f"ws://{srv.addr}/ws") as ws:
        for text in ("one", "two"):
            await ws.send_message(text)
            assert await ws.get_message() == text


# -- what hypercorn's parser would answer bare -------------------------------------
# A connection's first request is read by the front; once it is handed over, the rest
# is parsed by hypercorn's h11, behind the front's guard (web/http1/guard.py). Either
# way a request the server cannot take is a JSON 4xx, in its turn, never a bare answer
# nor a 5xx.

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
WS = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


async def raw_answers(addr: str, data: bytes) -> bytes:
    """What ``data``, sent in one write on a new connection, is answered until the
    server closes."""
    async with await connect(addr) as s:
        await s.send_all(data)
        return await read_until_closed(s)


async def answers(addr: str, data: bytes) -> list[Reply]:
    return parse_replies(await raw_answers(addr, data))


async def expect_refusal(addr: str, data: bytes, status: int, code: str,
                         before: int = 0) -> list[Reply]:
    """``data`` is answered ``before`` 200s, then ``status`` (a JSON error ``code``,
    ``Connection: close``), then the connection closes."""
    raw = await raw_answers(addr, data)
    replies = parse_replies(raw)
    assert [r.status for r in replies] == [200] * before + [status], replies
    refusal = replies[-1]
    assert refusal.headers[b"content-type"] == b"application/json"
    assert refusal.json()["error"] == code
    last_head = raw[raw.rindex(b"HTTP/1.1 "):].partition(b"\r\n\r\n")[0].lower()
    assert re.search(rb"^connection:[^\r]*\bclose\b", last_head, re.M), last_head
    return replies


UNSUPPORTED = "unsupported_transfer_encoding"


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize(("request_bytes", "codes"), [
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"0\r\n\r\n", (UNSUPPORTED, UNSUPPORTED)),
    (b"PUT /users/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"0\r\n\r\n", (UNSUPPORTED, UNSUPPORTED)),
    # (llhttp refuses these itself: the lean path still answers the documented code)
    (b"PUT /users/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (UNSUPPORTED, UNSUPPORTED)),
    (b"PUT /users/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
     (UNSUPPORTED, UNSUPPORTED)),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n",
     (UNSUPPORTED, UNSUPPORTED)),
    (b"PUT /users/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
     b"0\r\n\r\n", (UNSUPPORTED, UNSUPPORTED)),
], ids=["not_hot", "hot", "twice", "gzip", "identity", "chunked_then_gzip"])
async def test_a_transfer_coding_but_chunked_is_a_400_json_not_a_501(later, request_bytes,
                                                                     codes):
    async with running() as srv:
        await expect_refusal(srv.addr, (HEALTH if later else b"") + request_bytes, 400,
                             codes[later], before=int(later))
        assert srv.store.data == {}
        assert srv.front.statistics().bad_requests == 1


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (WS.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"")
     + b"Sec-WebSocket-Version: 13\r\n\r\n", 400, "bad_websocket_handshake"),
    (WS.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ=") + b"Sec-WebSocket-Version: 13\r\n\r\n",
     400, "bad_websocket_handshake"),
    (WS + b"\r\n", 400, "bad_websocket_handshake"),
    (WS + b"Sec-WebSocket-Version: 8\r\n\r\n", 426, "websocket_version_unsupported"),
    (WS.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Sec-WebSocket-Version: 13\r\n\r\n", 400,
     "bad_websocket_handshake"),
    (WS + b"Sec-WebSocket-Version: 13\r\nContent-Length: 2\r\n\r\nhi", 400,
     "bad_websocket_handshake"),
    (WS + b"Sec-WebSocket-Version: 13\r\n\r\n"
     + WsConnection(ConnectionType.CLIENT).send(TextMessage(data="early")), 400,
     "bad_websocket_handshake"),
], ids=["no_key", "short_key", "no_version", "version_8", "http_1_0", "body", "early_frame"])
async def test_a_websocket_handshake_hypercorn_would_refuse_bare_is_a_json_4xx(
        later, request_bytes, status, code):
    async with running() as srv:
        replies = await expect_refusal(srv.addr, (HEALTH if later else b"") + request_bytes,
                                       status, code, before=int(later))
        if status == 426:  # RFC 6455 §4.2.2, RFC 9110 §15.5.22
            assert replies[-1].headers[b"sec-websocket-version"] == b"13"
            assert replies[-1].headers[b"upgrade"] == b"websocket"


@pytest.mark.parametrize("refuse", [False, True], ids=["accepted", "refused"])
async def test_a_frame_sent_before_a_late_answer_to_its_handshake_waits_for_it(refuse):
    """RFC 6455 §4.1: a client waits for the 101 before its first frame. One that does
    not, the frame in a read of its own, still gets the answer the route gives, and the
    frame is taken after a 101 (echoed here) or dropped after a refusal."""
    path = b"/ws-late?refuse" if refuse else b"/ws-late"
    client = WsConnection(ConnectionType.CLIENT)
    async with running() as srv, await connect(srv.addr) as s:
        await s.send_all(WS.replace(b"/ws ", path + b" ") + b"Sec-WebSocket-Version: 13\r\n\r\n")
        await trio.sleep(LATE / 5)  # read on its own, and the route still waits
        await s.send_all(client.send(TextMessage(data="early")))
        if refuse:
            [reply] = parse_replies(await read_until_closed(s))
            assert (reply.status, reply.json()) == (403, {"error": "refused"})
            return
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await s.receive_some(65536)
                assert chunk, data
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            client.receive_data(rest)
            while not (messages := [e for e in client.events() if isinstance(e, TextMessage)]):
                chunk = await s.receive_some(65536)
                assert chunk
                client.receive_data(chunk)
        assert [m.data for m in messages] == ["early"]


async def test_a_websocket_handshake_pipelined_behind_a_request_takes_frames_after_its_101():
    """A request and a handshake written together (HTTP/1.1 pipelining), a frame before
    the 101 and one after: both are echoed. The first answer is the request's, not the
    handshake's (taking it for a refusal dropped every frame of the websocket)."""
    client = WsConnection(ConnectionType.CLIENT)
    async with running() as srv, await connect(srv.addr) as s:
        await s.send_all(HEALTH + WS.replace(b"/ws ", b"/ws-late ")
                         + b"Sec-WebSocket-Version: 13\r\n\r\n")
        await trio.sleep(LATE / 5)
        await s.send_all(client.send(TextMessage(data="early")))
        data = b""
        with trio.fail_after(5):
            while data.count(b"\r\n\r\n") < 2 or b"HTTP/1.1 101 " not in data:
                chunk = await s.receive_some(65536)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 "), data[:40]
            _, switched, rest = data.partition(b"HTTP/1.1 101 ")
            assert switched
            client.receive_data(rest.partition(b"\r\n\r\n")[2])
            await s.send_all(client.send(TextMessage(data="later")))
            got: list[str] = []
            while len(got) < 2:
                got += [e.data for e in client.events() if isinstance(e, TextMessage)]
                if len(got) < 2:
                    chunk = await s.receive_some(65536)
                    assert chunk
                    client.receive_data(chunk)
        assert got == ["early", "later"]


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("ending", [
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
], ids=["connection_close", "http_1_0", "http_1_0_with_body"])
async def test_a_handed_over_request_that_ends_the_connection_is_answered_the_rest_dropped(
        later, ending):
    async with running() as srv:
        replies = await answers(srv.addr, (HEALTH if later else b"") + ending + HEALTH
                                + b"GET /x y z HTTP/1.1\r\n\r\n")
        assert [r.status for r in replies] == [200] * (1 + later)
        assert srv.front.statistics().bad_requests == 0


async def test_a_later_head_over_the_bound_is_a_431_json_whole_or_in_pieces():
    async with running(Limits(max_head_bytes=1024)) as srv:
        big = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 2000
        await expect_refusal(srv.addr, HEALTH + big + b"\r\n\r\n", 431, "head_too_large",
                             before=1)
        await expect_refusal(srv.addr, HEALTH + big, 431, "head_too_large", before=1)
        # just under the bound: served
        fits = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX: "
        fits += b"a" * (1024 - len(fits) - 4) + b"\r\n\r\n"
        assert [r.status for r in await answers(srv.addr, HEALTH + fits + HEALTH.replace(
            b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))] == [200, 200, 200]


@pytest.mark.parametrize("bad", [
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n\r\n",
    b"GET /x y z HTTP/1.1\r\nHost: t\r\n\r\n",
    b"PUT /users/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["bad_length", "two_lengths", "no_host", "bad_request_line", "length_and_chunked"])
async def test_a_later_malformed_head_is_a_400_json_after_the_answers_before_it(bad):
    async with running() as srv:
        # the hot request before it is slow: the refusal still comes after its answer
        replies = await answers(srv.addr, HEALTH + GET % b"slow" + bad + HEALTH)
        assert [r.status for r in replies] == [200, 404, 400]
        assert replies[-1].json()["error"] == "bad_request"
        assert replies[-1].headers[b"connection"] == b"close"
        assert srv.front.statistics().bad_requests == 1


# What llhttp (the lean path) refuses and h11 (hypercorn) takes. A framing ambiguity
# among them is a request smuggling vector (a proxy before the node frames the message
# otherwise): refused 400 on either path, before any of it reaches a route.
LEAN_REFUSES = {
    "obs_fold": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
    "obs_fold_length": b"PUT /users/a HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n 2\r\n\r\n{}",
    "length_twice": b"PUT /users/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
                    b"Content-Length: 2\r\n\r\n{}",
    "length_list": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\n{}",
    "bare_lf": b"PUT /users/a HTTP/1.1\nHost: t\nContent-Length: 2\n\n{}",
    "http_1_2": b"GET /healthz HTTP/1.2\r\nHost: t\r\n\r\n",
    "del_in_value": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n",
    "control_in_value": b"GET /users/a HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
    "lowercase_method": b"put /users/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
    "unknown_method": b"FOO /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("bad", list(LEAN_REFUSES))
async def test_what_the_lean_path_refuses_is_refused_on_a_handed_over_connection(later, bad):
    async with running() as srv:
        await expect_refusal(srv.addr, (HEALTH if later else b"") + LEAN_REFUSES[bad]
                             + HEALTH, 400, "bad_request", before=int(later))
        assert srv.store.data == {}
        assert [r.method for r in srv.store.seen] == []
        assert srv.front.statistics().bad_requests == 1


# Chunked framing llhttp refuses and h11 takes (a line ending in a bare LF; h11 waited
# for a CRLF there and answered 408 at http_body_timeout, or served the request).
CHUNKED_PUT = b"PUT /users/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
LEAN_REFUSES_CHUNKS = {
    "bare_lf_lines": CHUNKED_PUT + b"2\n{}\n0\n\n",
    "bare_lf_ending_the_trailers": CHUNKED_PUT + b"2\r\n{}\r\n0\r\n\n",
    "bare_lf_ending_a_trailer": CHUNKED_PUT + b"2\r\n{}\r\n0\r\nX-T: 1\n\r\n",
    "space_after_the_size": CHUNKED_PUT + b"2 \r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("bad", list(LEAN_REFUSES_CHUNKS))
async def test_chunked_framing_the_lean_path_refuses_is_refused_on_a_handed_over_connection(
        later, bad):
    async with running(Limits(body_timeout=30)) as srv:
        with trio.fail_after(10):  # (not the body timeout's 408)
            # (nothing after it: a CRLF that follows ends h11's wait for one)
            await expect_refusal(srv.addr, (HEALTH if later else b"")
                                 + LEAN_REFUSES_CHUNKS[bad], 400, "bad_request",
                                 before=int(later))
        assert srv.store.data == {}


# What h11 (a handed-over connection) refuses and the lean path served or waited on:
# no HTTP version (llhttp's HTTP/0.9), served as HTTP/1.1; a head of lines ending in
# bare LFs, which never ends in CRLF CRLF (408 at the head timeout).
H11_REFUSES = {
    "no_version": b"GET /users/a\r\n\r\n",
    "bare_lf_head": b"GET /users/a HTTP/1.1\nHost: t\n\n",
    "bare_lf_head_end": b"GET /users/a HTTP/1.1\r\nHost: t\r\n\n",
}


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("bad", list(H11_REFUSES))
async def test_what_a_handed_over_connection_refuses_the_lean_path_refuses(later, bad):
    async with running(Limits(head_timeout=30)) as srv:
        with trio.fail_after(10):  # (not the head timeout's 408)
            await expect_refusal(srv.addr, (HEALTH if later else b"") + H11_REFUSES[bad],
                                 400, "bad_request", before=int(later))
        assert srv.store.seen == []


async def test_a_refused_head_request_is_answered_without_a_body():
    async with running() as srv, await connect(srv.addr) as s:
        await s.send_all(HEALTH + b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Length: x\r\n\r\n")
        data = await read_until_closed(s)
        refusal = data[data.index(b"HTTP/1.1 400"):]
        assert b"content-type: application/json" in refusal
        assert refusal.endswith(b"\r\n\r\n")


async def test_empty_lines_between_handed_over_requests_are_skipped():
    async with running() as srv:
        replies = await answers(srv.addr, HEALTH + b"\r\n" + HEALTH + b"\r\n\r\n"
                                + HEALTH.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        assert [r.status for r in replies] == [200, 200, 200]


# -- TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    server.set_alpn_protocols(["http/1.1"])
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_tls_serves_hot_routes_handed_over_routes_and_wss(tls):
    server_ctx, client_ctx = tls
    async with running(ssl_context=server_ctx) as srv:
        srv.store.data[b"t"] = b"1"
        host, _, port = srv.addr.rpartition(":")
        s = await trio.open_ssl_over_tcp_stream(host, int(port), ssl_context=client_ctx,
                                                https_compatible=True)
        await s.send_all(GET % b"t"
                         + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        hot, echo = await read_replies(s, 2)
        assert (hot.body, echo.json()) == (b"1", {"len": 2, "scheme": "https"})
        await s.aclose()
        async with open_websocket_url(f"wss://{srv.addr}/ws", ssl_context=client_ctx) as ws:
            await ws.send_message("secure")
            assert await ws.get_message() == "secure"


async def test_a_tls_client_that_picks_h2_has_its_preface_refused_in_http1():
    ca_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme_ca = trustme.CA()
    trustme_ca.issue_cert("127.0.0.1").configure_cert(ca_server)
    ca_server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.create_default_context()
    trustme_ca.configure_trust(client)
    client.set_alpn_protocols(["h2"])
    async with running(ssl_context=ca_server) as srv:
        host, _, port = srv.addr.rpartition(":")
        s = await trio.open_ssl_over_tcp_stream(host, int(port), ssl_context=client)
        await s.do_handshake()
        assert s.selected_alpn_protocol() == "h2"
        await s.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        [reply] = parse_replies(await read_until_closed(s))
        assert (reply.status, reply.json()["error"]) == (400, "http2_not_supported")
        assert srv.front.statistics().handed_over == 0


async def test_plain_http_on_a_tls_port_and_a_stalled_handshake_are_closed(tls):
    server_ctx, _ = tls
    async with running(Limits(tls_handshake_timeout=0.3), ssl_context=server_ctx) as srv:
        s = await connect(srv.addr)
        await s.send_all(GET % b"x")
        await read_until_closed(s)
        stalled = await connect(srv.addr)
        await read_until_closed(stalled, timeout=3)
        assert srv.front.statistics().tls_failures == 2


async def test_a_silent_tls_connection_is_closed_at_the_head_timeout(tls):
    """A connection that sends nothing is closed at ``head_timeout`` (from the accept),
    TLS or not: the handshake it never starts is part of the wait for its first head.
    It was held for ``tls_handshake_timeout`` (10 s, a setting the node does not
    expose), then given ``head_timeout`` again after a handshake."""
    server_ctx, _ = tls
    async with running(Limits(head_timeout=0.3), ssl_context=server_ctx) as srv:
        stalled = await connect(srv.addr)
        await read_until_closed(stalled, timeout=3)
        assert srv.front.statistics().tls_failures == 1


# -- graceful shutdown ------------------------------------------------------------


async def test_shutdown_finishes_in_flight_requests_and_closes_idle_connections():
    async with running(Limits(drain_timeout=5)) as srv:
        busy, idle, handed = [await connect(srv.addr) for _ in range(3)]
        await idle.send_all(GET % b"x")
        await read_replies(idle, 1)
        await handed.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_replies(handed, 1)
        await busy.send_all(GET % b"slow")
        await trio.sleep(0.1)  # the slow request is in its handler
        with trio.fail_after(3):
            srv.stop.set()
            assert await read_until_closed(idle) == b""
            assert await read_until_closed(handed) == b""
            [reply] = parse_replies(await read_until_closed(busy))
        assert reply.status == 404
        assert reply.headers[b"connection"] == b"close"
        with pytest.raises(OSError, match="onnect"):
            await connect(srv.addr)


async def test_shutdown_ends_an_open_websocket_at_the_drain_deadline():
    async with running(Limits(drain_timeout=0.5)) as srv:
        async with open_websocket_url(f"ws://{srv.addr}/ws") as ws:
            await ws.send_message("x")
            assert await ws.get_message() == "x"
            started = trio.current_time()
            srv.stop.set()
            with trio.fail_after(5), pytest.raises(ConnectionClosed):
                await ws.get_message()
            assert trio.current_time() - started < 3


def cut_off_said(req: Request) -> Response:
    """A cut-off answer that names the request it answers."""
    return error_response(503, "cut_off", f"{req.method.decode()} {req.path.decode()}")


async def test_a_request_still_in_its_handler_at_the_drain_deadline_is_answered_not_dropped():
    """Regression: the drain deadline cancelled a handler still running (a forwarded
    request waits longer than the drain) and its connection closed with no answer.
    Now it gets the front's cut-off answer, after the answers before it, on the lean
    path and on a handed-over connection, at the deadline and not before."""
    drain = 0.5
    store = Store(delay=60)
    async with running(Limits(drain_timeout=drain), store=store, cut_off=cut_off_said) as srv:
        lean, handed = await connect(srv.addr), await connect(srv.addr)
        await handed.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_replies(handed, 1)
        await lean.send_all(GET % b"x" + GET % b"slow1")  # pipelined: a 404, then stuck
        await handed.send_all(GET % b"slow2")
        await trio.sleep(0.1)  # both slow requests are in their handler
        started = trio.current_time()
        srv.stop.set()
        with trio.fail_after(drain + 3):
            first, cut = parse_replies(await read_until_closed(lean))
            [handed_cut] = parse_replies(await read_until_closed(handed))
            await srv.stopped.wait()
        waited = trio.current_time() - started
    assert first.status == 404
    for reply, path in ((cut, "/users/slow1"), (handed_cut, "/users/slow2")):
        assert reply.status == 503
        assert reply.json() == {"error": "cut_off", "message": f"GET {path}"}
        assert reply.headers[b"connection"] == b"close"
    assert drain <= waited < drain + 1.5, waited
    assert srv.front.statistics().cut_off == 2


async def test_the_fronts_own_cut_off_answer_says_the_outcome_is_unknown():
    async with running(Limits(drain_timeout=0.3), store=Store(delay=60)) as srv:
        s = await connect(srv.addr)
        await s.send_all(b"PUT /users/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        await trio.sleep(0.1)
        srv.stop.set()
        [reply] = parse_replies(await read_until_closed(s, timeout=3))
    assert reply.status == 503
    assert reply.headers[b"retry-after"] == b"1"
    doc = reply.json()
    assert isinstance(doc, dict)
    assert doc["error"] == "shutting_down"
    assert "may or may not have taken effect" in doc["message"]


async def test_a_cut_off_that_raises_is_logged_and_the_fronts_own_answer_given(caplog):
    """A node passes its own ``cut_off`` (web/hot.py); should that raise (a bug), the
    request is still answered, with the front's own ``shutting_down`` (README, "Errors":
    the only way a node gives that code), on both paths, and the failure is logged."""
    def broken(req: Request) -> Response:
        raise RuntimeError("a bug in the cut-off answer")

    store = Store(delay=60)
    async with running(Limits(drain_timeout=0.3), store=store, cut_off=broken) as srv:
        lean, handed = await connect(srv.addr), await connect(srv.addr)
        await handed.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_replies(handed, 1)
        await lean.send_all(GET % b"slow1")
        await handed.send_all(GET % b"slow2")
        await trio.sleep(0.1)  # both are in their handler
        srv.stop.set()
        with trio.fail_after(3):
            replies = [*parse_replies(await read_until_closed(lean)),
                       *parse_replies(await read_until_closed(handed))]
    assert len(replies) == 2
    for reply in replies:
        assert reply.status == 503
        assert reply.headers[b"retry-after"] == b"1"
        doc = reply.json()
        assert isinstance(doc, dict)
        assert doc["error"] == "shutting_down"
    failed = [r for r in caplog.records if "event=http1_cut_off_failed" in r.getMessage()]
    assert len(failed) == 2, caplog.text
    assert srv.front.statistics().cut_off == 2


@pytest.mark.parametrize("tls_on", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("handed_over", [False, True], ids=["lean", "handed_over"])
async def test_a_client_that_does_not_read_cannot_hold_the_shutdown(handed_over, tls_on, tls,
                                                                    caplog):
    """A client that stops reading while answers to it are unsent (pipelined GETs of a
    large value, then a request still in its handler at the drain deadline): the
    front gives up on it ``cut_off_timeout`` after the drain deadline, on the lean path
    (its own deadline) and on a handed-over one too (hypercorn shields its socket
    writes: the front closes the socket under it), quietly."""
    server_ctx, client_ctx = tls
    lim = Limits(drain_timeout=0.3, cut_off_timeout=0.5)
    store = Store(delay=60)
    store.data[b"big"] = b"x" * 1_000_000
    async with running(lim, store=store, ssl_context=server_ctx if tls_on else None) as srv:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, _, port = srv.addr.rpartition(":")
        s.connect((host, int(port)))  # (blocking: the server accepts at once)
        stream: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(s))
        if tls_on:
            stream = trio.SSLStream(stream, client_ctx, server_hostname="127.0.0.1",
                                    https_compatible=True)
        async with stream:  # (its close ends a server stuck on it: a failure, not a hang)
            if handed_over:
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                await read_replies(stream, 1)
            await stream.send_all(GET % b"big" * 8 + GET % b"slow")  # and never reads again
            await trio.sleep(0.3)  # the server's writes to it are stuck
            started = trio.current_time()
            srv.stop.set()
            with trio.fail_after(5):
                await srv.stopped.wait()
            waited = trio.current_time() - started
    assert waited < lim.drain_timeout + lim.cut_off_timeout + 0.5, waited
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
