"""Topic administration (asyncio side): create the topic if missing, describe it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from kstate.bridge import authz
from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import TopicRefused
from kstate.bridge.security import check_access, client_args
from kstate.core import durability

TOPIC_METADATA_WAIT = 10.0  # seconds a new topic's partitions may take to show up
# The topic configs a node logs at start: those kstate/core/durability.py checks, and
# the record size limit (the writer's).
DESCRIBED = (*durability.CONFIGS, "max.message.bytes")


# Kafka's refusals of a CreateTopics that no wait can change: InvalidTopic,
# TopicAuthorizationFailed, ClusterAuthorizationFailed, InvalidConfig, PolicyViolation.
# Others (InvalidReplicationFactor while brokers start, NotController...) may pass.
FINAL_REFUSALS = frozenset({17, 29, 31, 40, 44})


def _created(c: KafkaConfig, answer: Any) -> bool:
    """Whether the CreateTopics ``answer`` says the topic was created (False: another
    node created it first). aiokafka returns the answer as it is, errors included: a
    refusal taken for success would let the next metadata request auto-create the
    topic with the broker's defaults (one partition, not compacted), silently."""
    for error in answer.topic_errors:
        code = error[1]
        message = (error[2] if len(error) > 2 else None) or ""
        if code == 0:
            continue
        kind = for_code(code)
        if kind is TopicAlreadyExistsError:
            return False
        # The topic was not listed: it is missing, or this node may not Describe it.
        refused = authz.for_code(c, code, "Create (or, if it exists, Describe)",
                                 "creating the topic")
        if refused is not None:
            raise refused
        raise TopicRefused(c.topic, kind.__name__, message, final=code in FINAL_REFUSALS)
    return True


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """The topic as the node found (or created) it."""
    name: str
    partitions: int
    created: bool
    configs: dict[str, str]
    replication: int = 0  # replicas of its least replicated partition (0: not described)


async def ensure_topic(c: KafkaConfig, create_configs: dict[str, str] | None = None
                       ) -> TopicInfo:
    """Create the topic if missing (compacted, ``min.insync.replicas`` = min(2, RF);
    ``create_configs`` override, e.g. for tests that need a topic someone else made
    differently); describe it. An existing topic is used as it is."""
    await check_access(c)
    admin = AIOKafkaAdminClient(**client_args(c), request_timeout_ms=10_000)
    await admin.start()
    try:
        created = False
        if c.topic not in await admin.list_topics():
            configs = {"cleanup.policy": "compact",
                       "min.insync.replicas": str(min(2, c.replication)),
                       "min.compaction.lag.ms": str(durability.MIN_COMPACTION_LAG_MS),
                       **(create_configs or {})}
            try:
                answer = await admin.create_topics(
                    [NewTopic(c.topic, c.partitions, c.replication, topic_configs=configs)])
                created = _created(c, answer)
            except TopicAlreadyExistsError:
                pass  # another node won the race: use it as it is
        # Right after a create (ours or another node's), metadata may list the topic
        # with no partitions yet: a node that took 0 for the count would fail every
        # request. Wait (bounded) until the partitions are there.
        deadline = time.monotonic() + TOPIC_METADATA_WAIT
        while True:
            described = await admin.describe_topics([c.topic])
            refused = authz.for_code(c, described[0]["error_code"], "Describe",
                                     "describing the topic")
            if refused is not None:
                raise refused
            parts = described[0]["partitions"]
            partitions = len(parts)
            if partitions > 0:
                replication = min(len(p["replicas"]) for p in parts)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {c.topic} lists no partitions")
            await asyncio.sleep(0.1)
        resource = ConfigResource(ConfigResourceType.TOPIC, c.topic)
        configs_out: dict[str, str] = {}
        for resp in await admin.describe_configs([resource]):
            for res in resp.resources:
                # Refused, the answer holds no configs: taken for an empty list, the
                # node warned that a compacted topic was not compacted, and checked
                # durability and the record size limit against nothing.
                refused = authz.for_code(c, res[0], "DescribeConfigs",
                                         "describing the topic's configs")
                if refused is not None:
                    raise refused
                for entry in res[4]:
                    if entry[0] in DESCRIBED:
                        configs_out[entry[0]] = entry[1]
        return TopicInfo(c.topic, partitions, created, configs_out, replication)
    finally:
        await admin.close()
