"""A group already at the broker's ``group.max.size``: Kafka refuses the next member's
JoinGroup (GROUP_MAX_SIZE_REACHED, a code aiokafka does not know). The node must exit 2
with one line naming the setting (``event=node_refused reason=group_settings``), not 1
with a traceback; the members already in the group serve on. A static member restarted
at once is no member too many, though Kafka refuses it until its old incarnation's
session expires: it must join then.

The broker is this module's own (``group.max.size`` is a broker setting, read at
start): started, stopped, given ``group.max.size=1``, started again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.brokers import Broker, own_broker
from tools.procs import Node, wait_ready

pytestmark = pytest.mark.xdist_group("test_node_group_full")


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with own_broker("group-full") as b:
        trio.run(b.stop)
        with open(b.run_dir / "server.properties", "a") as props:
            props.write("group.max.size=1\n")
        trio.run(b.start)
        yield b


async def test_node_beyond_group_max_size_exits_2_naming_it(broker: Broker, artifacts: Path,
                                                            client) -> None:
    tag = uuid.uuid4().hex[:10]
    nodes = [Node(bootstrap=broker.bootstrap, topic=f"t-{tag}", group=f"g-{tag}",
                  log_dir=artifacts) for _ in range(2)]
    try:
        first, second = nodes
        first.start()
        await wait_ready(client, first, timeout=60)
        second.start()
        code = await second.wait_exit(60)
        text = second.log_text()
        assert code == 2, text[-3000:]
        refused = [line for line in text.splitlines() if "event=node_refused" in line]
        assert len(refused) == 1, text[-3000:]
        assert "reason=group_settings" in refused[0]
        assert "group.max.size" in refused[0]
        assert "Traceback" not in text
        assert "event=node_crashed" not in text
        # the member already in the group serves on
        assert first.alive()
        await wait_ready(client, first, timeout=30)
        r = await client.put(f"{first.base}/users/full@example.com", json={"name": "a"})
        assert r.status_code == 201, r.text
    finally:
        for n in nodes:
            n.stop_now()


async def test_static_member_restarted_in_a_full_group_rejoins(broker: Broker, artifacts: Path,
                                                              client) -> None:
    """A static member killed and restarted at once, its old member still in the group
    (for a session timeout), into a group at ``group.max.size``: Kafka refuses the new
    process's JoinGroup (GROUP_MAX_SIZE_REACHED: it counts places before it replaces the
    old member) until the old one's session expires. That is no full group: the node
    must join once it has, not exit 2 telling the operator to run fewer nodes."""
    tag = uuid.uuid4().hex[:10]
    node = Node(bootstrap=broker.bootstrap, topic=f"t-{tag}", group=f"g-{tag}",
                log_dir=artifacts, extra={"KSTATE_INSTANCE_ID": "solo"})
    try:
        node.start()
        await wait_ready(client, node, timeout=60)
        r = await client.put(f"{node.base}/users/solo@example.com", json={"name": "a"})
        assert r.status_code == 201, r.text
        node.kill()
        node.start()
        with trio.move_on_after(60):
            while node.alive():
                try:
                    r = await client.get(f"{node.base}/users/solo@example.com")
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code == 200:
                    break
                await trio.sleep(0.5)
        text = node.log_text()
        assert node.alive(), text[-3000:]
        assert r is not None, text[-3000:]
        assert r.status_code == 200, text[-3000:]
        assert r.json()["name"] == "a"
        assert "event=node_refused" not in text, text[-3000:]
    finally:
        node.stop_now()
