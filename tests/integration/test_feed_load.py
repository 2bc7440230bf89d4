"""Issue 6: the feed under pressure: a subscriber that stops reading is cut off (4001)
while a fast one keeps everything; a killed node does not break the feeds of the
others; hundreds of idle subscribers, and what each costs the node in memory."""

from __future__ import annotations

import signal
from contextlib import AsyncExitStack
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.support.feed import (
    Acked,
    FeedReader,
    by_offset,
    check_complete,
    check_matches,
    feed_url,
    open_feed,
    put_user,
    verify_gaps,
)
from tools.procs import Node, wait_stable
from tools.topic import produce, users

PARTITIONS = 10
LAGGING_CLOSE = 4001
QUEUE = 1024  # kstate/node.py FEED_BUFFER: changes queued per live subscriber


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def feed_stats(client, node: Node) -> dict:
    r = await client.get(f"{node.base}/cluster")
    assert r.status_code == 200, r.text
    return r.json()["feed"]


async def test_slow_subscriber_is_cut_off_while_a_fast_one_keeps_up(make_node, client):
    node = make_node()
    await wait_stable(client, [node], PARTITIONS)
    big = "x" * 16_000  # large changes: TCP buffers absorb fewer of them
    acked: list[Acked] = []

    async with AsyncExitStack() as stack:
        fast = await stack.enter_async_context(open_feed(node.base))
        # trio-websocket's reader stops taking from the socket once its 1-message queue
        # is full, so a connection we never read from really stops reading
        slow_ws = await stack.enter_async_context(open_websocket_url(
            feed_url(node.base), connect_timeout=10, message_queue_size=1))
        slow = FeedReader(slow_ws)
        await slow.read_hello()
        assert (await feed_stats(client, node))["subscribers"] == 2

        n = 0
        # write until the node reports the slow subscriber dropped (then a little more);
        # bounded: the queue plus generous room for TCP buffers. The fast subscriber
        # reads every change of a round before the next round is written: it keeps up
        # whatever the machine's speed (a reader in this process that reads as fast as it
        # can fell behind nodes that acknowledge thousands of writes a second, and was
        # cut off as lagging too)
        with trio.fail_after(240):
            while (await feed_stats(client, node))["dropped_subscribers"] == 0:
                assert n < 12 * QUEUE, "slow subscriber never cut off"
                async with trio.open_nursery() as writers:
                    for _ in range(8):
                        i, n = n, n + 1
                        async def one(i: int = i) -> None:
                            acked.append(await put_user(
                                client, node.base, f"s{i % 500}@example.com", f"{i} {big}"))
                        writers.start_soon(one)
                round_acked = by_offset(acked)
                await fast.read_until(lambda r, want=round_acked: want <= r.seen(), seconds=60)
        for i in range(20):
            acked.append(await put_user(client, node.base, f"after{i}@example.com", "A"))
        want = by_offset(acked)
        await fast.read_until(lambda r: want <= r.seen(), seconds=60)
        stats = await feed_stats(client, node)
        assert stats["dropped_subscribers"] == 1  # the slow one, never the fast one
        assert stats["subscribers"] == 1  # the fast one is still subscribed
        check_complete(fast, acked)
        await verify_gaps(node.bootstrap, node.topic, fast)

        # the slow one reads again: a gap-free prefix, then close code 4001
        with trio.fail_after(60):
            try:
                while True:
                    await slow.next_change()
            except ConnectionClosed as exc:
                closed = exc.reason
        assert closed.code == LAGGING_CLOSE, closed
        assert "lagging" in (closed.reason or "")
        got = len(slow.changes)
        assert 0 < got < len(acked), (got, len(acked))  # a prefix (its queue), not all
        # and resumes from its offsets: the rest, nothing lost, nothing twice
        async with open_feed(node.base, slow, **{"from": slow.from_param()}):
            await slow.read_until(lambda r: want <= r.seen(), seconds=60)
        check_complete(slow, acked)
        await verify_gaps(node.bootstrap, node.topic, slow)
        print(f"\nslow subscriber: cut off after {got} of {len(acked)} changes "
              f"({len(big) // 1000} kB each), resumed the remaining {len(acked) - got}")


