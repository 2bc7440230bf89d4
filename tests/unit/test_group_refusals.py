"""The coordinator's answers read on the group consumer's one request path
(kstate/bridge/group.py, _watch_membership): a static member's heartbeat names its
instance id; FENCED_INSTANCE_ID ends the read lease and stops the node at its next
fetch (InstanceFenced), unless it is already leaving, where the fetch just reads
nothing; a JoinGroup refusal stops it with GroupRefused. The real broker's side is in
tests/integration (test_cluster_static_twin, test_node_lifecycle, test_node_group_full)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest

from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import GroupRefused, InstanceFenced
from kstate.bridge.group import GroupConsumer
from kstate.bridge.membership import (
    FENCED_INSTANCE_ID,
    GROUP_MAX_SIZE_REACHED,
    INCONSISTENT_GROUP_PROTOCOL,
    StaticHeartbeat,
)


@dataclass
class _Answer:
    error_code: int


class _Coordinator:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.code = 0

    async def _send_req(self, request: Any) -> _Answer:
        self.sent.append(request)
        return _Answer(self.code)


class _Consumer:
    """An aiokafka consumer whose fetch raises what its coordinator pushed (a bare
    KafkaError, as aiokafka raises FENCED_INSTANCE_ID: UnknownError)."""

    def __init__(self) -> None:
        self._coordinator = _Coordinator()

    async def getmany(self, **_: Any) -> dict[Any, Any]:
        raise KafkaError("Unexpected exception in heartbeat task: UnknownError()")


def _member(instance_id: str) -> tuple[GroupConsumer, _Consumer]:
    g = GroupConsumer(KafkaConfig(topic="t", group="g", instance_id=instance_id),
                      token=None)  # type: ignore[arg-type]
    consumer = _Consumer()
    g.consumer = consumer  # type: ignore[assignment]
    g._watch_membership(consumer)  # type: ignore[arg-type]
    g.lease.renew(time.monotonic())
    return g, consumer


def _send(consumer: _Consumer, request: Any) -> Any:
    return asyncio.run(consumer._coordinator._send_req(request))


def test_a_static_members_heartbeat_names_its_instance_id() -> None:
    g, consumer = _member("X")
    _send(consumer, HeartbeatRequest("g", 3, "m-1"))
    sent = consumer._coordinator.sent[-1]
    assert isinstance(sent, StaticHeartbeat)
    wire = sent.prepare({12: (0, 4)})
    assert (wire.API_VERSION, wire.group_instance_id, wire.member_id) == (3, "X", "m-1")
    assert g.lease.valid()  # answered without error: renewed
    # a dynamic member's heartbeat is aiokafka's own
    _, dynamic = _member("")
    _send(dynamic, HeartbeatRequest("g", 3, "m-2"))
    assert isinstance(dynamic._coordinator.sent[-1], HeartbeatRequest)


def test_fenced_ends_the_lease_and_the_next_fetch_raises_instance_fenced() -> None:
    g, consumer = _member("X")
    consumer._coordinator.code = FENCED_INSTANCE_ID
    _send(consumer, HeartbeatRequest("g", 3, "m-1"))
    assert not g.lease.valid()
    with pytest.raises(InstanceFenced, match="'X'"):
        asyncio.run(g.fetch(10))


def test_fenced_while_leaving_reads_nothing_and_does_not_fail() -> None:
    g, consumer = _member("X")
    g.begin_leaving(5.0)
    consumer._coordinator.code = FENCED_INSTANCE_ID
    _send(consumer, HeartbeatRequest("g", 3, "m-1"))
    assert not g.lease.valid()
    batch = asyncio.run(g.fetch(10))
    assert (batch.records, g.failure) == ({}, None)


@pytest.mark.parametrize(("code", "says"), [
    (INCONSISTENT_GROUP_PROTOCOL, "KSTATE_GROUP"), (GROUP_MAX_SIZE_REACHED, "group.max.size")])
def test_a_join_refusal_raises_group_refused(code: int, says: str) -> None:
    g, consumer = _member("")
    consumer._coordinator.code = code
    _send(consumer, JoinGroupRequest("g", 6000, 30000, "", None, "consumer", []))
    assert g.lease.valid()  # a refusal to join says nothing of a lease held before
    with pytest.raises(GroupRefused, match=says):
        asyncio.run(g.fetch(10))


def test_answers_aiokafka_handles_stop_nothing() -> None:
    g, consumer = _member("X")
    for code in (25, 27, 22):  # UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION
        consumer._coordinator.code = code
        _send(consumer, HeartbeatRequest("g", 3, "m-1"))
    assert g.failure is None
    assert g.lease.valid()


class _Filling(_Coordinator):
    """Answers each JoinGroup with the next code of ``codes`` (the last one after)."""

    def __init__(self, codes: list[int]) -> None:
        super().__init__()
        self.codes = codes

    async def _send_req(self, request: Any) -> _Answer:
        self.sent.append(request)
        return _Answer(self.codes.pop(0) if len(self.codes) > 1 else self.codes[0])


def _joining(instance_id: str, codes: list[int], session_ms: int = 6000
             ) -> tuple[GroupConsumer, _Consumer]:
    g = GroupConsumer(KafkaConfig(topic="t", group="g", instance_id=instance_id,
                                  session_timeout_ms=session_ms),
                      token=None)  # type: ignore[arg-type]
    consumer = _Consumer()
    consumer._coordinator = _Filling(codes)
    g.consumer = consumer  # type: ignore[assignment]
    g._watch_membership(consumer)  # type: ignore[arg-type]
    return g, consumer


_JOIN = JoinGroupRequest("g", 6000, 30000, "", "X", "consumer", [])


def test_a_static_member_refused_for_a_full_group_asks_again_until_its_place_is_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its old incarnation (killed and restarted at once) holds the place until its
    session expires: the JoinGroup is asked again, and answered once there is room."""
    monkeypatch.setattr("kstate.bridge.group.PLACE_RETRY", 0.01)
    g, consumer = _joining("X", [GROUP_MAX_SIZE_REACHED, GROUP_MAX_SIZE_REACHED, 0])
    assert _send(consumer, _JOIN).error_code == 0
    assert len(consumer._coordinator.sent) == 3
    assert g.failure is None


