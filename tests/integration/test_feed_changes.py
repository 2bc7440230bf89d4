"""Issue 6: the /changes websocket over real sockets, real nodes and a real broker.

Every check goes through tests/support/feed.py's FeedReader, which fails on any change
out of per-partition offset order, duplicated, or (live and resumed feeds) leaving a
gap; and every acknowledged write is matched by its ETag (partition, offset).
"""

from __future__ import annotations

import base64
import json
import re
from contextlib import AsyncExitStack

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from kstate.core.partitioner import partition_for
from kstate.core.records import (
    EPOCH_HEADER,
    EPOCH_STRIDE,
    MARKER_PREFIX,
    MAX_EPOCH,
    epoch_reach,
    marker_key,
)
from tests.support.feed import (
    Acked,
    FeedReader,
    by_offset,
    check_complete,
    check_matches,
    delete_user,
    feed_url,
    open_feed,
    put_user,
    verify_gaps,
)
from tools.procs import wait_stable
from tools.producers.run import java_produce

PARTITIONS = 10


async def test_feed_on_one_node_sees_every_write_from_the_others(make_node, client):
    a, b, c = make_node(), make_node(), make_node()
    await wait_stable(client, [a, b, c], PARTITIONS)
    shared = "shared@example.com"  # written through both B and C: the key filter's subject
    acked: list[Acked] = []

    async def write_via(base: str, tag: str) -> None:
        for i in range(40):
            acked.append(await put_user(client, base, f"{tag}-{i}@example.com", f"{tag} {i}"))
            if i % 5 == 0:
                acked.append(await put_user(client, base, shared, f"{tag} shared {i}"))
            if i % 7 == 3:
                acked.append(await delete_user(client, base, f"{tag}-{i - 1}@example.com"))

    async with open_feed(a.base) as everything, open_feed(a.base, key=shared) as one:
        one.contiguous = False  # a filtered feed skips the other keys' offsets
        assert everything.node == a.url
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_via, b.base, "b")
            nursery.start_soon(write_via, c.base, "c")
        want = by_offset(acked)
        await everything.read_until(lambda r: want <= r.seen())
        # every acked write exactly as written, and nothing else (no other writer exists)
        check_complete(everything, acked)
        await verify_gaps(a.bootstrap, a.topic, everything)
        assert {a_.partition for a_ in acked} == set(range(PARTITIONS)), "spread too thin"

        mine = [x for x in acked if x.key == shared]
        await one.read_until(lambda r: by_offset(mine) <= r.seen())
        assert [c_["key"] for c_ in one.changes] == [shared] * len(one.changes)
        check_complete(one, mine)
        offsets = [c_["offset"] for c_ in one.changes]
        assert offsets == sorted(offsets)  # one key lives in one partition: offset order

    # from=beginning, on yet another node: the compacted state, then live
    final: dict[str, object] = {}
    for x in sorted(acked, key=lambda x: (x.partition, x.offset)):
        final[x.key] = x.value
    ends = {p: max(x.offset for x in acked if x.partition == p) + 1 for p in range(PARTITIONS)}
    async with open_feed(c.base, **{"from": "beginning"}) as replay:
        replay.contiguous = False  # compaction may have removed superseded records
        assert all(replay.positions[p] <= ends[p] for p in range(PARTITIONS))
        await replay.read_until(
            lambda r: all(r.positions.get(p, 0) >= ends[p] for p in range(PARTITIONS)))
        state: dict[str, object] = {}
        for ch in replay.changes:
            state[ch["key"]] = ch["value"]
        assert state == final  # last value per key == what the acked writes left
        later = [await put_user(client, b.base, "late@example.com", "Late"),
                 await delete_user(client, a.base, shared)]
        await replay.read_until(lambda r: by_offset(later) <= r.seen())
        check_matches(replay, later)


