"""A group already at the broker's ``group.max.size``: Kafka refuses the next member's
JoinGroup (GROUP_MAX_SIZE_REACHED, a code aiokafka does not know). The node must exit 2
with one line naming the setting (``event=node_refused reason=group_settings``), not 1
with a traceback; the members already in the group serve on.

The broker is this module's own (``group.max.size`` is a broker setting, read at
start): started, stopped, given ``group.max.size=1``, started again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

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