def test_a_static_member_still_refused_after_a_session_timeout_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kstate.bridge.group.PLACE_RETRY", 0.01)
    monkeypatch.setattr("kstate.bridge.group.PLACE_MARGIN", 0.0)
    g, consumer = _joining("X", [GROUP_MAX_SIZE_REACHED], session_ms=100)
    assert _send(consumer, _JOIN).error_code == GROUP_MAX_SIZE_REACHED
    assert len(consumer._coordinator.sent) > 1
    with pytest.raises(GroupRefused, match=r"group\.max\.size"):
        asyncio.run(g.fetch(10))


def test_a_dynamic_member_refused_for_a_full_group_is_refused_at_once() -> None:
    g, consumer = _joining("", [GROUP_MAX_SIZE_REACHED])
    assert _send(consumer, JoinGroupRequest("g", 6000, 30000, "", None, "consumer", [])
                 ).error_code == GROUP_MAX_SIZE_REACHED
    assert len(consumer._coordinator.sent) == 1
    with pytest.raises(GroupRefused, match=r"group\.max\.size"):
        asyncio.run(g.fetch(10))


def test_a_static_member_leaving_while_it_waits_for_a_place_stops_asking_and_fails_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM while it asks again (a pod deleted meanwhile): it stops asking, and its
    last fetch reads nothing, as a node leaving does, instead of raising aiokafka's
    bare KafkaError (a traceback and exit 1 while stopping)."""
    monkeypatch.setattr("kstate.bridge.group.PLACE_RETRY", 0.01)
    g, consumer = _joining("X", [GROUP_MAX_SIZE_REACHED])

    async def leave_meanwhile() -> Any:
        asyncio.get_running_loop().call_later(0.05, g.begin_leaving, 5.0)
        return await consumer._coordinator._send_req(_JOIN)

    assert asyncio.run(leave_meanwhile()).error_code == GROUP_MAX_SIZE_REACHED
    batch = asyncio.run(g.fetch(10))
    assert (batch.records, g.failure) == ({}, None)
