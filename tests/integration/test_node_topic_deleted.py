"""The topic deleted under running nodes (README, "Operating"): the records their state
came from are gone. The group leader, seeing the topic gone, assigns nothing; at that
assignment every node checks fresh metadata and exits 2 with one line. Before, each
stayed up answering 503 ``no_owner`` to every write, logged about a thousand aiokafka
errors a second, and once the topic was created again its standby copy answered reads
with users that no longer existed."""

from __future__ import annotations

import pytest
import trio

from tools import topic as load
from tools.procs import wait_ready, wait_stable

pytestmark = pytest.mark.timeout(150)


async def test_nodes_whose_topic_was_deleted_exit_2(make_node, client, kafka_bootstrap,
                                                     names):
    nodes = [make_node(KSTATE_PARTITIONS="4", KSTATE_STANDBY="true") for _ in range(2)]
    await wait_stable(client, nodes, 4)
    email = "deleted@example.com"
    r = await client.put(f"{nodes[0].base}/users/{email}", json={"name": "gone"})
    assert r.status_code == 201, r.text

    await load.delete_topic(kafka_bootstrap, names["topic"])
    for node in nodes:
        code = await node.wait_exit(60)
        text = node.log_text()
        assert code == 2, text[-3000:]
        refused = [line for line in text.splitlines() if "event=node_refused" in line]
        assert len(refused) == 1, text[-3000:]
        assert "reason=topic_deleted" in refused[0]
        assert "Traceback" not in text

    # started again, a node creates the topic and serves it as it is: the user is gone
    again = make_node(KSTATE_PARTITIONS="4", KSTATE_STANDBY="true")
    await wait_ready(client, again, timeout=60)
    with trio.fail_after(30):
        while (r := await client.get(f"{again.base}/users/{email}")).status_code == 503:
            await trio.sleep(0.2)
    assert r.status_code == 404, r.text
