"""The one read/write decision (web/decide.py) with a real router and state owner, a
standby copy, and a proxy the test plays (no Kafka, no HTTP): where each request is
answered, what falls back to the standby copy, and that each request counts once."""

from __future__ import annotations

from functools import partial

import trio

from actors import state
from actors.replies import ReplyBox
from actors.router import RouterHandle
from actors.standby import StandbyHandle
from kstate.core.messages import Assign, Batch, Record, RoutingTable, Write
from kstate.core.outcomes import Found, Missing, Unavailable, Written
from kstate.core.partitioner import partition_for
from kstate.core.table import StateTable
from web.decide import Decider
from web.proxy import Incoming, PeerResponse

ME, OTHER = "127.0.0.1:1", "127.0.0.1:2"
N = 4


def user(email: str) -> bytes:
    return f'{{"name":"N","email":"{email}"}}'.encode()


def key_in(partition: int, prefix: str = "k") -> bytes:
    i = 0
    while partition_for(f"{prefix}{i}@x".encode(), N) != partition:
        i += 1
    return f"{prefix}{i}@x".encode()


def incoming(method: str = "GET") -> Incoming:
    return Incoming(method, "/users/x", b"", [], b"", 0)


class FakeProxy:
    """Answers like the owner would, or not at all."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.down = False

    async def exchange(self, req: Incoming, url: str, generation: int):
        self.calls.append((url, generation))
        if self.down:
            return Unavailable("owner_not_reached", f"the owner {url} was not reached")
        return PeerResponse(200, [(b"etag", b'"1-5"')], b'{"from":"owner"}')


async def node(nursery: trio.Nursery, *, standby: bool):
    """This node owns partition 0 (caught up, holding k0) and partition 2 has no
    owner; partition 1 belongs to OTHER. The standby copy (if any) holds everything."""
    send, recv = trio.open_memory_channel(0)
    handle = await nursery.start(partial(state.run, inbox=recv, num_partitions=N))
    box: ReplyBox[dict] = ReplyBox()
    await send.send(Assign(0, frozenset({0}), {0: 1}, box))
    await box.wait()
    k0, k1, k2 = key_in(0), key_in(1), key_in(2)
    await send.send(Batch(0, {0: [Record(0, k0, user(k0.decode()))]}, {0: 1}))
    with trio.fail_after(1):
        await handle.wait_caught_up(0)
    copy = None
    if standby:
        table = StateTable(N, quiet=True)
        table.assign(Assign(0, frozenset(range(N)), {}, ReplyBox()))
        table.apply(Batch(0, {1: [Record(0, k1, user(k1.decode()))],
                              2: [Record(0, k2, user(k2.decode()))]}, {p: 1 for p in range(N)}))
        copy = StandbyHandle(table)

    async def ends(partition: int) -> int:
        return 1  # Kafka has nothing past offset 0 anywhere

    writes_send, writes_recv = trio.open_memory_channel(4)
    router = RouterHandle(ME, N, handle, writes_send, 0.5, ends, copy)
    router.table = RoutingTable(3, {0: ME, 1: OTHER}, {"a": ME, "b": OTHER})
    proxy = FakeProxy()
    return Decider(router, proxy), proxy, writes_recv, (k0, k1, k2), send  # type: ignore[arg-type]


async def test_reads_local_forwarded_and_refused_each_count_once():
    async with trio.open_nursery() as nursery:
        d, proxy, _, (k0, k1, k2), send = await node(nursery, standby=False)
        assert await d.read_user(k0, incoming(), None) == (Found(0, user(k0.decode()), 0), False)
        assert await d.read_user(key_in(0, "nobody"), incoming(), None) == (Missing(0), False)
        answer, proxied = await d.read_user(k1, incoming(), None)
        assert proxied
        assert isinstance(answer, PeerResponse)
        assert answer.body == b'{"from":"owner"}'
        assert proxy.calls == [(OTHER, 3)]
        answer, proxied = await d.read_user(k2, incoming(), None)  # no owner
        assert answer == Unavailable("no_owner", "no owner known for partition 2")
        proxy.down = True
        answer, proxied = await d.read_user(k1, incoming(), None)
        assert isinstance(answer, Unavailable)
        assert answer.reason == "owner_not_reached"
        assert proxied
        c = d.router.counters
        # local reads 2; forwards 2 (one failed: the proxy counts that); one refusal
        assert (c.local_reads, c.forwards, c.unavailable, c.standby_reads) == (2, 2, 1, 0)
        await send.aclose()
        nursery.cancel_scope.cancel()


async def test_standby_answers_what_no_owner_can():
    async with trio.open_nursery() as nursery:
        d, proxy, _, (_k0, k1, k2), send = await node(nursery, standby=True)
        proxy.down = True
        answer, proxied = await d.read_user(k1, incoming(), None)  # owner unreachable
        assert answer == Found(1, user(k1.decode()), 0)
        assert not proxied
        answer, proxied = await d.read_user(k2, incoming(), None)  # no owner
        assert answer == Found(2, user(k2.decode()), 0)
        assert not proxied
        answer, _ = await d.read_user(key_in(2, "nobody"), incoming(), None)
        assert answer == Missing(2)  # a true 404: the fence proves the copy complete
        c = d.router.counters
        assert (c.standby_reads, c.unavailable) == (3, 0)
        await send.aclose()
        nursery.cancel_scope.cancel()


async def test_writes_go_to_the_writer_the_owner_or_nowhere():
    async with trio.open_nursery() as nursery:
        d, _proxy, writes_recv, (k0, k1, k2), send = await node(nursery, standby=True)

        async def writer_stub() -> None:
            async for w in writes_recv:
                assert isinstance(w, Write)
                w.reply.send(Written(w.partition, 9, created=False))

        nursery.start_soon(writer_stub)
        value = user(k0.decode())
        assert await d.write_user(k0, value, None, incoming("PUT"), None) == (
            Written(0, 9, created=False), False)
        answer, proxied = await d.write_user(k1, value, None, incoming("PUT"), None)
        assert proxied
        assert isinstance(answer, PeerResponse)
        answer, proxied = await d.write_user(k2, value, None, incoming("PUT"), None)
        assert isinstance(answer, Unavailable)
        assert answer.reason == "no_owner"
        c = d.router.counters
        assert (c.writes, c.forwards, c.unavailable) == (1, 1, 1)
        await send.aclose()
        nursery.cancel_scope.cancel()
