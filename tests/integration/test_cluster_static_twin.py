"""Two live processes with the same ``--instance-id`` (an operator's copy-paste): the
second one's JoinGroup replaces the first (KIP-345). The replaced one must stop with
one line (exit 2, ``event=node_refused reason=instance_fenced``), not join again under
that id: that replaced the other process, which did the same in turn, each taking every
partition back about every second for as long as both ran (two nodes serving and
claiming the same partitions by turns). The one that replaced it serves on.

A restarted static member replacing its own dead or cut-off incarnation is the same
replacement seen from the new process: test_cluster_sticky and
test_cluster_static_replaced keep that working.
"""

from __future__ import annotations

import trio

from tests.support.owners import assert_serves, create_all
from tools.procs import wait_ready, wait_stable

PARTITIONS = 10
SESSION_MS = 6000


async def test_live_twin_with_the_same_instance_id_stops_the_replaced_one(make_node,
                                                                         client) -> None:
    env = {"KSTATE_INSTANCE_ID": "twin", "KSTATE_SESSION_TIMEOUT_MS": str(SESSION_MS)}
    a = make_node(**env)
    await wait_ready(client, a, timeout=60)
    keys = [f"twin{i}@example.com" for i in range(6)]
    acked = await create_all(client, a, keys, "v1")

    b = make_node(**env)
    # A is replaced at B's JoinGroup and hears so at its next heartbeat (1 s apart)
    code = await a.wait_exit(60)
    text = a.log_text()
    assert code == 2, text[-3000:]
    refused = [line for line in text.splitlines() if "event=node_refused" in line]
    assert len(refused) == 1, text[-3000:]
    assert "reason=instance_fenced" in refused[0]
    assert "'twin'" in refused[0]
    assert "KSTATE_INSTANCE_ID" in refused[0]
    assert "Traceback" not in text
    assert "event=node_crashed" not in text

    # B took A's place for good: it serves every key and is not replaced in turn
    await wait_stable(client, [b], PARTITIONS, timeout=60)
    await assert_serves(client, [b], {k: v for k, (v, _) in acked.items()}, within=30)
    joined = b.log_text().count("event=assigned ")
    await trio.sleep(2 * SESSION_MS / 1000)  # many heartbeats: a twin would rejoin by now
    assert b.alive(), b.log_text()[-3000:]
    assert b.log_text().count("event=assigned ") == joined, b.log_text()[-3000:]
    r = await client.put(f"{b.base}/users/{keys[0]}", json={"name": "v2"})
    assert r.status_code == 200, r.text