async def test_feed_resume_after_disconnect_loses_and_duplicates_nothing(make_node, client):
    a, b = make_node(), make_node()
    await wait_stable(client, [a, b], PARTITIONS)
    acked: list[Acked] = []
    done = trio.Event()

    async def writer() -> None:
        for i in range(240):
            base = (a, b)[i % 2].base
            acked.append(await put_user(client, base, f"r{i % 60}@example.com", f"v{i}"))
            await trio.sleep(0.005)
        done.set()

    reader: FeedReader | None = None
    async with trio.open_nursery() as nursery:
        async with open_feed(a.base) as first:
            reader = first
            nursery.start_soon(writer)
            await first.read_until(lambda r: len(r.changes) >= 20)
        reconnects = 0
        while not done.is_set() or not by_offset(acked) <= reader.seen():
            await trio.sleep(0.2)  # offline while writes go on
            node = (b, a)[reconnects % 2]  # resume on the other node each time
            # the hello of a resumed feed must equal what the reader tracked (checked
            # inside read_hello); every change after it must be the very next offset
            async with open_feed(node.base, reader, **{"from": reader.from_param()}) as r:
                assert r.node == node.url
                reconnects += 1
                goal = len(r.changes) + 25
                with trio.move_on_after(3):
                    await r.read_until(lambda r_, goal=goal: len(r_.changes) >= goal
                                       or (done.is_set() and by_offset(acked) <= r_.seen()))
    assert reader is not None
    assert reconnects >= 3, "the writes ended before the test could reconnect"
    assert len(reader.seen()) == len(reader.changes)  # no duplicate (also checked per change)
    check_complete(reader, acked)
    await verify_gaps(a.bootstrap, a.topic, reader)
    print(f"\nresume: {len(acked)} acked writes, {len(reader.changes)} changes seen over "
          f"{reconnects} reconnects")


async def test_feed_rejects_a_malformed_request(make_node, client):
    a = make_node()
    await wait_stable(client, [a], PARTITIONS)
    for params in ({"from": "garbage"}, {"from": "1:x"}, {"key": "not-an-email"}):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(feed_url(a.base, **params), connect_timeout=10):
                pass
        assert rejected.value.status_code == 400, params


async def test_resumed_feeds_hand_over_to_the_shared_broadcaster(make_node, client):
    """A resumed feed replays with a Kafka reader of its own, then joins the node's
    shared broadcaster (its reader closed): it shows up in the broadcaster's subscriber
    count, and nothing is lost or sent twice across the switch, while writes go on."""
    a, b = make_node(), make_node()
    await wait_stable(client, [a, b], PARTITIONS)
    count = 12
    acked: list[Acked] = []
    async with open_feed(a.base) as first:
        for i in range(30):
            acked.append(await put_user(client, b.base, f"h{i}@example.com", f"before {i}"))
        await first.read_until(lambda r: by_offset(acked) <= r.seen())
    done = trio.Event()

    async def writer() -> None:
        for i in range(150):
            acked.append(await put_user(client, (a, b)[i % 2].base,
                                        f"h{i % 40}@example.com", f"during {i}"))
        done.set()

    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        readers: list[tuple[FeedReader, dict[int, int]]] = []
        for i in range(count):
            # each starts from a different point of what `first` saw, on node a
            start = {p: max(0, o - (i % 4)) for p, o in first.positions.items()}
            r = FeedReader(first.ws, positions=dict(start))
            await stack.enter_async_context(open_feed(a.base, r, **{"from": r.from_param()}))
            readers.append((r, start))
            if i == 0:
                nursery.start_soon(writer)
        with trio.fail_after(60):
            while True:
                stats = (await client.get(f"{a.base}/cluster")).json()["feed"]
                if stats["subscribers"] == count:
                    break
                for r, _ in readers:  # keep them reading meanwhile
                    with trio.move_on_after(0.05):
                        await r.next_change()
        await done.wait()
        for r, start in readers:
            want = [x for x in acked if x.offset >= start[x.partition]]
            await r.read_until(lambda r_, w=want: by_offset(w) <= r_.seen(), seconds=60)
            check_complete(r, want)
            assert len(r.seen()) == len(r.changes)
            await verify_gaps(a.bootstrap, a.topic, r)


