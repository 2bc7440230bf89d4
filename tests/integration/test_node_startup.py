"""A node waiting for Kafka at start still obeys SIGTERM (no 60 s wait, no SIGKILL), and
one told to stop while it joins the group never joins after its leave."""

from __future__ import annotations

import dataclasses
import time

import pytest
import trio

from kstate.core.messages import BridgeEvent
from tests.support.bridge import bridge_settings, open_bridge
from tools import topic as load
from tools.procs import Node, free_port

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)


async def test_sigterm_while_kafka_is_unreachable_exits_zero_at_once(artifacts):
    node = Node(bootstrap=f"127.0.0.1:{free_port()}", topic="t-unreachable",
                group="g-unreachable", log_dir=artifacts).start()
    try:
        with trio.fail_after(30):
            while "event=kafka_wait" not in node.log_text():
                assert node.alive(), node.log_text()
                await trio.sleep(0.1)
        t0 = time.monotonic()
        node.term()
        code = await node.wait_exit(timeout=10)
        seconds = time.monotonic() - t0
        print(f"exit {code} {seconds:.2f}s after SIGTERM while waiting for Kafka")
        assert code == 0
        assert seconds < 5
    finally:
        node.stop_now()


async def test_port_refuses_connections_while_waiting_for_kafka(artifacts):
    """README: while the node waits for Kafka its HTTP port does not answer. A
    connection is refused at once, so a peer that forwards to this node (a restarted
    static member whose url is still in the routing table) answers at once rather than
    after its proxy deadline, and a TCP health check sees the node down. Regression: the
    port listened from the start, so a connection was accepted and then hung."""
    node = Node(bootstrap=f"127.0.0.1:{free_port()}", topic="t-unreachable",
                group="g-unreachable", log_dir=artifacts).start()
    try:
        with trio.fail_after(30):
            while "event=kafka_wait" not in node.log_text():
                assert node.alive(), node.log_text()
                await trio.sleep(0.1)
        with trio.fail_after(5), pytest.raises(OSError, match="connect"):
            await trio.open_tcp_stream("127.0.0.1", node.port)
        assert node.alive()
    finally:
        node.stop_now()


async def _members(bootstrap: str, group: str) -> int:
    return (await load.group_state(bootstrap, group))[1]


@pytest.mark.parametrize("when", ["while_joining", "before_joining"])
async def test_leaving_before_the_join_is_done_never_joins(kafka_bootstrap, names, when):
    """SIGTERM while the node still starts its group consumer (kstate/node.py leaves
    from its own task while the main one starts the consumer): the start ends without
    an error (it raised AttributeError: exit 1 with a traceback) and the node never
    becomes a member after its leave (the others would wait a session timeout for the
    partitions it was given)."""
    settings = dataclasses.replace(bridge_settings(kafka_bootstrap, names["topic"]),
                                   group=names["group"])
    async with open_bridge(settings) as bridge:
        await bridge.ensure_topic()
        events_send, events_recv = trio.open_memory_channel[BridgeEvent](4)
        async with trio.open_nursery() as nursery:
            if when == "while_joining":
                nursery.start_soon(bridge.start_consumer, "me:1", frozenset, events_send, 1)
                await trio.lowlevel.checkpoint()  # its consumer connects meanwhile
            bridge.begin_shutdown(1.0)
            await bridge.leave_group()
            if when == "before_joining":
                nursery.start_soon(bridge.start_consumer, "me:1", frozenset, events_send, 1)
        # a member would join within a heartbeat or two: none may, while the bridge
        # (and a consumer it might have started) is still open
        with trio.move_on_after(4):
            while True:
                assert await _members(kafka_bootstrap, names["group"]) == 0
                await trio.sleep(0.2)
        assert events_recv.statistics().current_buffer_used == 0  # nothing assigned
