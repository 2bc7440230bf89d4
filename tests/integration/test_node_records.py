"""Records in the topic that are not users (written by someone else): the node counts
them, logs once per partition, never crashes, and serves the good records around them.
Both at startup (replay) and while running (live). By the one rule
(kstate/core/records.py) such a record deletes its key; a 0-byte value is a plain
delete, not counted.

Kafka refuses a record without a key on a compacted topic, so these tests use a
topic someone else created with ``cleanup.policy=delete``: the node uses an
existing topic as it is, and must cope with whatever is in it."""

from __future__ import annotations

import re

import orjson
import pytest
import trio

from kstate.core.partitioner import partition_for
from tools import topic as load
from tools.procs import Node, wait_ready

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)

DELETE = {"cleanup.policy": "delete"}


def bad_records(tag: str) -> list[load.RawRecord]:
    """One of each kind of bad record, each in the partition its key hashes to."""
    k = [f"bad-{tag}-{i}@example.com" for i in range(7)]
    # (k[5] was an empty value: a delete since the seed app writes its deletes so)
    return [
        load.keyed(k[0].encode(), b"this is not json"),
        load.keyed(k[1].encode(), orjson.dumps([{"name": "A", "email": k[1]}])),  # array
        load.keyed(k[2].encode(), orjson.dumps({"name": "No Email"})),  # missing email
        load.keyed(k[3].encode(), orjson.dumps({"name": "X", "email": "other@example.com"})),
        load.keyed(None, load.user_bytes(k[4], "No Key"), partition=3),  # no key at all
        load.keyed(k[6].encode(), orjson.dumps({"name": 7, "email": k[6]})),  # name not str
    ]


def good_records(tag: str, n: int) -> list[load.RawRecord]:
    return list(load.users(n, prefix=f"good-{tag}-"))


async def check_good(client, node: Node, tag: str, n: int) -> None:
    for i in range(n):
        email = load.email_of(i, f"good-{tag}-")
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 200, (email, r.status_code, r.text)
        assert r.content == load.user_bytes(email, f"Name {i}")


async def check_bad_absent(client, node: Node, records: list[load.RawRecord]) -> None:
    for _, key, _ in records:
        if key is not None:
            r = await client.get(f"{node.base}/users/{key.decode()}")
            assert r.status_code == 404, (key, r.status_code, r.text)


async def wait_positions(client, node: Node, records: list[load.RawRecord],
                         offsets: list[int], within: float = 20.0) -> dict:
    """Wait until the node's /readyz shows every partition past the given records
    (produced by someone else: no read-your-writes for those); return /readyz."""
    need: dict[str, int] = {}
    for (p, _, _), off in zip(records, offsets, strict=True):
        need[str(p)] = max(need.get(str(p), 0), off + 1)
    with trio.fail_after(within):
        while True:
            doc = (await client.get(f"{node.base}/readyz")).json()
            if all(doc["partitions"][p]["position"] >= o for p, o in need.items()):
                return doc
            await trio.sleep(0.05)


def invalid_log_partitions(node: Node) -> list[int]:
    return [int(m) for m in re.findall(
        r"event=record_not_applied partition=(\d+) offset=\d+ kind=unusable", node.log_text())]


async def test_bad_records_are_skipped_counted_and_logged_once(make_node, client,
                                                               kafka_bootstrap, names):
    topic = names["topic"]
    before_bad = bad_records("pre")
    # good records before, between and after the bad ones, in every partition
    await load.produce(kafka_bootstrap, topic, good_records("a", 40), create_configs=DELETE)
    await load.produce(kafka_bootstrap, topic, before_bad)
    await load.produce(kafka_bootstrap, topic, good_records("b", 40))

    node = make_node()
    ready = await wait_ready(client, node, timeout=60)
    assert ready["invalid_records"] == len(before_bad)
    per_partition: dict[int, int] = {}
    for p, _, _ in before_bad:
        per_partition[p] = per_partition.get(p, 0) + 1
    for p, stats in ready["partitions"].items():
        assert stats["invalid"] == per_partition.get(int(p), 0), (p, stats)
        assert stats["caught_up"]
        assert stats["lag"] == 0
    await check_good(client, node, "a", 40)
    await check_good(client, node, "b", 40)
    await check_bad_absent(client, node, before_bad)

    # while running: more bad records, then good ones after them
    live_bad = bad_records("live")
    live_good = good_records("c", 40)
    res = await load.produce(kafka_bootstrap, topic, live_bad + live_good)
    ready = await wait_positions(client, node, live_bad + live_good, res.offsets)
    assert ready["invalid_records"] == len(before_bad) + len(live_bad)
    await check_good(client, node, "c", 40)
    await check_bad_absent(client, node, live_bad)
    assert node.alive()

    # a PUT through the node to a key that has a bad record replaces it normally
    key = live_bad[0][1]
    assert key is not None
    email = key.decode()
    r = await client.put(f"{node.base}/users/{email}", json={"name": "Fixed"})
    assert r.status_code == 201, r.text  # the bad record never counted as a user
    r = await client.get(f"{node.base}/users/{email}")
    assert r.content == load.user_bytes(email, "Fixed")

    # logged once per partition (the first bad record of each), not once per record
    logged = invalid_log_partitions(node)
    assert sorted(logged) == sorted(set(logged))
    assert set(logged) == {p for p, _, _ in before_bad + live_bad}


async def test_bad_records_do_not_stop_a_restarted_node(make_node, client, kafka_bootstrap,
                                                        names):
    topic = names["topic"]
    bad = bad_records("r")
    await load.produce(kafka_bootstrap, topic, bad + good_records("r", 30),
                       create_configs=DELETE)
    node = make_node()
    ready = await wait_ready(client, node, timeout=60)
    assert ready["invalid_records"] == len(bad)
    node.kill()
    node.start()
    ready = await wait_ready(client, node, timeout=60)
    # counted again from the replay, not accumulated across processes
    assert ready["invalid_records"] == len(bad)
    await check_good(client, node, "r", 30)
    k = bad[0][1]
    assert k is not None
    assert partition_for(k, 10) == bad[0][0]
