"""A node's user requests still in flight when its HTTP drain deadline passes
(web/hot.py, ``cut_off``): each is answered 503 + Retry-After with what is known of
it, never dropped. A node's real front and handlers, offline (no Kafka): the routing
table sends keys to an owner that takes requests and never answers, to one that
cannot be connected to (its accept queue is full), and to this node itself, whose
partitions are assigned but not caught up and whose writer never takes a write."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from functools import partial

import pytest
import trio

from actors.replies import ReplyBox
from kstate.client import AMBIGUOUS_WRITE_CODES, NOT_APPLIED_CODES
from kstate.core.messages import Assign, RoutingTable
from kstate.core.partitioner import partition_for
from kstate.core.table import StateTable
from tests.support.http1 import connect, parse_replies, raw_server, read_replies, read_until_closed
from tests.support.offline import offline_services
from web.app import create_app
from web.http1 import serve_front
from web.proxy import no_answer, not_reached
from web.server import FrontSettings, build_front

ME = "127.0.0.1:1"
N = 10
SILENT, UNREACHABLE, LOCAL = 0, 1, 2  # the partitions, by their owner
DRAIN = 0.5
LONG = 60.0  # proxy and catch-up timeouts: nothing ends before the drain deadline


def key_in(partition: int) -> str:
    return next(f"k{i}@x.y" for i in range(10_000) if partition_for(f"k{i}@x.y".encode(), N)
                == partition)


def put(email: str) -> bytes:
    body = b'{"name":"N"}'
    return (f"PUT /users/{email} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get(email: str) -> bytes:
    return f"GET /users/{email} HTTP/1.1\r\nHost: h\r\n\r\n".encode()


@pytest.fixture
def unreachable() -> Iterator[str]:
    """An address whose accept queue is full: a connect to it hangs (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    addr = listener.getsockname()
    held = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(addr)
        held.append(c)
    try:
        yield f"{addr[0]}:{addr[1]}"
    finally:
        for c in [*held, listener]:
            c.close()


async def test_requests_in_flight_at_the_drain_deadline_are_answered_with_what_is_known(
        unreachable):
    async def silent(stream: trio.SocketStream) -> None:  # takes requests, never answers
        while await stream.receive_some(65536):
            pass

    table = StateTable(N, quiet=True)
    # this node holds LOCAL, not caught up (Kafka's end is ahead): reads wait for it
    table.assign(Assign(1, frozenset({LOCAL}), {LOCAL: 5}, ReplyBox()))
    s = offline_services(ME, partitions=N, proxy_timeout=LONG, catchup_timeout=LONG,
                         table=table)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        owner = await raw_server(nursery, silent)
        s.router.table = RoutingTable(1, {SILENT: owner, UNREACHABLE: unreachable, LOCAL: ME})
        front = build_front(s, create_app(s), FrontSettings(drain_timeout=DRAIN), None)
        addr = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        cases = {
            "forwarded_put": put(key_in(SILENT)),
            "forwarded_get": get(key_in(SILENT)),
            "unsent_put": put(key_in(UNREACHABLE)),
            "local_put": put(key_in(LOCAL)),
            "local_get": get(key_in(LOCAL)),
        }
        streams = {}
        for name, raw in cases.items():
            streams[name] = await connect(addr)
            await streams[name].send_all(raw)
        # on a connection handed over to hypercorn (its first request is not hot)
        streams["handed_put"] = handed = await connect(addr)
        await handed.send_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        await read_replies(handed, 1)
        await handed.send_all(put(key_in(SILENT)))
        await trio.sleep(0.2)  # every request is in its handler
        stop.set()
        answers = {}
        with trio.fail_after(DRAIN + 3):
            for name, stream in streams.items():
                [answers[name]] = parse_replies(await read_until_closed(stream))
        nursery.cancel_scope.cancel()
    await s.proxy.aclose()

    codes = {}
    for name, reply in answers.items():
        assert reply.status == 503, (name, reply)
        assert reply.headers[b"retry-after"].isdigit(), (name, reply)
        assert reply.headers[b"content-type"] == b"application/json", (name, reply)
        doc = reply.json()
        assert isinstance(doc, dict)
        codes[name] = doc["error"]
        if name in ("forwarded_put", "forwarded_get", "handed_put"):
            # sent to the owner: it may still apply a write; the proxy's own words
            assert doc == {"error": "owner_no_answer", "message": no_answer(owner).message}
        elif name == "unsent_put":  # never left this node: safe to retry
            assert doc == {"error": "owner_not_reached",
                           "message": not_reached(unreachable).message}
    # handed to this node's writer: it may have produced the record
    assert codes["local_put"] in AMBIGUOUS_WRITE_CODES
    # a read changed nothing
    assert codes["local_get"] in NOT_APPLIED_CODES
    assert codes["unsent_put"] in NOT_APPLIED_CODES
    assert codes["forwarded_put"] in AMBIGUOUS_WRITE_CODES
    assert front.statistics().cut_off == len(answers)
