"""(asyncio side) The group coordinator's answers after which a node must not go on as
a member, and a heartbeat that names the node's instance id.

aiokafka handles the answers a member can recover from (rejoin, find the coordinator
again) and raises every other one from the next fetch as a bare KafkaError, some as
``UnknownError`` (it knows no FENCED_INSTANCE_ID nor GROUP_MAX_SIZE_REACHED): the node
exited 1 with a traceback that said nothing of what to change. :func:`refusal` turns
each into one line naming the setting to change (kstate/bridge/group.py reads every
answer of the coordinator and raises it from the next fetch instead).

aiokafka's heartbeat (Heartbeat v1) does not carry the instance id, so a static member
replaced by another live process with the same ``--instance-id`` (KIP-345) hears only
UNKNOWN_MEMBER_ID: it joined again under that id, which replaced the other process,
which did the same in turn, each taking every partition back every few seconds for as
long as both ran. :class:`StaticHeartbeat` (Heartbeat v3) names the instance id, so the
coordinator answers FENCED_INSTANCE_ID to the replaced one, which stops (as the Java
consumer does: FencedInstanceIdException is fatal there).
"""

from __future__ import annotations

from typing import Any

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.group import (
    HeartbeatRequest_v0,
    HeartbeatRequest_v1,
    HeartbeatResponse_v1,
)
from aiokafka.protocol.types import Int32, Schema, String

from kstate.bridge.errors import GroupRefused, InstanceFenced

# Kafka's error codes (org.apache.kafka.common.protocol.Errors)
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_SESSION_TIMEOUT = 26
GROUP_MAX_SIZE_REACHED = 81
FENCED_INSTANCE_ID = 82


class HeartbeatResponse_v3(Response):  # type: ignore[misc]
    API_KEY = 12
    API_VERSION = 3
    SCHEMA = HeartbeatResponse_v1.SCHEMA


class HeartbeatRequest_v3(RequestStruct):  # type: ignore[misc]
    API_KEY = 12
    API_VERSION = 3
    RESPONSE_TYPE = HeartbeatResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("generation_id", Int32),
        ("member_id", String("utf-8")),
        ("group_instance_id", String("utf-8")),
    )


class StaticHeartbeat(Request[HeartbeatRequest_v0 | HeartbeatRequest_v1  # type: ignore[misc]
                              | HeartbeatRequest_v3]):
    """aiokafka's heartbeat with the member's instance id (v3; v0/v1 without it on a
    broker older than Kafka 2.3, which has no static membership either)."""

    API_KEY = 12

    def __init__(self, group: str, generation_id: int, member_id: str,
                 instance_id: str) -> None:
        self._fields = (group, generation_id, member_id)
        self._instance_id = instance_id

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION >= 3:
            return request_struct_class(*self._fields, self._instance_id)
        return request_struct_class(*self._fields)


def refusal(code: int, group: str, instance_id: str, session_timeout_ms: int
            ) -> Exception | None:
    """What stops the node after the coordinator answered ``code`` to a JoinGroup,
    SyncGroup or Heartbeat of this member, or None (aiokafka handles it)."""
    if code == FENCED_INSTANCE_ID:
        return InstanceFenced(
            f"another process joined group {group!r} with this node's instance id "
            f"{instance_id!r} (--instance-id / KSTATE_INSTANCE_ID) and replaced it: give "
            "every node an instance id of its own; README, Operating")
    why = {
        INCONSISTENT_GROUP_PROTOCOL: (
            "its members use another partition assignor (consumers of another "
            "application): give kstate a group of its own (--group / KSTATE_GROUP)"),
        INVALID_SESSION_TIMEOUT: (
            f"session_timeout_ms={session_timeout_ms} (KSTATE_SESSION_TIMEOUT_MS) is "
            "outside the broker's group.min.session.timeout.ms..group.max.session.timeout.ms "
            "(Kafka's defaults: 6000..1800000); raise one or lower the other"),
        GROUP_MAX_SIZE_REACHED: (
            "the group has as many members as the broker's group.max.size allows: raise "
            "group.max.size or run fewer nodes"),
    }.get(code)
    if why is None:
        return None
    return GroupRefused(f"Kafka refused to let this node join group {group!r}: {why}")
