"""The producer process (kstate/bridge/producer_process.py) while its producer starts:
aiokafka's idempotent start retries for as long as Kafka is unreachable, and a node
killed with kill -9 meanwhile is not there to kill the process. It must see its node's
end close and exit then, not once Kafka is back."""

from __future__ import annotations

import asyncio
import pickle
import socket

import pytest

from kstate.bridge import producer_process
from kstate.bridge.config import KafkaConfig
from kstate.bridge.produce_wire import encode_sized


class _StuckProducer:
    """A producer whose start never ends (Kafka unreachable)."""

    instances: list[_StuckProducer] = []

    def __init__(self, config: KafkaConfig) -> None:
        self.cancelled = False
        _StuckProducer.instances.append(self)

    async def start(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def stop(self) -> None:
        pass


def test_the_node_going_away_while_the_producer_starts_ends_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer_process, "NodeProducer", _StuckProducer)
    node, child = socket.socketpair()
    node.sendall(encode_sized(pickle.dumps(KafkaConfig(bootstrap="127.0.0.1:1", topic="t"))))

    async def scenario() -> int:
        serving = asyncio.create_task(producer_process.serve(child.detach()))
        while not _StuckProducer.instances:
            await asyncio.sleep(0.01)
        node.close()  # kill -9 of the node
        return await asyncio.wait_for(serving, 3.0)

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        node.close()
    assert _StuckProducer.instances[0].cancelled
