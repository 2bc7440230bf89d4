"""Issue 4: three nodes share the topic; any node answers any key.

300 users written through random nodes (seed PUT /user and REST PUT /users/{email},
mixed), then every user read back through every node: the exact stored bytes and the
ETag the write was acknowledged with. /groupinfo is the same table on every node.
"""

from __future__ import annotations

import random
from collections import Counter

import trio

from kstate.core.partitioner import partition_for
from tests.support.workload import Workload, show, sweep
from tools.procs import wait_ready, wait_stable

PARTITIONS = 10


async def test_300_users_through_random_nodes_read_back_everywhere(make_node, client, capsys,
                                                                  artifacts):
    nodes = [make_node() for _ in range(3)]
    for n in nodes:
        await wait_ready(client, n)
    table = await wait_stable(client, nodes, PARTITIONS)
    bases = [n.base for n in nodes]
    owners = Counter(table.values())
    assert sorted(owners.values()) == [3, 3, 4], table  # balanced: 10 over 3

    wl = Workload(client, rng=random.Random(300))
    emails = [f"user{i}@spread.example" for i in range(300)]
    limit = trio.CapacityLimiter(8)
    forwarded_writes = 0

    async def write(i: int, email: str) -> None:
        nonlocal forwarded_writes
        base = wl.rng.choice(bases)
        owner = table[f"{_topic(table)}-{partition_for(email.encode(), PARTITIONS)}"]
        forwarded_writes += owner != base.removeprefix("http://")
        async with limit:
            r = await wl.put(base, email, f"User {i}", api="seed" if i % 2 else "rest",
                             retries=1)
        assert r.status_code in (200, 201), (base, email, r.status_code, r.text)
        assert r.headers.get("etag"), r.headers

    async with trio.open_nursery() as nursery:
        for i, email in enumerate(emails):
            nursery.start_soon(write, i, email)
    assert len(wl.known) == 300
    assert forwarded_writes > 100  # about 2/3 of the writes went through a non-owner
    assert {k for k in wl.write_counts if k not in ("200", "201")} == set(), wl.write_counts

    got = await sweep(wl, bases)
    show(capsys, artifacts, f"spread: {wl.summary()}")
    assert got == Counter({"ok": 900}), wl.report()

    # Seed GET answers the same bytes; a key never written is a true 404 everywhere.
    for base in bases:
        r = await client.get(f"{base}/user", params={"email": emails[7]})
        assert r.status_code == 200
        assert r.content == wl.known[emails[7]].value
        r = await client.get(f"{base}/users/nobody@spread.example")
        assert r.status_code == 404, r.text

    # Every node still reports the same table (and generation) as before.
    assert await wait_stable(client, nodes, PARTITIONS) == table
    # ~600 forwarded requests later the logs are not one line per forward (httpx INFO)
    for n in nodes:
        assert "HTTP Request:" not in n.log_text(), n.url


def _topic(table: dict[str, str]) -> str:
    return next(iter(table)).rsplit("-", 1)[0]
