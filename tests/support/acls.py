"""Grant and revoke Kafka ACLs on a broker that enforces them (``KAFKA_ACLS=1 kafka.sh
up-secure``), as its super user: the PLAINTEXT listener's ANONYMOUS principal.
aiokafka's admin client has no ACL calls of its own; its CreateAcls / DeleteAcls
requests are sent as they are (literal resource patterns only)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import trio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

# org.apache.kafka.common.resource.ResourceType / acl.AclOperation / AclPermissionType
TOPIC, GROUP, CLUSTER = 2, 3, 4
READ, WRITE, CREATE, DESCRIBE, DESCRIBE_CONFIGS, IDEMPOTENT_WRITE = 3, 4, 5, 8, 10, 12
ALLOW = 3
LITERAL = 3
CLUSTER_NAME = "kafka-cluster"


@dataclass(frozen=True)
class Acl:
    resource_type: int
    name: str
    operation: int


def node_acls(topic: str, group: str) -> tuple[Acl, ...]:
    """What README ("Kafka ACLs") says a node needs, the topic existing."""
    return (Acl(TOPIC, topic, DESCRIBE), Acl(TOPIC, topic, DESCRIBE_CONFIGS),
            Acl(TOPIC, topic, READ), Acl(TOPIC, topic, WRITE), Acl(GROUP, group, READ))


async def _send(admin_bootstrap: str, requests: list[object]) -> None:
    """Send ``requests`` from an asyncio loop of their own (the tests run trio)."""
    await trio.to_thread.run_sync(asyncio.run, _send_all(admin_bootstrap, requests))
    # The authorizer applies ACLs from the metadata log: give it a moment to.
    await trio.sleep(0.5)


async def _send_all(admin_bootstrap: str, requests: list[object]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=admin_bootstrap)
    await admin.start()
    try:
        for request in requests:
            resp = await admin._send_request(request)
            errors = [r[0] for r in getattr(resp, "creation_responses", ())]
            errors += [r[0] for r in getattr(resp, "filter_responses", ())]
            assert not any(errors), resp
    finally:
        await admin.close()


async def grant(admin_bootstrap: str, principal: str, *acls: Acl) -> None:
    await _send(admin_bootstrap, [
        CreateAclsRequest(a.resource_type, a.name, LITERAL, principal, "*", a.operation, ALLOW)
        for a in acls])


async def revoke(admin_bootstrap: str, principal: str, *acls: Acl) -> None:
    await _send(admin_bootstrap, [
        DeleteAclsRequest(a.resource_type, a.name, LITERAL, principal, "*", a.operation, ALLOW)
        for a in acls])


async def create_topic(admin_bootstrap: str, topic: str, partitions: int = 2) -> None:
    """Create ``topic`` as the super user, as kstate would (compacted)."""
    async def _create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=admin_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={
                "cleanup.policy": "compact"})])
        finally:
            await admin.close()

    await trio.to_thread.run_sync(asyncio.run, _create())
