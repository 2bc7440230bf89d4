"""A batch the node cannot decode stops its partition, never the node: a node whose Python
has no snappy (tests/support/nocodecs hides cramjam, so aiokafka raises
UnsupportedCodecError) reads a topic where Kafka's Java client wrote a snappy batch into
one partition and plain records into the others. That partition answers 503
partition_undecodable, /readyz and /metrics name it, the others answer 200, the standby
copy and the feeds go on; restarted with its codecs, the node serves everything."""

from __future__ import annotations

import time
import uuid

import httpx
import orjson
import trio
from trio_websocket import open_websocket_url

from tests.support.owners import emails_in
from tools.procs import REPO, Node, wait_ready
from tools.producers.run import java_produce

PARTITIONS = 3
BAD = 1  # the partition with the snappy batch
NOCODECS = str(REPO / "tests" / "support" / "nocodecs")


def keys_of(partition: int, tag: str, n: int) -> list[str]:
    return emails_in(partition, PARTITIONS, n, tag)


def puts(partition: int, emails: list[str]) -> list[str]:
    return [f"partition {partition}", *(f"put {e} Name {e}" for e in emails)]


def user(email: str) -> bytes:
    return orjson.dumps({"name": f"Name {email}", "email": email})


async def wait_halted(client: httpx.AsyncClient, node: Node, within: float = 60.0) -> dict:
    """/readyz once it names the halted partition and every other one is caught up."""
    deadline = time.monotonic() + within
    doc: dict = {}
    while time.monotonic() < deadline:
        assert node.alive(), node.log_text()[-3000:]
        try:
            r = await client.get(f"{node.base}/readyz")
            doc = r.json()
            parts = doc.get("partitions", {})
            if str(BAD) in doc.get("halted", {}) and all(
                    parts.get(str(p), {}).get("caught_up") for p in range(PARTITIONS)
                    if p != BAD):
                assert r.status_code == 503, doc
                return doc
        except httpx.HTTPError:
            pass
        await trio.sleep(0.1)
    raise AssertionError(f"partition {BAD} never reported halted: {doc}\n"
                         + node.log_text()[-3000:])


async def test_an_undecodable_batch_stops_its_partition_not_the_node(
        make_node, client, kafka_bootstrap, names):
    topic = names["topic"]
    good = {p: keys_of(p, f"g{p}-", 4) for p in range(PARTITIONS)}
    snappy = keys_of(BAD, "snappy-", 3)
    after = keys_of(BAD, "after-", 1)
    await java_produce(kafka_bootstrap, topic,
                       [line for p in range(PARTITIONS) for line in puts(p, good[p])],
                       create_partitions=PARTITIONS)
    sent = await java_produce(kafka_bootstrap, topic, puts(BAD, snappy), codec="snappy")
    bad_offset = min(s.offset for s in sent)
    await java_produce(kafka_bootstrap, topic, puts(BAD, after))

    node = make_node(PYTHONPATH=NOCODECS, KSTATE_STANDBY="true")
    doc = await wait_halted(client, node)
    assert doc["ready"] is False
    why = doc["halted"][str(BAD)]
    assert f"offset {bad_offset}" in why, why
    assert "UnsupportedCodecError" in why, why
    assert "snappy" in why, why
    assert doc["partitions"][str(BAD)]["position"] == bad_offset  # what precedes: applied
    assert doc["standby"]["halted"] == {str(BAD): why}

    # reads and writes of the halted partition: 503 with the code, offset and reason
    for email in [*good[BAD], *snappy, *after]:
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 503, (email, r.status_code, r.text)
        assert r.json()["error"] == "partition_undecodable"
        assert f"offset {bad_offset}" in r.json()["message"]
        assert int(r.headers["retry-after"]) >= 1
    r = await client.put(f"{node.base}/users/{good[BAD][0]}", json={"name": "New"})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "partition_undecodable"
    r = await client.delete(f"{node.base}/users/{good[BAD][0]}")
    assert r.status_code == 503, r.text
    # the other partitions are served, reads and writes
    for p in range(PARTITIONS):
        if p == BAD:
            continue
        for email in good[p]:
            r = await client.get(f"{node.base}/users/{email}")
            assert r.status_code == 200, (email, r.text)
            assert r.content == user(email)
        r = await client.put(f"{node.base}/users/{good[p][0]}", json={"name": f"Name {good[p][0]}"})
        assert r.status_code == 200, r.text

    # the feed: a subscriber from the beginning sees every change up to the bad batch
    # and a notice for the halted partition; a live subscriber gets the notice when the
    # feed's own reader meets a snappy batch, and goes on with the other partitions
    base = node.base.replace("http://", "ws://")
    async with open_websocket_url(f"{base}/changes?from=beginning") as ws, \
            open_websocket_url(f"{base}/changes") as live:
        assert orjson.loads(await ws.get_message())["type"] == "hello"
        assert orjson.loads(await live.get_message())["type"] == "hello"
        more = keys_of(BAD, f"more-{uuid.uuid4().hex[:6]}-", 2)
        await java_produce(kafka_bootstrap, topic, puts(BAD, more), codec="snappy")
        other = next(p for p in range(PARTITIONS) if p != BAD)
        late = keys_of(other, "late-", 1)
        await java_produce(kafka_bootstrap, topic, puts(other, late))
        seen: list[dict] = []
        with trio.fail_after(30):
            while not any(m.get("type") == "halted" for m in seen) or \
                    not any(m.get("key") == late[0] for m in seen):
                seen.append(orjson.loads(await ws.get_message()))
        notice = next(m for m in seen if m.get("type") == "halted")
        assert notice["partition"] == BAD
        assert notice["offset"] == bad_offset
        changed = {m["key"] for m in seen if "key" in m}
        assert set(good[BAD]) <= changed  # before the bad batch
        assert not changed & {*snappy, *after, *more}  # at and past it: nothing
        live_seen: list[dict] = []
        with trio.fail_after(30):
            while not any(m.get("type") == "halted" for m in live_seen) or \
                    not any(m.get("key") == late[0] for m in live_seen):
                live_seen.append(orjson.loads(await live.get_message()))
        assert not {m.get("key") for m in live_seen} & set(more)

    metrics = (await client.get(f"{node.base}/metrics")).text
    assert f'kstate_partition_halted{{partition="{BAD}"}} 1.0' in metrics
    assert "kstate_partitions_halted 1.0" in metrics
    assert "kstate_feed_halted_partitions 1.0" in metrics
    log = node.log_text()
    assert f"event=partition_halted partition={BAD} offset={bad_offset}" in log
    assert "event=feed_partition_halted" in log
    assert node.alive()

    # with its codecs (no shim), the restarted node serves everything
    node.stop_now()
    node.extra.pop("PYTHONPATH")
    node.start()
    ready = await wait_ready(client, node, timeout=60)
    assert ready["halted"] == {}
    for email in [*good[BAD], *snappy, *after, *more, *late]:
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 200, (email, r.text)
        assert r.content == user(email)
