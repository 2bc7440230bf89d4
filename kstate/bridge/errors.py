"""The bridge's errors, as the trio side sees them."""

from __future__ import annotations


class BrokerUnavailable(Exception):
    """Kafka did not answer in time (or refused); the request may be retried."""


class RecordTooLarge(BrokerUnavailable):
    """Kafka refused the record, or the batch it was in, as larger than the topic takes
    (MessageSizeTooLargeError): it was not written."""


class TopicRefused(Exception):
    """Kafka refused to create the topic (``error``: Kafka's error name, e.g.
    INVALID_REPLICATION_FACTOR with fewer brokers than the replication asks for).
    ``final``: waiting cannot help (an invalid name or config, a policy, no right)."""

    def __init__(self, topic: str, error: str, message: str, *, final: bool) -> None:
        super().__init__(f"Kafka refused to create topic {topic}: {error}"
                         + (f": {message}" if message else ""))
        self.error = error
        self.final = final


class KafkaAuthFailed(Exception):
    """Kafka refused this node's credentials or TLS setup: retrying cannot help."""


class KafkaNotAuthorized(Exception):
    """Kafka's authorizer refused this node an operation it needs: an ACL missing, or
    revoked while it ran (kstate/bridge/authz.py). Retrying cannot help, and a node
    that can no longer read its topic or stay in its group cannot confirm what it
    serves. The message is one line naming the principal, the operation and the
    resource (the CLI exits 2 with it; README, "Kafka ACLs")."""


class GroupRefused(Exception):
    """Kafka's group coordinator refused to let this node join with its settings (a
    session timeout outside the broker's bounds, a group used by consumers with another
    assignor, a full group: kstate/bridge/membership.py): retrying cannot help. The
    message is one line naming what to change (the CLI exits 2 with it)."""


class InstanceFenced(Exception):
    """Another process joined the group with this node's instance id (static
    membership) and replaced it: the coordinator fenced this one (FENCED_INSTANCE_ID).
    Joining again would replace that process in turn, for as long as both run; the
    message is one line (the CLI exits 2 with it; README, "Operating")."""


class PartitionsChanged(Exception):
    """The topic's partition count is not the one this node started with: partitions
    were added while it ran. Kafka's default partitioner now maps most keys to another
    partition, and this node's routing, and its check of other producers' records, use
    the old count. The message is one line naming both counts (the CLI exits 2 with
    it; README, "Operating", says what follows)."""


class TopicDeleted(Exception):
    """The topic was deleted while this node ran: the records its state was built from
    are gone from Kafka (a topic created again under the name starts empty). The
    message is one line (the CLI exits 2 with it; README, "Operating")."""


class OffsetPastEnd(Exception):
    """A reader was asked to start a partition past its end: ``offset`` (the next
    offset to read) is above ``end``, the partition's next offset (its last stable
    offset: the reader reads committed records only)."""

    def __init__(self, partition: int, offset: int, end: int) -> None:
        super().__init__(f"partition {partition}: offset {offset} is past its end {end}")
        self.partition = partition
        self.offset = offset
        self.end = end
