"""web/peers.py against tiny HTTP servers on loopback: keep-alive reuse, a pooled
connection the server closed, a server that never answers, one that refuses."""

from __future__ import annotations

from functools import partial

import h11
import pytest
import trio

from tools.procs import free_port
from web.peers import PeerError, PeerPool


async def serve_once_then_close(stream: trio.SocketStream, seen: list[bytes]) -> None:
    """Answer one request (keep-alive headers and all), then close: like a server whose
    idle timeout fired between two requests of the client."""
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            seen.append(event.target)
        elif isinstance(event, h11.EndOfMessage):
            break
    body = b'{"ok":true}'
    data = conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(body)))]))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    await stream.send_all(data)
    await stream.aclose()


async def start_server(nursery: trio.Nursery, handler) -> str:
    port = free_port()
    listeners = await nursery.start(partial(trio.serve_tcp, handler, port, host="127.0.0.1"))
    assert listeners
    return f"127.0.0.1:{port}"


async def test_a_connection_the_server_closed_is_replaced_transparently():
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        url = await start_server(nursery, partial(serve_once_then_close, seen=seen))
        pool = PeerPool(timeout=5)
        first = await pool.request(url, "GET", "/a", [], b"")
        await trio.sleep(0.1)  # the server has closed the pooled connection by now
        second = await pool.request(url, "PUT", "/b", [("x-test", "1")], b"body")
        assert (first.status, first.body) == (200, b'{"ok":true}')
        assert (second.status, second.body) == (200, b'{"ok":true}')
        assert seen == [b"/a", b"/b"]  # each request reached the server exactly once
        assert pool.opened == 2
        assert pool.reused == 1
        await pool.aclose()
        nursery.cancel_scope.cancel()


async def test_a_server_that_never_answers_is_a_peer_error_within_the_timeout():
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        url = await start_server(nursery, silent)
        pool = PeerPool(timeout=0.5)
        start = trio.current_time()
        with pytest.raises(PeerError):
            await pool.request(url, "GET", "/", [], b"")
        assert trio.current_time() - start < 2
        nursery.cancel_scope.cancel()


async def test_nobody_listening_is_a_peer_error():
    pool = PeerPool(timeout=2)
    with pytest.raises(PeerError):
        await pool.request(f"127.0.0.1:{free_port()}", "GET", "/", [], b"")


async def test_all_pooled_connections_dead_after_a_peer_restart_still_one_fresh_retry():
    """A peer process that died leaves every pooled connection to it stale; the retry
    must go to a fresh connection, not to the next stale one."""
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        url = await start_server(nursery, partial(serve_once_then_close, seen=seen))
        pool = PeerPool(timeout=5)
        async with trio.open_nursery() as burst:  # three connections, all pooled
            for i in range(3):
                burst.start_soon(pool.request, url, "GET", f"/{i}", [], b"")
        assert pool.opened == 3
        await trio.sleep(0.1)  # the server closed all three
        resp = await pool.request(url, "GET", "/after", [], b"")
        assert resp.status == 200
        assert seen[-1] == b"/after"
        await pool.aclose()
        nursery.cancel_scope.cancel()