async def test_killing_a_node_does_not_break_feeds_on_the_others(make_node, client):
    a, b, c = make_node(), make_node(), make_node()
    await wait_stable(client, [a, b, c], PARTITIONS)
    acked: list[Acked] = []

    async def write(i: int) -> None:
        base = (a, b)[i % 2].base
        acked.append(await put_user(client, base, f"k{i}@example.com", f"n{i}",
                                    attempts=200))

    async with open_feed(a.base) as on_a, open_feed(b.base) as on_b:
        async def follow(r: FeedReader) -> None:
            while True:
                await r.next_change()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, on_a)
            nursery.start_soon(follow, on_b)
            for i in range(30):
                await write(i)
            c.signal(signal.SIGKILL)
            await c.wait_exit()
            # /cluster still lists the dead member (until the group notices): unreachable,
            # and the answer is a 200 with every other member's report
            r = await client.get(f"{a.base}/cluster")
            assert r.status_code == 200, r.text
            doc = r.json()
            status = {m["url"]: m["status"] for m in doc["members"]}
            assert status[c.url] == "unreachable", doc["members"]
            assert status[a.url] in ("ready", "not_ready")  # answered (the group may be
            assert status[b.url] in ("ready", "not_ready")  # rebalancing by now)
            assert set(doc["owners"].values()) <= {a.url, b.url, c.url}
            assert len(doc["owners"]) == PARTITIONS
            for i in range(30, 90):  # 503s while the group notices are retried
                await write(i)
            await wait_stable(client, [a, b], PARTITIONS)
            for i in range(90, 120):
                await write(i)
            nursery.cancel_scope.cancel()
        want = by_offset(acked)
        for r in (on_a, on_b):
            await r.read_until(lambda r_: want <= r_.seen())
            check_complete(r, acked)
            await verify_gaps(a.bootstrap, a.topic, r)
        # both connections are still open and still live
        late = await put_user(client, a.base, "late@example.com", "late")
        for r in (on_a, on_b):
            await r.read_until(lambda r_: (late.partition, late.offset) in r_.seen())
            check_matches(r, [*acked, late])


async def test_hundreds_of_idle_subscribers_cost_little(make_node, client):
    count = 300
    node = make_node()
    await wait_stable(client, [node], PARTITIONS)
    assert node.proc is not None
    pid = node.proc.pid
    for _ in range(3):  # warm the websocket path up so its imports are not counted
        async with open_feed(node.base):
            pass
    await trio.sleep(0.5)
    before = rss_kib(pid)
    async with AsyncExitStack() as stack:
        readers = [await stack.enter_async_context(open_feed(node.base))
                   for _ in range(count)]
        await trio.sleep(1.0)
        assert (await feed_stats(client, node))["subscribers"] == count
        during = rss_kib(pid)
        # they are live, not just open: one write reaches every one of them
        one = await put_user(client, node.base, "ping@example.com", "ping")
        with trio.fail_after(30):
            for r in readers:
                await r.read_until(lambda r_: (one.partition, one.offset) in r_.seen())
    with trio.fail_after(15):
        while True:  # every subscription ends when its client leaves
            if (await feed_stats(client, node))["subscribers"] == 0:
                break
            await trio.sleep(0.1)
    after = rss_kib(pid)
    per = (during - before) / count
    print(f"\nidle subscribers: {count}; node RSS {before} KiB before, {during} KiB with "
          f"them, {after} KiB after they left: {per:.1f} KiB per idle subscriber")
    assert per < 1024, f"{per:.0f} KiB per idle subscriber"  # sanity bound, not a target


async def test_a_burst_does_not_cut_off_a_fast_subscriber(make_node, client, kafka_bootstrap,
                                                          names):
    """Thousands of records land at once (a bulk load, a busy cluster): the feed's reader
    fetches them in big batches, yet a subscriber that reads as fast as it can must get
    them all, never be cut off as lagging."""
    n = 5 * QUEUE
    node = make_node()
    await wait_stable(client, [node], PARTITIONS)
    async with open_feed(node.base) as fast:
        async with trio.open_nursery() as nursery:
            async def follow() -> None:
                while True:
                    await fast.next_change()

            nursery.start_soon(follow)
            loaded = await produce(kafka_bootstrap, names["topic"], users(n, prefix="burst"))
            assert loaded.records == n
            nursery.cancel_scope.cancel()
        await fast.read_until(lambda r: len(r.changes) >= n, seconds=60)
        assert (await feed_stats(client, node))["dropped_subscribers"] == 0
        assert {c["key"] for c in fast.changes} == {f"burst{i}@example.com" for i in range(n)}
    print(f"\nburst: {n} records produced in {loaded.seconds:.2f}s, all {n} delivered live")
