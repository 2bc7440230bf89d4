"""web/http1/client.py against real loopback servers: pooling and reuse, the stale
connection rules, NotSent vs NoAnswer, the deadline, byte-exact headers, TLS."""

from __future__ import annotations

import ssl
from functools import partial

import pytest
import trio
import trustme

from tests.support.http1 import Store, raw_server
from web.http1 import Front, InvalidRequest, NoAnswer, NotSent, Pool, serve_front


async def read_request(stream: trio.SocketStream, seen: list[bytes]) -> bool:
    """Read one body-less request head (or a PUT/POST with content-length); False at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            while len(body) < int(line.split(b":")[1]):
                body += await stream.receive_some(65536)
    seen.append(head.split(b"\r\n")[0])
    return True


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_connections_are_pooled_and_reused_against_the_front():
    store = Store()
    store.data[b"k"] = b'{"v":1}'
    front = Front(handle=store.handle)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        addr = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        pool = Pool(timeout=5)
        for _ in range(3):
            answer = await pool.request(addr, b"GET", b"/users/k", [(b"X-Trace", b"1")])
            assert (answer.status, answer.body) == (200, b'{"v":1}')
            assert (b"etag", b'"7"') in answer.headers
        put = await pool.request(addr, b"PUT", b"/users/n", [], b"new")
        head = await pool.request(addr, b"HEAD", b"/users/n", [])
        get = await pool.request(addr, b"GET", b"/users/n", [])
        assert (put.status, head.status, head.body, get.body) == (204, 200, b"", b"new")
        assert dict(head.headers)[b"content-length"] == b"3"
        stats = pool.statistics()
        assert (stats.opened, stats.reused, stats.idle) == (1, 5, 1)
        async with trio.open_nursery() as burst:  # concurrent requests: more connections
            for _ in range(4):
                burst.start_soon(pool.request, addr, b"GET", b"/users/k")
        assert pool.statistics().idle == pool.statistics().opened
        await pool.aclose()
        stop.set()


async def test_a_pooled_connection_the_server_closed_is_dropped_before_use():
    seen: list[bytes] = []

    async def once_then_close(stream: trio.SocketStream) -> None:
        if await read_request(stream, seen):
            await stream.send_all(OK)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, once_then_close)
        pool = Pool(timeout=5)
        await pool.request(addr, b"GET", b"/a")
        await trio.sleep(0.1)  # the close has arrived by now
        answer = await pool.request(addr, b"POST", b"/b", [], b"body")  # not idempotent
        assert answer.body == b"ok"
        assert seen == [b"GET /a HTTP/1.1", b"POST /b HTTP/1.1"]  # each exactly once
        stats = pool.statistics()
        assert (stats.opened, stats.stale_dropped, stats.retried) == (2, 1, 0)
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def close_on_second_request(stream: trio.SocketStream, seen: list[bytes]) -> None:
    """Answer a connection's first request; read its second and close unanswered
    (the race of a peer's idle timer with the client's next request)."""
    if await read_request(stream, seen):
        await stream.send_all(OK)
        await read_request(stream, seen)
    await stream.aclose()


async def test_an_idempotent_request_on_a_connection_closed_unanswered_is_sent_again():
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, partial(close_on_second_request, seen=seen))
        pool = Pool(timeout=5)
        await pool.request(addr, b"GET", b"/a")
        answer = await pool.request(addr, b"PUT", b"/b", [], b"v")
        assert answer.body == b"ok"
        assert seen == [b"GET /a HTTP/1.1", b"PUT /b HTTP/1.1", b"PUT /b HTTP/1.1"]
        assert pool.statistics().retried == 1
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_a_post_on_a_connection_closed_unanswered_is_ambiguous():
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, partial(close_on_second_request, seen=seen))
        pool = Pool(timeout=5)
        await pool.request(addr, b"GET", b"/a")
        with pytest.raises(NoAnswer, match="closed before any answer"):
            await pool.request(addr, b"POST", b"/b", [], b"v")
        assert seen == [b"GET /a HTTP/1.1", b"POST /b HTTP/1.1"]
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_a_request_the_caller_says_is_not_idempotent_is_never_sent_twice():
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, partial(close_on_second_request, seen=seen))
        pool = Pool(timeout=5)
        await pool.request(addr, b"GET", b"/a")
        with pytest.raises(NoAnswer, match="closed before any answer"):
            await pool.request(addr, b"PUT", b"/b", [(b"if-match", b'"1-2"')], b"v",
                               idempotent=False)
        assert seen == [b"GET /a HTTP/1.1", b"PUT /b HTTP/1.1"]
        assert pool.statistics().retried == 0
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_a_connection_idle_past_its_age_is_dropped_unused():
    seen: list[bytes] = []

    async def keep_answering(stream: trio.SocketStream) -> None:
        while await read_request(stream, seen):
            await stream.send_all(OK)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, keep_answering)
        pool = Pool(timeout=5, max_idle_age=0.2)
        await pool.request(addr, b"GET", b"/a")
        await pool.request(addr, b"GET", b"/b")  # young enough: reused
        await trio.sleep(0.3)
        await pool.request(addr, b"GET", b"/c")  # too old: a new connection
        stats = pool.statistics()
        assert (stats.opened, stats.reused, stats.stale_dropped) == (2, 1, 1)
        assert seen == [b"GET /a HTTP/1.1", b"GET /b HTTP/1.1", b"GET /c HTTP/1.1"]
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_a_refused_connection_is_not_sent():
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, trio.SocketStream.aclose)
        nursery.cancel_scope.cancel()
    with pytest.raises(NotSent, match="cannot connect"):
        await Pool(timeout=2).request(addr, b"PUT", b"/x", [], b"v")


async def test_a_pooled_connection_closed_by_a_server_that_is_gone_is_not_sent():
    seen: list[bytes] = []

    async def once_then_close(stream: trio.SocketStream) -> None:
        if await read_request(stream, seen):
            await stream.send_all(OK)
        await stream.aclose()

    pool = Pool(timeout=5)
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, once_then_close)
        await pool.request(addr, b"GET", b"/a")
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    with pytest.raises(NotSent):
        await pool.request(addr, b"POST", b"/b", [], b"v")
    assert pool.statistics().stale_dropped == 1


async def test_a_server_that_reads_and_closes_is_no_answer():
    async def read_and_close(stream: trio.SocketStream) -> None:
        await read_request(stream, [])
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, read_and_close)
        with pytest.raises(NoAnswer, match="closed before the answer ended"):
            await Pool(timeout=5).request(addr, b"GET", b"/a")
        nursery.cancel_scope.cancel()


async def test_a_silent_server_is_no_answer_at_the_deadline():
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, silent)
        pool = Pool(timeout=5)
        started = trio.current_time()
        with pytest.raises(NoAnswer, match=r"within 0\.3s"):
            await pool.request(addr, b"GET", b"/a", deadline_after=0.3)
        assert 0.3 <= trio.current_time() - started < 1.5
        nursery.cancel_scope.cancel()


async def test_a_deadline_before_any_byte_was_sent_is_not_sent():
    """A TLS peer that never answers the handshake: the request never left."""
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, silent)
        pool = Pool(timeout=0.3, connect_timeout=5, ssl_context=ssl.create_default_context())
        with pytest.raises(NotSent, match="no connection within"):
            await pool.request(addr, b"PUT", b"/a", [], b"v")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("headers", [
    [(b"x-a", b"1\r\nx-injected: 1")],
    [(b"x-a", b"1\n")],
    [(b"x-a", b"nul\x00")],
    [(b"x-a", b"ctl\x01")],
    [(b"bad name", b"1")],
    [(b"", b"1")],
    [(b"content-length", b"5")],
])
async def test_headers_that_cannot_be_sent_are_refused_before_anything_is_sent(headers):
    pool = Pool(timeout=1)
    with pytest.raises(InvalidRequest):
        await pool.request("127.0.0.1:1", b"GET", b"/a", headers)
    for target in (b"/a b", b"/\xc3\xa9", b""):
        with pytest.raises(InvalidRequest):
            await pool.request("127.0.0.1:1", b"GET", target, [])
    assert pool.statistics().opened == 0


async def test_headers_go_out_byte_exact_and_answers_of_every_framing_are_read():
    raw: list[bytes] = []
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nbc\r\n1\r\nd\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close",
    ]

    async def scripted(stream: trio.SocketStream) -> None:
        for answer in answers:
            data = await stream.receive_some(65536)
            raw.append(data)
            await stream.send_all(answer)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, scripted)
        pool = Pool(timeout=5)
        hdrs = [(b"X-MiXeD", b"  spaced \xe9 value"), (b"Host", b"example")]
        first = await pool.request(addr, b"GET", b"/p?q=%41", hdrs)
        second = await pool.request(addr, b"GET", b"/2")
        third = await pool.request(addr, b"GET", b"/3")
        assert raw[0] == (b"GET /p?q=%41 HTTP/1.1\r\nX-MiXeD:   spaced \xe9 value\r\n"
                          b"Host: example\r\n\r\n")
        assert (first.status, first.body) == (200, b"a")
        assert (second.status, second.body) == (201, b"bcd")
        assert (third.status, third.body) == (200, b"until-close")
        assert pool.statistics().idle == 0  # a close-delimited answer ends the connection
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_tls_to_a_tls_front():
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    store = Store()
    store.data[b"s"] = b"secret"
    front = Front(handle=store.handle, ssl_context=server_ctx)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        addr = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        pool = Pool(timeout=5, ssl_context=client_ctx)
        for _ in range(2):
            assert (await pool.request(addr, b"GET", b"/users/s")).body == b"secret"
        assert (pool.statistics().opened, pool.statistics().reused) == (1, 1)
        wrong = Pool(timeout=5, ssl_context=client_ctx, server_hostname="elsewhere")
        with pytest.raises(NotSent):
            await wrong.request(addr, b"GET", b"/users/s")
        await pool.aclose()
        stop.set()
