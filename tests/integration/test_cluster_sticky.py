"""Issue 4: static membership. A node killed (-9) and started again with the same
``--instance-id`` (and address) within the session timeout takes its own partitions
back: the other nodes replay nothing, keep their partitions and positions, and the
routing table is the one from before.

The coordinator may answer the rejoin without a rebalance (a follower: the cached
assignment) or with one (the group leader rejoining triggers a rebalance with the
JoinGroup versions aiokafka speaks); either way the others must keep ("mode=keep")
every partition, at the same position, with nothing applied since.

The session timeout is 12 s here (6 s elsewhere): on a loaded 2-core machine a Python
process can take several seconds to start, and this test is about what happens
*within* the session timeout, which it checks.
"""

from __future__ import annotations

import random
import re
import time

from tests.support.workload import Workload, load_users, readiness, show, sweep
from tools.procs import wait_ready, wait_stable

PARTITIONS = 10
SESSION_TIMEOUT = 12.0


def assignments(text: str) -> list[tuple[int, str]]:
    return [(int(p), m) for p, m in
            re.findall(r"event=partition_assigned partition=(\d+) mode=(\w+)", text)]


async def test_restart_with_same_instance_id_replays_nothing_elsewhere(make_node, client,
                                                                      capsys, artifacts):
    nodes = [make_node(KSTATE_INSTANCE_ID=f"sticky-{i}",
                       KSTATE_SESSION_TIMEOUT_MS=str(int(SESSION_TIMEOUT * 1000)))
             for i in range(3)]
    for n in nodes:
        await wait_ready(client, n)
    table = await wait_stable(client, nodes, PARTITIONS)
    wl = Workload(client, rng=random.Random(6))
    await load_users(wl, [n.base for n in nodes], [f"s{i}@sticky.example" for i in range(300)])
    victim, others = nodes[2], nodes[:2]
    other_bases = [n.base for n in others]
    before = await readiness(client, other_bases)
    gen_before = (await client.get(f"{others[0].base}/groupinfo")).headers["kstate-generation"]
    marks = {n.url: len(n.log_text()) for n in others}
    victim_parts = sorted(int(k.rsplit("-", 1)[1]) for k, url in table.items()
                          if url == victim.url)

    t0 = time.monotonic()
    victim.kill()
    victim.start()  # same port, same KSTATE_INSTANCE_ID
    await wait_ready(client, victim, timeout=SESSION_TIMEOUT * 3)
    back = time.monotonic() - t0
    restarted = victim.log_text().split("---- start 1 ----", 1)[1]
    assert "event=node_started" in restarted
    assert "event=assigned" in restarted
    after_table = await wait_stable(client, nodes, PARTITIONS)
    after = await readiness(client, other_bases)
    gen_after = (await client.get(f"{others[0].base}/groupinfo")).headers["kstate-generation"]

    victim_modes = assignments(restarted)
    other_modes = {n.url: assignments(n.log_text()[marks[n.url]:]) for n in others}
    show(capsys, artifacts,
         f"sticky restart: ready again after {back:.2f}s; generation {gen_before} -> "
         f"{gen_after}; restarted node rebuilt {victim_modes}; others' assignments "
         f"since: {other_modes}")
    # the precondition: the group did not expel the member (it came back in time)
    for n in others:
        assert "members=2" not in n.log_text()[marks[n.url]:], "session expired first"

    assert after_table == table  # ownership unchanged everywhere
    for base in other_bases:
        b, a = before[base], after[base]
        assert a["owned"] == b["owned"], (base, b["owned"], a["owned"])
        for p in map(str, b["owned"]):
            # nothing replayed: the same position, and no record applied since the
            # restart (the counter restarts at 0 with a new assignment: a "keep")
            pa, pb = a["partitions"][p], b["partitions"][p]
            assert pa["position"] == pb["position"], (base, p, pb, pa)
            assert pa["replayed"] in (0, pb["replayed"]), (base, p, pb, pa)
    for url, seen in other_modes.items():
        assert all(mode == "keep" for _, mode in seen), (url, seen)
    # the restarted node has no memory: it rebuilt exactly its own partitions
    assert sorted(p for p, _ in victim_modes) == victim_parts
    assert {m for _, m in victim_modes} == {"rebuild"}
    got = await sweep(wl, [n.base for n in nodes])
    assert dict(got) == {"ok": 900}, wl.report()
