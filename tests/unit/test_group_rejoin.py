"""Rejoins a member asks for (kstate/bridge/group.py, ask_rejoin): each changes the
claim it sends in JoinGroup (else the coordinator would answer a known member's
JoinGroup without a rebalance), once per generation, at most MAX_REJOINS per process,
none once the node is leaving."""

from __future__ import annotations

import asyncio

from kstate.bridge.config import KafkaConfig
from kstate.bridge.group import MAX_REJOINS, Assignor, GroupConsumer
from kstate.core.assignment import decode_claim


class _Consumer:
    def __init__(self) -> None:
        self._coordinator = self
        self.generation = 4
        self.rejoins = 0

    def request_rejoin(self) -> None:
        self.rejoins += 1


def _claim(g: GroupConsumer) -> bytes:
    assert g.assignor is not None
    return bytes(g.assignor.metadata({"t"}).user_data)


def test_a_superseded_partition_asks_once_per_generation_and_a_bounded_number_of_times() -> None:
    g = GroupConsumer(KafkaConfig(topic="t"), token=None)  # type: ignore[arg-type]
    consumer = _Consumer()
    g.consumer = consumer  # type: ignore[assignment]
    g.assignor = Assignor("t", "me:1", lambda: frozenset({0}))
    before = _claim(g)
    asyncio.run(g.request_rejoin("superseded", [0]))
    assert consumer.rejoins == 1
    assert _claim(g) != before  # a rebalance, not a no-op
    assert decode_claim(_claim(g)).owned == frozenset({0})  # sticky: it claims it back
    asyncio.run(g.request_rejoin("superseded", [1]))  # same generation: asked already
    assert consumer.rejoins == 1
    for generation in range(5, 5 + 2 * MAX_REJOINS):
        consumer.generation = generation
        asyncio.run(g.request_rejoin("superseded", [0]))
    assert consumer.rejoins == MAX_REJOINS
    g.closing = True
    g.assignor.rejoins = 0
    consumer.generation += 1
    asyncio.run(g.request_rejoin("superseded", [0]))
    assert consumer.rejoins == MAX_REJOINS  # leaving: no rebalance on its account
