"""tools/procs.Node against a real broker: what a test reads of a node's log is that
node's own output. The log file is named by port and kept in the test's artifacts
directory, which outlives the run (test-artifacts/); a later run of the same test whose
node draws the same free port appends to that file. Tests count events in their nodes'
logs (test_node_superseded: exactly one ``superseded_rejoin`` in the owner's, none in the
other's), so an earlier run's lines made them fail now and then, more often the more
runs the directory had seen."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tools.procs import Node, wait_ready

pytestmark = pytest.mark.timeout(120)


async def test_a_nodes_log_text_is_its_own_not_an_earlier_runs_on_that_port(
        kafka_bootstrap: str, names: dict[str, str], tmp_path: Path) -> None:
    first = Node(bootstrap=kafka_bootstrap, topic=names["topic"], group=names["group"],
                 log_dir=tmp_path)
    # an earlier run of the test left its node's log on this port
    first.log_path.write_text("---- start 0 ----\nts=x level=WARNING "
                              "event=superseded_rejoin generation=2 partitions=[0]\n")
    node = Node(bootstrap=kafka_bootstrap, topic=names["topic"], group=names["group"],
                log_dir=tmp_path, port=first.port)
    try:
        node.start()
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            await wait_ready(client, node)
        node.term()
        assert await node.wait_exit() == 0
        node.start()  # a restart of the same node: both of its runs are its own
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            await wait_ready(client, node)
    finally:
        node.stop_now()
    text = node.log_text()
    assert "superseded_rejoin" not in text
    assert text.count("event=node_started") == 2
    assert text.startswith("---- start 0 ----")
    assert "---- start 1 ----" in text
    # the file keeps everything (an artifact to read after a failure)
    assert "superseded_rejoin" in node.log_path.read_text()
