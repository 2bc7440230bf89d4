"""``GET /cluster`` asks each member at most once at a time, however many clients ask
it: requests that come while a round of asks runs share its reports
(web/routes_dashboard.py, ``Rounds``). The node is offline (tests/support/offline.py);
its routing table names members the test plays, which accept and never answer."""

from __future__ import annotations

from functools import partial

import orjson
import trio

from kstate.core.messages import RoutingTable
from tests.support.http1 import connect, parse_replies, raw_server, read_until_closed
from tests.support.offline import offline_services
from web.app import create_app
from web.http1 import serve_front
from web.server import FrontSettings, build_front

CLIENTS = 20
MEMBERS = 3


async def test_concurrent_cluster_requests_share_one_round_of_asks():
    accepted: list[trio.SocketStream] = []
    asked = trio.Event()

    async def stall(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        if len(accepted) == MEMBERS:
            asked.set()
        await trio.sleep_forever()

    async def ask(addr: str, statuses: list[dict[str, str]]) -> None:
        async with await connect(addr) as s:
            await s.send_all(b"GET /cluster HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            [reply] = parse_replies(await read_until_closed(s, timeout=10))
        assert reply.status == 200
        doc = orjson.loads(reply.body)
        statuses.append({m["url"]: m["status"] for m in doc["members"] if not m["self"]})

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        members = [await raw_server(nursery, stall) for _ in range(MEMBERS)]
        s = offline_services()
        s.router.table = RoutingTable(
            generation=1, owners={p: members[p % MEMBERS] for p in range(10)})
        front = build_front(s, create_app(s), FrontSettings(), None)
        addr = await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                           shutdown_trigger=stop.wait))
        statuses: list[dict[str, str]] = []
        async with trio.open_nursery() as clients:
            clients.start_soon(ask, addr, statuses)
            with trio.fail_after(5):
                await asked.wait()  # the first request's round is under way
            for _ in range(CLIENTS - 1):
                clients.start_soon(ask, addr, statuses)
        assert statuses == [dict.fromkeys(members, "unreachable")] * CLIENTS
        assert len(accepted) == MEMBERS  # one ask per member, not one per request
        stop.set()
        await s.proxy.aclose()
        nursery.cancel_scope.cancel()

