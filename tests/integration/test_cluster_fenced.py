"""Reads during a rebalance: a node answers a partition it holds but no longer serves
only when Kafka proves nothing newer was written (the fence in RouterHandle.read).

A long rebalance is made on purpose: member B is frozen (SIGSTOP) with a long session
timeout, then member C joins. The coordinator waits for B until B's session expires,
and all that time A has revoked every partition and holds their data.
"""

from __future__ import annotations

import signal
import time

import httpx
import trio

from kstate.core.partitioner import partition_for
from tools import topic as load
from tools.procs import Node, wait_ready, wait_stable

PARTITIONS = 10
B_SESSION_MS = 15_000  # B is frozen this long, at most, before the group gives up on it


async def _readyz(client: httpx.AsyncClient, node: Node) -> dict:
    r = await client.get(f"{node.base}/readyz", timeout=2)
    return r.json()


async def _revoked(client: httpx.AsyncClient, node: Node) -> bool:
    """Whether ``node`` is in a rebalance: it holds partitions and serves none."""
    parts = (await _readyz(client, node))["partitions"]
    return bool(parts) and not any(p["serving"] for p in parts.values())


async def test_held_partitions_answer_during_a_rebalance_until_kafka_has_newer(
        make_node, client, kafka_bootstrap, names):
    a = make_node()
    await wait_ready(client, a)  # A creates the topic
    b = make_node(KSTATE_SESSION_TIMEOUT_MS=str(B_SESSION_MS))
    table = await wait_stable(client, [a, b], PARTITIONS)
    mine = {int(k.rpartition("-")[2]) for k, url in table.items() if url == a.url}
    keys: dict[int, str] = {}  # one key per partition A owns
    i = 0
    while len(keys) < len(mine):
        email = f"fenced{i}@example.com"
        pid = partition_for(email.encode(), PARTITIONS)
        if pid in mine and pid not in keys:
            keys[pid] = email
        i += 1
    for email in keys.values():
        r = await client.put(f"{a.base}/users/{email}", json={"name": "before"})
        assert r.status_code == 201, r.text
    sneaky_pid = min(keys)
    sneaky = keys[sneaky_pid]

    b.signal(signal.SIGSTOP)
    try:
        c = make_node()  # its join starts a rebalance that waits for frozen B
        with trio.fail_after(20):
            while not await _revoked(client, a):
                await trio.sleep(0.05)
        window_opened = time.monotonic()

        # 1. Every key A held answers, with the value written before: fenced reads.
        for email in keys.values():
            r = await client.get(f"{a.base}/users/{email}")
            assert r.status_code == 200, (email, r.status_code, r.text)
            assert r.content == load.user_bytes(email, "before")
        # ...and a key that does not exist is a true 404, not a guess.
        absent = next(f"nobody{j}@example.com" for j in range(10_000)
                      if partition_for(f"nobody{j}@example.com".encode(), PARTITIONS) in mine)
        assert (await client.get(f"{a.base}/users/{absent}")).status_code == 404
        # Writes are not fenced: they wait for an owner.
        r = await client.put(f"{a.base}/users/{keys[sneaky_pid]}", json={"name": "no"})
        assert r.status_code == 503, r.text

        # 2. Someone writes past what A holds (here straight to Kafka, as a new
        # owner's acknowledged write would be): A must stop answering that partition
        # rather than answer the old value, and keep answering the others.
        await load.produce(kafka_bootstrap, names["topic"],
                           [load.keyed(sneaky.encode(), load.user_bytes(sneaky, "after"))])
        r = await client.get(f"{a.base}/users/{sneaky}")
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.headers["retry-after"]
        assert r.json()["error"] == "rebalancing"
        for pid, email in keys.items():
            if pid != sneaky_pid:
                r = await client.get(f"{a.base}/users/{email}")
                assert r.status_code == 200, (email, r.status_code, r.text)

        # All of the above happened inside the rebalance, or it proves nothing.
        assert await _revoked(client, a), "the rebalance ended before the checks did"
        assert time.monotonic() - window_opened < B_SESSION_MS / 1000
        counters = (await _readyz(client, a))["router"]
        assert counters["fenced_reads"] >= len(keys) + 1  # every answer above was fenced
    finally:
        b.signal(signal.SIGCONT)

    # 3. Once the group settles, every node answers the newer value.
    await wait_stable(client, [a, b, c], PARTITIONS)
    for node in (a, b, c):
        r = await client.get(f"{node.base}/users/{sneaky}")
        assert r.status_code == 200, r.text
        assert r.content == load.user_bytes(sneaky, "after")
