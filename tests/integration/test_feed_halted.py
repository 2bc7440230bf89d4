"""A resumed /changes subscriber whose own Kafka reader stops a partition at a batch it
cannot decode, against a real broker: a node whose Python has no snappy
(tests/support/nocodecs) and a topic where a snappy batch sits in one partition. The
live feed, woken after that batch, never meets it, so its position in that partition is
past the one where the subscriber's reader stopped: the subscriber can never reach it
there. It must still hand over to the live feed (its Kafka reader closed, its
``feed_max_resumed`` slot given back) and keep its word: after the halted notice no
change of that partition follows, while the other partitions go on live. And one resumed
past the batch where the live feed halted is told so once it hands over."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import trio
from aiokafka import AIOKafkaProducer
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.support.owners import emails_in
from tools.procs import REPO, Node, wait_ready

PARTITIONS = 3
BAD = 1
NOCODECS = str(REPO / "tests" / "support" / "nocodecs")


def user(email: str, name: str) -> bytes:
    return orjson.dumps({"name": name, "email": email})


def produce(bootstrap: str, topic: str, partition: int, emails: list[str],
            codec: str | None) -> list[int]:
    """Users written to ``partition`` by a producer that is not kstate (``codec``: its
    compression); their offsets."""

    async def send() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec,
                                    linger_ms=50)
        await producer.start()
        try:
            futures = [await producer.send(topic, user(e, "Other"), key=e.encode(),
                                           partition=partition) for e in emails]
            return [(await f).offset for f in futures]
        finally:
            await producer.stop()

    return asyncio.run(send())


async def resumed_readers(client: httpx.AsyncClient, node: Node) -> float:
    text = (await client.get(f"{node.base}/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("kstate_feed_resumed_readers "))
    return float(line.split()[1])


async def until_key(ws: WebSocketConnection, key: str, seen: list[dict]) -> None:
    while not any(m.get("key") == key for m in seen):
        seen.append(orjson.loads(await ws.get_message()))


async def test_a_resumed_subscriber_whose_reader_halts_a_partition_hands_over(
        make_node, client, kafka_bootstrap, names):
    topic = names["topic"]
    node = make_node(PYTHONPATH=NOCODECS, KSTATE_PARTITIONS=str(PARTITIONS),
                     KSTATE_FEED_MAX_RESUMED="1")
    await wait_ready(client, node, timeout=60)
    good = emails_in(BAD, PARTITIONS, 2, "good-")
    for email in good:
        r = await client.put(f"{node.base}/users/{email}", json={"name": "A", "email": email})
        assert r.status_code in (200, 201), r.text
    snappy = emails_in(BAD, PARTITIONS, 2, "snappy-")
    bad_offset = min(await trio.to_thread.run_sync(
        produce, kafka_bootstrap, topic, BAD, snappy, "snappy"))

    base = node.base.replace("http://", "ws://")
    other = next(p for p in range(PARTITIONS) if p != BAD)
    async with open_websocket_url(f"{base}/changes") as live:
        # the live feed is awake at the log's end, past the snappy batch
        assert orjson.loads(await live.get_message())["type"] == "hello"
        async with open_websocket_url(f"{base}/changes?from=beginning") as ws:
            assert orjson.loads(await ws.get_message())["type"] == "hello"
            seen: list[dict] = []
            with trio.fail_after(30):
                while not any(m.get("type") == "halted" for m in seen):
                    seen.append(orjson.loads(await ws.get_message()))
            notice = next(m for m in seen if m.get("type") == "halted")
            assert (notice["partition"], notice["offset"]) == (BAD, bad_offset)
            # its reader can go no further in BAD: it hands over, its slot given back
            with trio.fail_after(60):
                while await resumed_readers(client, node) != 0:
                    await trio.sleep(0.2)

            # records of BAD past the snappy batch (plain ones: the live feed streams
            # them), then a change of another partition: the resumed subscriber gets the
            # latter and nothing of BAD at or past its halt, as its notice said
            after = emails_in(BAD, PARTITIONS, 2, "after-")
            await trio.to_thread.run_sync(produce, kafka_bootstrap, topic, BAD, after, None)
            late = emails_in(other, PARTITIONS, 1, "late-")[0]
            r = await client.put(f"{node.base}/users/{late}", json={"name": "L", "email": late})
            assert r.status_code in (200, 201), r.text
            live_seen: list[dict] = []
            with trio.fail_after(30):
                await until_key(live, after[-1], live_seen)
                await until_key(ws, late, seen)
            keys = [m.get("key") for m in seen]
            assert set(good) <= set(keys)
            assert not set(keys) & {*snappy, *after}, seen
            assert [m for m in seen if m.get("type") == "halted"] == [notice]
            assert all(m["offset"] < bad_offset for m in seen
                       if m.get("partition") == BAD and "key" in m)

            # and the slot it gave back is another resumed subscriber's
            async with open_websocket_url(f"{base}/changes?from={other}:-1") as again:
                assert orjson.loads(await again.get_message())["type"] == "hello"
    assert node.alive(), node.log_text()[-3000:]


async def test_a_subscriber_resumed_past_where_the_live_feed_halted_is_told(
        make_node, client, kafka_bootstrap, names):
    """The other way round: the live feed meets the snappy batch and halts there; a
    client that read the partition past it (on a node that can decode it) resumes here.
    Its own reader starts past the batch and hands over ahead of the live feed, which
    sends nothing of that partition again: the client is told so, at the first offset it
    has not seen."""
    topic = names["topic"]
    node = make_node(PYTHONPATH=NOCODECS, KSTATE_PARTITIONS=str(PARTITIONS))
    await wait_ready(client, node, timeout=60)
    base = node.base.replace("http://", "ws://")
    async with open_websocket_url(f"{base}/changes") as live:
        assert orjson.loads(await live.get_message())["type"] == "hello"
        snappy = emails_in(BAD, PARTITIONS, 2, "snappy-")
        bad_offset = min(await trio.to_thread.run_sync(
            produce, kafka_bootstrap, topic, BAD, snappy, "snappy"))
        with trio.fail_after(30):
            while (notice := orjson.loads(await live.get_message())).get("type") != "halted":
                pass
        assert (notice["partition"], notice["offset"]) == (BAD, bad_offset)
    after = emails_in(BAD, PARTITIONS, 2, "after-")
    offsets = await trio.to_thread.run_sync(produce, kafka_bootstrap, topic, BAD, after, None)
    seen_up_to = offsets[0]  # the client saw the first of them elsewhere
    async with open_websocket_url(f"{base}/changes?from={BAD}:{seen_up_to}") as ws:
        assert orjson.loads(await ws.get_message())["type"] == "hello"
        seen: list[dict] = []
        with trio.fail_after(30):
            while not any(m.get("type") == "halted" for m in seen):
                seen.append(orjson.loads(await ws.get_message()))
        assert [m.get("key") for m in seen if "key" in m] == [after[1]]
        assert seen[-1] == {"type": "halted", "partition": BAD, "offset": offsets[1] + 1,
                            "reason": notice["reason"]}
        assert await resumed_readers(client, node) == 0  # handed over
    assert node.alive(), node.log_text()[-3000:]
