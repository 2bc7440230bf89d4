"""Rejoins a member asks for (kstate/bridge/group.py, ask_rejoin): each changes the
claim it sends in JoinGroup (else the coordinator would answer a known member's
JoinGroup without a rebalance), once per generation, at most MAX_REJOINS in any
REJOIN_WINDOW (both reasons together), none once the node is leaving. A partition
taken over (request_rejoin) asks only while a rejoin can help: the node is a member
(generation ≥ 0) whose read lease holds, no rebalance is asked for or under way, and
its consumer still holds the partition. An ask that cannot help spends nothing."""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from kstate.bridge.config import KafkaConfig
from kstate.bridge.group import MAX_REJOINS, REJOIN_WINDOW, Assignor, GroupConsumer
from kstate.core.assignment import decode_claim


class _Pending:
    """aiokafka's ``_rejoin_needed_fut``: done once a rejoin is asked for, replaced when
    the SyncGroup of that rebalance goes out."""

    def __init__(self) -> None:
        self.asked = False

    def done(self) -> bool:
        return self.asked


class _Subscription:
    reassignment_in_progress = False


class _Consumer:
    """What GroupConsumer reads of an aiokafka consumer and its coordinator."""

    def __init__(self, held: set[int] | None = None) -> None:
        self._coordinator = self
        self._subscription = _Subscription()
        self._rejoin_needed_fut = _Pending()
        self.generation = 4
        self.rejoins = 0
        self.held = {0} if held is None else held

    def request_rejoin(self) -> None:
        self.rejoins += 1
        self._rejoin_needed_fut.asked = True

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", p) for p in self.held}

    def rebalanced(self) -> None:
        """A rebalance happened: a new generation, no rejoin pending."""
        self.generation += 1
        self._rejoin_needed_fut = _Pending()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _member(held: set[int] | None = None) -> tuple[GroupConsumer, _Consumer, _Clock]:
    """A member of generation 4 whose lease holds, holding ``held`` (default {0})."""
    g = GroupConsumer(KafkaConfig(topic="t"), token=None)  # type: ignore[arg-type]
    consumer = _Consumer(held)
    g.consumer = consumer  # type: ignore[assignment]
    g.assignor = Assignor("t", "me:1", lambda: frozenset(consumer.held))
    g.clock = clock = _Clock()
    g.lease.renew(time.monotonic())
    return g, consumer, clock


def _ask(g: GroupConsumer, partitions: list[int]) -> bool:
    return asyncio.run(g.request_rejoin("superseded", partitions))


def _claim(g: GroupConsumer) -> bytes:
    assert g.assignor is not None
    return bytes(g.assignor.metadata({"t"}).user_data)


def test_a_superseded_partition_asks_once_per_generation_and_a_bounded_number_of_times() -> None:
    g, consumer, _ = _member()
    before = _claim(g)
    assert _ask(g, [0])
    assert consumer.rejoins == 1
    assert _claim(g) != before  # a rebalance, not a no-op
    assert decode_claim(_claim(g)).owned == frozenset({0})  # sticky: it claims it back
    assert _ask(g, [0])  # same generation: asked already (a rebalance is coming)
    assert consumer.rejoins == 1
    for _ in range(2 * MAX_REJOINS):
        consumer.rebalanced()
        _ask(g, [0])
    assert consumer.rejoins == MAX_REJOINS
    g.closing = True
    g.budget = type(g.budget)()  # a fresh budget: only leaving can refuse now
    consumer.rebalanced()
    _ask(g, [0])
    assert consumer.rejoins == MAX_REJOINS  # leaving: no rebalance on its account


def test_no_rejoin_while_the_node_is_not_a_member_and_none_spent() -> None:
    # Cut off from Kafka, expelled, or (re)joining: aiokafka's generation is -1. A rejoin
    # changes nothing there (aiokafka joins anyway): asked again later.
    g, consumer, _ = _member()
    consumer.generation = -1
    for _ in range(2 * MAX_REJOINS):
        assert not _ask(g, [0])
    assert consumer.rejoins == 0
    consumer.generation = 5
    for _ in range(MAX_REJOINS):
        assert _ask(g, [0])
        consumer.rebalanced()
    assert consumer.rejoins == MAX_REJOINS  # the whole budget was still there


def test_no_rejoin_while_the_lease_does_not_hold_and_none_spent() -> None:
    # No heartbeat answered for a lease's length (a network cut, a long pause): the group
    # may have moved the partition on already; asked again once the lease holds.
    g, consumer, _ = _member()
    g.lease.until = 0.0
    for _ in range(2 * MAX_REJOINS):
        assert not _ask(g, [0])
        consumer.rebalanced()
    assert consumer.rejoins == 0
    g.lease.renew(time.monotonic())
    assert _ask(g, [0])
    assert consumer.rejoins == 1


def test_no_rejoin_while_a_rebalance_is_asked_for_or_under_way_and_none_spent() -> None:
    g, consumer, _ = _member()
    # asked for already (a heartbeat answered REBALANCE_IN_PROGRESS, a metadata change)
    consumer._rejoin_needed_fut.asked = True
    for _ in range(2 * MAX_REJOINS):
        assert _ask(g, [0])  # that rebalance is the remedy: nothing to ask again later
    # aiokafka reassigning (after the revoke callback, until the new assignment)
    consumer._rejoin_needed_fut = _Pending()
    consumer._subscription.reassignment_in_progress = True
    for _ in range(2 * MAX_REJOINS):
        assert _ask(g, [0])
    consumer._subscription.reassignment_in_progress = False
    # this node's listener between a revoke and the end of the assignment it answers
    g.rebalancing = True
    for _ in range(2 * MAX_REJOINS):
        assert _ask(g, [0])
    assert consumer.rejoins == 0
    g.rebalancing = False
    for _ in range(MAX_REJOINS):
        assert _ask(g, [0])
        consumer.rebalanced()
    assert consumer.rejoins == MAX_REJOINS


def test_no_rejoin_for_a_partition_the_consumer_no_longer_holds_and_none_spent() -> None:
    # Revoked meanwhile: the state owner has not applied that revoke yet; the assignment
    # it is part of settles the partition.
    g, consumer, _ = _member(held={1})
    for _ in range(2 * MAX_REJOINS):
        assert not _ask(g, [0])  # asked again later, should it still be taken over
        consumer.rebalanced()
    assert consumer.rejoins == 0
    consumer.held = {0, 1}
    assert _ask(g, [0, 2])  # asks for what it holds
    assert consumer.rejoins == 1


def test_the_budget_is_a_rate_shared_by_both_reasons() -> None:
    g, consumer, clock = _member()
    assert g.assignor is not None
    for _ in range(MAX_REJOINS - 1):
        assert _ask(g, [0])
        consumer.rebalanced()
        clock.now += 1
    g.ask_rejoin(consumer, "stale_table", consumer.generation, [0])  # type: ignore[arg-type]
    consumer.rebalanced()
    assert consumer.rejoins == MAX_REJOINS
    # spent: a partition taken over now waits for the window to move on
    clock.now += REJOIN_WINDOW / 2
    assert not _ask(g, [0])
    assert consumer.rejoins == MAX_REJOINS
    # the first rejoin leaves the window: one more may be asked, not two
    clock.now += REJOIN_WINDOW / 2 - (MAX_REJOINS - 1)
    assert _ask(g, [0])
    assert consumer.rejoins == MAX_REJOINS + 1
    consumer.rebalanced()
    assert not _ask(g, [0])
    assert consumer.rejoins == MAX_REJOINS + 1
