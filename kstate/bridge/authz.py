"""(asyncio side) Kafka's authorization refusals, as one line an operator can act on.

A broker with an authorizer answers an operation the node's principal has no ACL for
with TOPIC_ / GROUP_ / CLUSTER_AUTHORIZATION_FAILED. aiokafka raises those from
wherever they came (a fetch, the producer's start, an admin call), and the node exited
1 with a traceback that named no ACL. :func:`not_authorized` turns each into
KafkaNotAuthorized naming the principal, the operation and the resource; what a node
needs is listed in README, "Kafka ACLs"."""

from __future__ import annotations

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)

from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import KafkaNotAuthorized

# How the producer process tells the node its start was refused for want of an ACL
# (its replies carry text only).
PREFIX = "KafkaNotAuthorized: "

# Kafka's error codes (org.apache.kafka.common.protocol.Errors)
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
CODES = frozenset({TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
                   CLUSTER_AUTHORIZATION_FAILED})


def principal(c: KafkaConfig) -> str:
    """Whom the broker sees, as far as the node knows it."""
    if c.security_protocol.startswith("SASL_"):
        return f"User:{c.sasl_username}"
    if c.security_protocol == "SSL":
        return ("the principal of its client certificate" if c.ssl_certfile
                else "User:ANONYMOUS")
    return "User:ANONYMOUS"


def refused(c: KafkaConfig, operation: str, resource: str, error: str, doing: str
            ) -> KafkaNotAuthorized:
    """The one line for ``operation`` on ``resource`` refused while ``doing``."""
    return KafkaNotAuthorized(
        f"Kafka does not authorize this node ({principal(c)}) to {operation} {resource} "
        f"({error}, {doing}): grant the ACL; README, Kafka ACLs")


def for_code(c: KafkaConfig, code: int, topic_operation: str, doing: str
             ) -> KafkaNotAuthorized | None:
    """KafkaNotAuthorized for an answer's error ``code``, or None (not a refusal by the
    authorizer). ``topic_operation``: what the request needed of the topic."""
    if code == TOPIC_AUTHORIZATION_FAILED:
        return refused(c, topic_operation, f"topic {c.topic!r}",
                       "TOPIC_AUTHORIZATION_FAILED", doing)
    if code == GROUP_AUTHORIZATION_FAILED:
        return refused(c, "Read", f"group {c.group!r}", "GROUP_AUTHORIZATION_FAILED", doing)
    if code == CLUSTER_AUTHORIZATION_FAILED:
        # the idempotent producer's InitProducerId: IdempotentWrite on the cluster, or
        # (Kafka >= 2.8) Write on any topic
        return refused(c, "Write", f"topic {c.topic!r} (or IdempotentWrite on the cluster)",
                       "CLUSTER_AUTHORIZATION_FAILED", doing)
    return None


def not_authorized(exc: BaseException, c: KafkaConfig, topic_operation: str, doing: str
                   ) -> KafkaNotAuthorized | None:
    """KafkaNotAuthorized if ``exc`` (or what caused it) is an authorization refusal."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, KafkaNotAuthorized):
            return cur
        for kind, code in ((TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED),
                           (GroupAuthorizationFailedError, GROUP_AUTHORIZATION_FAILED),
                           (ClusterAuthorizationFailedError, CLUSTER_AUTHORIZATION_FAILED)):
            if isinstance(cur, kind):
                return for_code(c, code, topic_operation, doing)
        cur = cur.__cause__ or cur.__context__
    return None
