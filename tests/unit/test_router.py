"""The router's fenced read of a held, revoked partition (no Kafka: the end offset is
a function the test controls; the integration tests ask a real broker)."""

from __future__ import annotations

from functools import partial

import trio
import trio.testing

from actors import router as router_mod
from actors import state
from actors.replies import ReplyBox
from actors.router import Local, Nowhere, Remote, RouterHandle
from kstate.core.messages import Assign, Batch, Bump, Record, Revoke, RoutingTable
from kstate.core.outcomes import Found, Missing, Unavailable
from kstate.core.records import EPOCH_HEADER, EPOCH_STRIDE, marker

URL = "127.0.0.1:1"


def user(email: str, name: str = "N") -> bytes:
    return f'{{"name":"{name}","email":"{email}"}}'.encode()


class Ends:
    """Kafka's end offset of partition 0 as the test sets it; counts the questions."""

    def __init__(self, end: int) -> None:
        self.end = end
        self.asked = 0
        self.fail: BaseException | None = None
        self.hang = False

    async def __call__(self, partition: int) -> int:
        assert partition == 0
        self.asked += 1
        if self.hang:
            await trio.sleep_forever()
        if self.fail is not None:
            raise self.fail
        return self.end


async def _held_node(nursery: trio.Nursery, ends: Ends | None):
    """A state owner that applied offsets 0..1 of partition 0 and was then revoked
    (a rebalance is under way); a router whose last table still names this node."""
    send, recv = trio.open_memory_channel(0)
    handle = await nursery.start(partial(state.run, inbox=recv, num_partitions=1))
    box: ReplyBox[dict] = ReplyBox()
    await send.send(Assign(1, frozenset({0}), {0: 2}, box))
    await box.wait()
    await send.send(Batch(1, {0: [Record(0, b"a@x", user("a@x", "old")),
                                  Record(1, b"a@x", user("a@x", "new"))]}, {0: 2}))
    with trio.fail_after(1):
        await handle.wait_caught_up(0)
    rbox: ReplyBox[None] = ReplyBox()
    await send.send(Revoke(2, frozenset({0}), rbox))
    await rbox.wait()
    writes_send, _ = trio.open_memory_channel(1)
    r = RouterHandle(URL, 1, handle, writes_send, 0.1, ends)
    r.table = RoutingTable(generation=1, owners={0: URL}, members={"m": URL})
    return send, r


async def test_held_partition_answers_reads_only_when_kafka_has_nothing_newer():
    ends = Ends(2)
    async with trio.open_nursery() as nursery:
        send, r = await _held_node(nursery, ends)
        assert not r._state.is_serving(0)
        # Writes never take this path: they wait for the next owner.
        assert isinstance(r.locate(b"a@x"), Nowhere)
        route = r.locate(b"a@x", read=True)
        assert route == Local(0)
        got = await r.read(0, b"a@x")
        assert got == Found(0, user("a@x", "new"), 1)
        assert await r.read(0, b"nobody@x") == Missing(0)  # a fenced 404 is a true one
        assert ends.asked == 2  # asked per read, after the read arrived
        assert r.counters.fenced_reads == 2
        # Someone wrote offset 2 (a new owner, or this node's last write): refuse.
        ends.end = 3
        refused = await r.read(0, b"a@x")
        assert isinstance(refused, Unavailable)
        assert refused.reason == "rebalancing"
        assert refused.retry_after > 0
        assert r.counters.fenced_reads == 2
        await send.aclose()


async def test_no_answer_without_proof(autojump_clock):
    ends = Ends(2)
    async with trio.open_nursery() as nursery:
        send, r = await _held_node(nursery, ends)
        ends.fail = RuntimeError("broker gone")
        assert isinstance(await r.read(0, b"a@x"), Unavailable)
        ends.fail = None
        ends.hang = True
        started = trio.current_time()
        assert isinstance(await r.read(0, b"a@x"), Unavailable)
        assert trio.current_time() - started >= router_mod.FENCE_TIMEOUT
        ends.hang = False
        # The next assignment drops the partition (it went elsewhere): nothing held.
        box: ReplyBox[dict] = ReplyBox()
        await send.send(Assign(3, frozenset(), {}, box))
        await box.wait()
        assert isinstance(r.locate(b"a@x", read=True), Nowhere)
        assert isinstance(await r.read(0, b"a@x"), Unavailable)
        assert r.counters.fenced_reads == 0
        await send.aclose()


async def test_without_a_fence_a_revoked_partition_refuses():
    async with trio.open_nursery() as nursery:
        send, r = await _held_node(nursery, None)
        assert isinstance(r.locate(b"a@x", read=True), Nowhere)
        assert isinstance(await r.read(0, b"a@x"), Unavailable)
        await send.aclose()


