"""Standby copies (setting ``standby``): after a kill -9 the dead owner's keys keep
answering through the survivors during the session timeout, fenced by Kafka's end
offset, so an answer is never older than what Kafka holds."""

from __future__ import annotations

import trio

from kstate.core.partitioner import partition_for
from tools import topic as load
from tools.procs import Node, wait_ready, wait_stable

PARTITIONS = 10
# The victim's session timeout: the window in which nobody owns its partitions after
# a kill -9, long enough that every check below fits in it on a loaded machine.
VICTIM_SESSION_MS = 20_000


async def _standby_caught_up(client, node: Node) -> bool:
    doc = (await client.get(f"{node.base}/readyz", timeout=2)).json()
    return bool(doc["standby"] and doc["standby"]["caught_up"])


async def test_dead_owners_keys_answer_from_standby_copies(make_node, client, kafka_bootstrap,
                                                           names):
    nodes = [make_node(KSTATE_STANDBY="true", KSTATE_SESSION_TIMEOUT_MS=str(VICTIM_SESSION_MS))]
    await wait_ready(client, nodes[0])  # the first node creates the topic
    nodes += [make_node(KSTATE_STANDBY="true") for _ in range(2)]
    table = await wait_stable(client, nodes, PARTITIONS)
    victim, survivors = nodes[0], nodes[1:]
    theirs = {int(k.rpartition("-")[2]) for k, url in table.items() if url == victim.url}
    keys = [e for e in (f"standby{i}@example.com" for i in range(400))
            if partition_for(e.encode(), PARTITIONS) in theirs][:30]
    for i, email in enumerate(keys):
        r = await client.put(f"{survivors[i % 2].base}/users/{email}", json={"name": "before"})
        assert r.status_code == 201, r.text
    with trio.fail_after(30):
        for n in survivors:
            while not await _standby_caught_up(client, n):
                await trio.sleep(0.1)

    generation = (await client.get(f"{survivors[0].base}/groupinfo")).headers["kstate-generation"]
    victim.kill()
    # Within the session timeout nobody owns the victim's partitions; every read of
    # its keys is still answered, by the survivors' standby copies.
    for i, email in enumerate(keys):
        r = await client.get(f"{survivors[i % 2].base}/users/{email}")
        assert r.status_code == 200, (email, r.status_code, r.text)
        assert r.content == load.user_bytes(email, "before")
    r = await client.get(f"{survivors[0].base}/user", params={"email": keys[0]})
    assert (r.status_code, r.content) == (200, load.user_bytes(keys[0], "before"))
    # Writes have no owner to go to: refused, not applied anywhere.
    r = await client.put(f"{survivors[0].base}/users/{keys[0]}", json={"name": "lost"})
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"]

    # A record that reaches Kafka meanwhile (as a write the dying owner had in flight
    # would) is never hidden by an older answer: 503 until a copy has it, then it.
    changed = keys[1]
    await load.produce(kafka_bootstrap, names["topic"],
                       [load.keyed(changed.encode(), load.user_bytes(changed, "after"))])
    seen: list[int] = []
    with trio.fail_after(5):
        while True:
            r = await client.get(f"{survivors[0].base}/users/{changed}")
            seen.append(r.status_code)
            if r.status_code == 200:
                assert r.content == load.user_bytes(changed, "after"), r.content
                break
            assert r.status_code == 503, (r.status_code, r.text)
            await trio.sleep(0.05)
    # All of that happened while the group still named the dead victim as the owner
    # (no rebalance yet: nobody could own its keys), or it proves nothing.
    for n in survivors:
        r = await client.get(f"{n.base}/groupinfo")
        assert r.headers["kstate-generation"] == generation
        assert victim.url in r.json().values()
    answered = 0
    for n in survivors:
        counters = (await client.get(f"{n.base}/readyz")).json()["router"]
        answered += counters["standby_reads"]
    assert answered >= len(keys) + 2, answered

    # Then the group moves the partitions and the new owners answer the same.
    await wait_stable(client, survivors, PARTITIONS)
    for n in survivors:
        r = await client.get(f"{n.base}/users/{changed}")
        assert (r.status_code, r.content) == (200, load.user_bytes(changed, "after"))
        r = await client.get(f"{n.base}/users/{keys[2]}")
        assert (r.status_code, r.content) == (200, load.user_bytes(keys[2], "before"))
