"""A node of a new group on a topic an older group wrote (or of a group Kafka forgot,
whose generations start over at 1): the old owners' markers carry epochs above the
new group's generation. The node claims each partition above what it has seen there
(kstate/core/records.py: claim_epoch) and serves it, instead of reading the old
markers as a newer owner and refusing the partition for good."""

from __future__ import annotations

import re
import time

import pytest
import trio

from tools import topic as load
from tools.procs import Node, wait_ready

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)

CLAIMED = re.compile(r"event=partition_claimed partition=(\d+) epoch=(\d+)")


def claims(node: Node) -> dict[int, int]:
    """partition -> epoch of this node's latest claim (from its log, this run's part:
    the file holds every start of the node)."""
    text = node.log_text()
    run = text[max(text.rfind("---- start"), 0):]
    return {int(p): int(e) for p, e in CLAIMED.findall(run)}


async def all_claimed(node: Node, partitions: int = 10, within: float = 10.0
                      ) -> dict[int, int]:
    """claims(node) once it covers every partition. A node is ready once it has caught
    up; it writes its claims right after, so a log read at once may hold only some."""
    deadline = time.monotonic() + within
    while len(found := claims(node)) < partitions:
        assert time.monotonic() < deadline, f"claims after {within}s: {found}"
        await trio.sleep(0.05)
    return found


async def test_a_new_group_takes_over_a_topic_with_higher_epochs(make_node, client,
                                                                  kafka_bootstrap, names,
                                                                  artifacts):
    old = make_node()
    await wait_ready(client, old, timeout=60)
    # A restart: the group goes empty and joins again, at a higher generation.
    old.term()
    assert await old.wait_exit() == 0
    old.start()
    await wait_ready(client, old, timeout=60)
    r = await client.put(f"{old.base}/users/ada@example.com", json={"name": "Old"})
    assert r.status_code in (200, 201), r.text
    old_claims = await all_claimed(old)
    assert len(old_claims) == 10
    old.term()
    assert await old.wait_exit() == 0

    new = Node(bootstrap=kafka_bootstrap, topic=names["topic"], group=names["group"] + "-new",
               log_dir=artifacts).start()
    try:
        await wait_ready(client, new, timeout=60)
        new_claims = await all_claimed(new)
        assert set(new_claims) == set(old_claims)
        assert all(new_claims[p] > old_claims[p] for p in old_claims), (old_claims, new_claims)
        r = await client.get(f"{new.base}/users/ada@example.com")
        assert r.content == load.user_bytes("ada@example.com", "Old")
        r = await client.put(f"{new.base}/users/ada@example.com", json={"name": "New"})
        assert r.status_code == 200, r.text
        r = await client.get(f"{new.base}/users/ada@example.com")
        assert r.content == load.user_bytes("ada@example.com", "New")
    finally:
        new.stop_now()