async def test_a_live_feed_after_an_idle_spell_starts_at_the_end(make_node, client):
    # With no subscriber the node's feed reader sleeps (actors/feed.py); the next live
    # subscriber wakes it at the end of the log: its hello names the end offsets, it
    # gets every change after them and nothing written while nobody listened.
    a = make_node()
    await wait_stable(client, [a], PARTITIONS)
    async with open_feed(a.base) as first:
        acked = [await put_user(client, a.base, "first@example.com", "one")]
        await first.read_until(lambda r: by_offset(acked) <= r.seen())
    quiet = [await put_user(client, a.base, f"quiet{i}@example.com", "q") for i in range(30)]
    ends = {p: 0 for p in range(PARTITIONS)}
    for x in acked + quiet:
        ends[x.partition] = max(ends[x.partition], x.offset + 1)
    async with open_feed(a.base) as second:
        assert all(second.positions[p] >= ends[p] for p in range(PARTITIONS)), \
            (second.positions, ends)
        later = [await put_user(client, a.base, f"later{i}@example.com", "l") for i in range(10)]
        await second.read_until(lambda r: by_offset(later) <= r.seen())
        check_complete(second, later)
        assert not {c["key"] for c in second.changes} & {x.key for x in quiet}


async def test_resumed_feeds_abandoned_while_their_reader_starts_leave_nothing_open(
        make_node, client):
    # A resumed feed opens a Kafka reader; a client that goes away meanwhile cancels
    # the reader's start. Cancelled half way, aiokafka left a connection nobody closed
    # ("Unclosed AIOKafkaConnection", a traceback from its read task): the start now
    # finishes before the reader stops, so every connection it opened is closed.
    a = make_node()
    await wait_stable(client, [a], PARTITIONS)
    host, port = a.base.removeprefix("http://").split(":")
    upgrade = (f"GET /changes?from=0:-1 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
    for i in range(60):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(upgrade)
        await trio.sleep((i % 12) * 0.004)  # from before the 101 to well into the start
        await stream.aclose()
    async with open_feed(a.base) as live:  # the node still serves feeds
        acked = [await put_user(client, a.base, "after@example.com", "v")]
        await live.read_until(lambda r: by_offset(acked) <= r.seen())
    await trio.sleep(1)
    text = a.log_text()
    assert a.alive()
    assert "Unclosed" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


async def _rejected(base: str, **params: str) -> tuple[int, dict[str, object]]:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(feed_url(base, **params), connect_timeout=10):
            pass
    return rejected.value.status_code, json.loads(rejected.value.body or b"{}")


async def test_a_from_offset_past_the_end_is_refused_and_one_at_the_end_goes_live(
        make_node, client):
    """``from=0:1000`` where partition 0 ends far below: refused before the handshake
    (400 invalid_from naming the partition and its end), never accepted with a false
    hello. Regression: it was accepted, the reader was moved back to the partition's
    start by Kafka's out-of-range answer (the client got it all again), or, with the
    partition empty, every live change of it below 1001 was dropped for good. From the
    last offset (the end itself): accepted, and the next write of partition 0 arrives."""
    a = make_node()
    await wait_stable(client, [a], PARTITIONS)
    status, body = await _rejected(a.base, **{"from": "0:1000"})
    assert status == 400, body
    assert body["error"] == "invalid_from", body
    assert "partition 0" in str(body["message"]), body

    zero = [f"z{i}@example.com" for i in range(400)
            if partition_for(f"z{i}@example.com".encode(), PARTITIONS) == 0]
    last = await put_user(client, a.base, zero[0], "zero")
    assert last.partition == 0
    end = last.offset + 1
    status, body = await _rejected(a.base, **{"from": f"0:{end}"})  # "seen" the next one
    assert (status, body["error"]) == (400, "invalid_from"), body
    assert str(end) in str(body["message"]), body  # names the partition's end offset

    async with open_feed(a.base, **{"from": f"0:{end - 1}"}) as r:
        assert r.positions[0] == end
        later = [await put_user(client, a.base, zero[1], "zero again")]
        assert later[0].partition == 0
        await r.read_until(lambda r_: by_offset(later) <= r_.seen())
        check_complete(r, later)


def _markers_streamed(reader: FeedReader) -> list[dict[str, object]]:
    return [c for c in reader.changes if str(c["key"]).startswith(MARKER_PREFIX.decode())]


async def _foreign_markers(bootstrap: str, topic: str, partition: int,
                           epochs: list[int]) -> list[int]:
    """Owner-epoch markers of ``epochs`` in ``partition``, written by Kafka's Java client
    (a mirrored topic, a restored backup, another kstate group): their offsets."""
    script = [f"partition {partition}"]
    for epoch in epochs:
        key = base64.b64encode(marker_key(partition, epoch)).decode()
        script += [f"header {EPOCH_HEADER} {epoch}", f"rawkey {key} -"]
    return [s.offset for s in await java_produce(bootstrap, topic, script)]


async def test_owner_markers_are_never_streamed_however_high_the_epoch(
        make_node, client, kafka_bootstrap, names):
    # A foreign marker in the top block that one claim reaches from no known epoch
    # (records.epoch_reach(-1) = 2**51 - 1) takes a partition over; its owner claims it
    # again above that, with a marker past what a reader that does not know the epoch
    # can tell from a malformed one. So are the owner's markers after it, and so is a
    # marker past the owner's own reach (2**63 - 1), which every node takes for a
    # malformed record. None of them is a user's change: no feed streams one, live,
    # resumed from an offset after the first marker, or replayed from the beginning;
    # and each streams every write the owner acknowledged.
    a = make_node()
    await wait_stable(client, [a], PARTITIONS)
    email = "epochs@example.com"
    p = partition_for(email.encode(), PARTITIONS)
    acked = [await put_user(client, a.base, email, "v1")]
    high = epoch_reach(-1) - EPOCH_STRIDE + 1
    (after_high,) = await _foreign_markers(kafka_bootstrap, names["topic"], p, [high])
    acked.append(await put_user(client, a.base, email, "v2"))  # claimed over it
    own = (await client.get(f"{a.base}/readyz")).json()["partitions"][str(p)]["own_epoch"]
    assert own > epoch_reach(-1), own

    async with open_feed(a.base) as live:
        await _foreign_markers(kafka_bootstrap, names["topic"], p,
                               [own + EPOCH_STRIDE, MAX_EPOCH])
        acked.append(await put_user(client, a.base, email, "v3"))  # claimed over again
        await live.read_until(lambda r: (p, acked[-1].offset) in r.seen())
    async with open_feed(a.base, **{"from": f"{p}:{after_high}"}) as resumed:
        await resumed.read_until(lambda r: (p, acked[-1].offset) in r.seen())
    async with open_feed(a.base, **{"from": "beginning"}) as replay:
        await replay.read_until(lambda r: r.positions.get(p, 0) > acked[-1].offset)

    for reader, writes in ((live, acked[2:]), (resumed, acked[1:]), (replay, acked)):
        assert _markers_streamed(reader) == [], reader.changes
        check_complete(reader, writes)
    # every offset a feed skipped holds a marker
    await verify_gaps(kafka_bootstrap, names["topic"], live, resumed, replay)


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found[1])


