"""The routing-aware client (kstate/client) gives its connections back: a node that
left the routing table (and is no seed) has its pool closed once nothing is under way
there, and once closed the client stays closed, over real sockets to fronts the test
plays (web/http1)."""

from __future__ import annotations

import socket
from functools import partial

import orjson
import pytest
import trio

from kstate.client import KstateClient, Unavailable
from kstate.core.wire import GENERATION_HEADER
from web.http1 import Front, Request, Response, serve_front


class Cluster:
    """Fronts that answer the same routing table (``owner`` holds every partition)
    and 200 to every user GET."""

    def __init__(self) -> None:
        self.owner = ""
        self.generation = 1

    async def handle(self, req: Request) -> Response:
        if req.path == b"/groupinfo":
            table = {f"t-{p}": self.owner for p in range(10)}
            return Response(200, [(b"content-type", b"application/json"),
                                  (GENERATION_HEADER.encode(), str(self.generation).encode())],
                            orjson.dumps(table))
        return Response(200, [(b"content-type", b"application/json")],
                        orjson.dumps({"name": "N", "email": "a@b.c"}))


async def test_the_pool_of_a_node_that_left_is_closed():
    cluster = Cluster()
    a, b = Front(handle=cluster.handle), Front(handle=cluster.handle)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        a_url = await nursery.start(partial(serve_front, a, "127.0.0.1:0",
                                            shutdown_trigger=stop.wait))
        b_url = await nursery.start(partial(serve_front, b, "127.0.0.1:0",
                                            shutdown_trigger=stop.wait))
        cluster.owner = a_url
        async with KstateClient([b_url]) as kc:  # A is known from the table only
            assert await kc.get("a@b.c") is not None
            assert a.statistics().open_connections == 1  # kept alive in A's pool
            cluster.owner, cluster.generation = b_url, 2  # A left the group
            await kc.refresh()
            with trio.fail_after(10):
                while a.statistics().open_connections:
                    await trio.sleep(0.01)  # the client closed it: the front sees EOF
            assert await kc.get("a@b.c") is not None
        stop.set()


async def test_a_closed_client_refuses_requests():
    kc = KstateClient(["127.0.0.1:1"])  # nothing listens there
    await kc.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await kc.get("a@b.c")
    await kc.aclose()  # twice is fine


@pytest.mark.parametrize("setting", [{"max_connections": 0}, {"max_connections": -1},
                                     {"down_for": -1.0}, {"timeout": 0.0}])
def test_a_setting_that_cannot_work_is_refused_at_once(setting: dict[str, float]):
    """A pool of no connection sends nothing: every request would wait out its timeout
    and end as "no node answered /groupinfo", as if the cluster were down."""
    with pytest.raises(ValueError, match="required"):
        KstateClient(["127.0.0.1:1"], **setting)


async def test_a_client_that_retries_for_long_gives_up_with_its_own_error(monkeypatch):
    """Over a thousand retries (a caller's "retry for a long time"), against a port
    nobody listens on: the last one ends in the client's Unavailable, not in an
    OverflowError from computing the back-off (2.0 ** 1024). The back-off's sleeps are
    skipped here; the connections are real."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    async def no_wait(_: float) -> None:
        await trio.lowlevel.checkpoint()

    monkeypatch.setattr("kstate.client._client.anyio.sleep", no_wait)
    kc = KstateClient([closed], retries=1100, down_for=0)
    try:
        with pytest.raises(Unavailable):
            await kc.get("a@b.c")
    finally:
        await kc.aclose()
