"""The bridge's errors, as the trio side sees them."""

from __future__ import annotations


class BrokerUnavailable(Exception):
    """Kafka did not answer in time (or refused); the request may be retried."""


class RecordTooLarge(BrokerUnavailable):
    """Kafka refused the record, or the batch it was in, as larger than the topic takes
    (MessageSizeTooLargeError): it was not written."""


class KafkaAuthFailed(Exception):
    """Kafka refused this node's credentials or TLS setup: retrying cannot help."""