async def test_a_resumed_feed_hands_over_past_another_producers_transactions(
        make_node, client):
    """Another producer's transactions (Kafka's Java client): one committed in partition
    0, one aborted in partition 1, each partition ending with the transaction's marker
    (a control batch: an offset no reader is handed a record of). A feed resumed from
    the beginning replays them and hands over to the broadcaster, its reader closed
    (``kstate_feed_resumed_readers`` 0). Regression: the replay counted a partition as
    read up to the broadcaster's position only by the records it was handed, so it
    never reached a position past a marker, tried to hand over every few seconds for
    ever, and kept its reader and its ``feed_max_resumed`` slot."""
    a = make_node()
    await wait_stable(client, [a], PARTITIONS)
    mails = {p: next(m for i in range(1000)
                     if partition_for((m := f"tx{i}@example.com").encode(), PARTITIONS) == p)
             for p in (0, 1)}
    await java_produce(a.bootstrap, a.topic,
                       ["begin", f"put {mails[0]} Committed", "commit",
                        "begin", f"put {mails[1]} Aborted", "abort"],
                       transactional_id=f"tx-{a.topic}")
    async with open_feed(a.base, **{"from": "beginning"}) as r:
        await r.read_until(lambda r_: any(c["key"] == mails[0] for c in r_.changes))
        with trio.fail_after(30):
            while _metric((await client.get(f"{a.base}/metrics")).text,
                          "kstate_feed_resumed_readers") != 0:
                await trio.sleep(0.2)
        # handed over: the broadcaster's changes come on, nothing of the aborted one
        acked = [await put_user(client, a.base, mails[1], "after")]
        await r.read_until(lambda r_: by_offset(acked) <= r_.seen())
        assert [c["value"] for c in r.changes if c["key"] == mails[1]] == [
            {"name": "after", "email": mails[1]}]