def _publish(r: RouterHandle, table: RoutingTable) -> None:
    """What router.run does with a new table."""
    r.table = table
    r.table_changed.set()
    r.table_changed = trio.Event()


async def test_settle_waits_for_a_table_that_is_behind(autojump_clock):
    ends = Ends(2)
    async with trio.open_nursery() as nursery:
        send, r = await _held_node(nursery, ends)
        other = "127.0.0.1:2"
        # A node without a table yet waits for its first one, then routes by it.
        r.table = RoutingTable.empty()
        started = trio.current_time()
        async with trio.open_nursery() as inner:
            async def later() -> None:
                await trio.sleep(0.5)
                _publish(r, RoutingTable(generation=4, owners={0: other}, members={}))
            inner.start_soon(later)
            route = await r.settle(b"a@x", read=True)
        assert trio.current_time() - started == 0.5
        assert route == Remote(0, other, 4)
        # A request forwarded by a node with a newer generation waits for ours to
        # catch up instead of going back by the old table...
        async with trio.open_nursery() as inner:
            async def newer() -> None:
                await trio.sleep(0.25)
                _publish(r, RoutingTable(generation=5, owners={0: URL}, members={}))
            inner.start_soon(newer)
            route = await r.settle(b"a@x", 1, read=True, peer_generation=5)
        assert route == Local(0)
        # ...but not forever: after TABLE_WAIT it routes by what it has.
        started = trio.current_time()
        route = await r.settle(b"a@x", 1, read=True, peer_generation=9)
        assert trio.current_time() - started == router_mod.TABLE_WAIT
        assert route == Local(0)
        # Same or older generation: no wait at all.
        started = trio.current_time()
        assert await r.settle(b"a@x", 1, peer_generation=5) == Nowhere(0, Unavailable(
            "rebalancing", "partition 0 is moving to a new owner", 1.0))
        assert trio.current_time() == started
        await send.aclose()


async def _superseded_node(nursery: trio.Nursery, ends: Ends, catchup_timeout: float):
    """A state owner that claimed partition 0 (generation 3) and applied a user record
    after its marker, then a marker of a higher epoch than its claim (a foreign one:
    a mirrored topic, a restored backup): the partition stays assigned and serving,
    but is no longer live. A router whose table names this node."""
    send, recv = trio.open_memory_channel(0)
    handle = await nursery.start(partial(state.run, inbox=recv, num_partitions=1))
    box: ReplyBox[dict] = ReplyBox()
    await send.send(Assign(1, frozenset({0}), {0: 0}, box, 3))
    await box.wait()
    claimed: ReplyBox[int | None] = ReplyBox()
    await send.send(Bump(0, claimed, claim=True))
    own = await claimed.wait()
    assert own is not None
    key, value, headers = marker(0, own)
    await send.send(Batch(1, {0: [Record(0, key, value, headers),
                                  Record(1, b"a@x", user("a@x", "kept"),
                                         ((EPOCH_HEADER, str(own).encode()),))]}, {0: 2}))
    with trio.fail_after(1):
        await handle.wait_writable(0)
    key, value, headers = marker(0, own + 5 * EPOCH_STRIDE)
    await send.send(Batch(1, {0: [Record(2, key, value, headers)]}, {0: 3}))
    await trio.testing.wait_all_tasks_blocked()
    assert handle.superseded() == [0]
    assert not handle.is_serving(0)
    writes_send, _ = trio.open_memory_channel(1)
    r = RouterHandle(URL, 1, handle, writes_send, catchup_timeout, ends)
    r.table = RoutingTable(generation=3, owners={0: URL}, members={"m": URL})
    return send, r


async def test_a_partition_taken_over_while_assigned_reads_through_the_fence_at_once(
        autojump_clock):
    # Its catch-up gate never opens again (it is not live), so a read that waited for
    # it answered 503 catching_up after catchup_timeout; the fenced read answers now,
    # and only with proof that nothing newer was written.
    ends = Ends(3)
    async with trio.open_nursery() as nursery:
        send, r = await _superseded_node(nursery, ends, catchup_timeout=5.0)
        assert r.locate(b"a@x", read=True) == Local(0)
        assert r.read_nowait(0, b"a@x") is None  # not from memory without the fence
        started = trio.current_time()
        assert await r.read(0, b"a@x") == Found(0, user("a@x", "kept"), 1)
        assert await r.read(0, b"nobody@x") == Missing(0)
        assert trio.current_time() == started
        assert (ends.asked, r.counters.fenced_reads, r.counters.local_reads) == (2, 2, 0)
        # The new owner wrote past what this node applied: no answer from it.
        ends.end = 4
        refused = await r.read(0, b"a@x")
        assert isinstance(refused, Unavailable)
        assert refused.reason == "rebalancing"
        assert trio.current_time() == started
        await send.aclose()
