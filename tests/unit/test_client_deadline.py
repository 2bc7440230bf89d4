"""The routing-aware client's ``timeout`` bounds a whole attempt, over real sockets to
a node the test plays byte by byte: one that answers a byte at a time (each read gets
something long before ``timeout``, so httpcore's per-read timeout never fires) holds
an attempt no longer than ``timeout``, and a ``/groupinfo`` no longer than
``refresh_timeout``. Cut off, a read is retried at another node, and a conditional
write that may have arrived is ``outcome_unknown``, never retried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import orjson
import pytest
import trio

from kstate.client import KstateClient, Unavailable

USER = {"name": "N", "email": "a@b.c"}
# What a trickled answer would take in all: far past the client's timeout, well under
# the test's own guard when cut off. Each byte comes long before the per-read timeout.
BYTE_EVERY = 0.25
TIMEOUT = 1.0
GUARD = 12.0


def answer(status: bytes, body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 " + status, b"content-type: application/json",
            b"kstate-generation: 1", b"content-length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class Node:
    """A node over a raw socket: answers ``/groupinfo`` (``owner`` holds every one of
    10 partitions) and every user request with 200 and :data:`USER`; the paths in
    ``trickle`` it answers one byte every :data:`BYTE_EVERY` seconds."""

    def __init__(self, trickle: tuple[bytes, ...] = (), delay: float = 0.0) -> None:
        self.trickle = trickle
        self.delay = delay  # before each answer to a user request, then all at once
        self.url = ""
        self.owner = ""
        self.requests: list[bytes] = []

    async def serve(self, stream: trio.SocketStream) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ")[:2]
                size = next((int(v) for k, _, v in (h.partition(b":") for h in lines[1:])
                             if k.strip().lower() == b"content-length"), 0)
                while len(buf) < size:
                    buf += await stream.receive_some(65536)
                buf = buf[size:]
                self.requests.append(method + b" " + path)
                if path == b"/groupinfo":
                    table = {f"t-{p}": self.owner for p in range(10)}
                    out = answer(b"200 OK", orjson.dumps(table), b"connection: close")
                else:
                    out = answer(b"200 OK", orjson.dumps(USER), b'etag: "1-2"')
                if path != b"/groupinfo":
                    await trio.sleep(self.delay)
                if path in self.trickle:
                    for byte in out:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(BYTE_EVERY)
                else:
                    await stream.send_all(out)
                if path == b"/groupinfo":
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def with_nodes(nodes: list[Node],
                     body: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        for node in nodes:
            listeners = await nursery.start(partial(trio.serve_tcp, node.serve, 0,
                                                    host="127.0.0.1"))
            node.url = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        await body()
        nursery.cancel_scope.cancel()


async def test_a_read_answered_byte_by_byte_is_cut_off_and_retried_elsewhere():
    slow, other = Node(trickle=(b"/users/a@b.c",)), Node()

    async def body() -> None:
        slow.owner = other.owner = slow.url
        async with KstateClient([slow.url, other.url], timeout=TIMEOUT, retries=2,
                                max_retry_after=0.01) as kc:
            with trio.fail_after(GUARD):
                assert await kc.get("a@b.c") == USER
    await with_nodes([slow, other], body)
    assert slow.requests.count(b"GET /users/a@b.c") == 1
    assert other.requests.count(b"GET /users/a@b.c") == 1


@pytest.mark.parametrize("method", ["put", "delete"])
async def test_a_conditional_write_answered_byte_by_byte_is_outcome_unknown(method: str):
    slow = Node(trickle=(b"/users/a@b.c",))

    async def body() -> None:
        slow.owner = slow.url
        async with KstateClient([slow.url], timeout=TIMEOUT, retries=2,
                                max_retry_after=0.01) as kc:
            write = (partial(kc.put, "a@b.c", "N") if method == "put"
                     else partial(kc.delete, "a@b.c"))
            with trio.fail_after(GUARD), pytest.raises(Unavailable) as info:
                await write(if_match='"1-2"')
            assert info.value.code == "outcome_unknown"
    await with_nodes([slow], body)
    assert len([r for r in slow.requests if r.endswith(b"/users/a@b.c")]) == 1


async def test_a_groupinfo_answered_byte_by_byte_is_cut_off_at_refresh_timeout():
    """Every request that needs the table waits behind a refresh (its lock): a node
    trickling ``/groupinfo`` would hold them all."""
    slow = Node(trickle=(b"/groupinfo",))

    async def body() -> None:
        slow.owner = slow.url
        kc = KstateClient([slow.url], timeout=GUARD * 2, refresh_timeout=TIMEOUT)
        try:
            with trio.fail_after(GUARD), pytest.raises(Unavailable) as info:
                await kc.refresh()
            assert info.value.code == "no_node"
        finally:
            await kc.aclose()
    await with_nodes([slow], body)


async def test_waiting_for_a_pooled_connection_leaves_the_answer_its_whole_timeout():
    """``timeout`` is meant to be above what a node takes to answer: a write that first
    waited for one of the node's pooled connections still gets all of it for the
    answer (else a node's timely answer would be outcome_unknown)."""
    timeout = 3.0
    # Each wait well within the timeout, both together well past it.
    node = Node(delay=timeout * 0.6)

    async def body() -> None:
        node.owner = node.url
        async with KstateClient([node.url], timeout=timeout, retries=0,
                                max_connections=1) as kc:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kc.get, "a@b.c")  # holds the one connection
                await trio.sleep(timeout * 0.05)
                with trio.fail_after(GUARD):
                    assert await kc.put("a@b.c", "N", if_match='"1-2"') == '"1-2"'
    await with_nodes([node], body)
    assert len([r for r in node.requests if r.endswith(b"/users/a@b.c")]) == 2
