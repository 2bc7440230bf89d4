"""The bridge's own settings: what it needs to reach Kafka, nothing about HTTP. The
composition root builds one from the node's settings (kstate/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """The bridge's settings: how to reach Kafka, which topic and group, security."""
    bootstrap: str = "127.0.0.1:9092"
    topic: str = "user"
    partitions: int = 10  # when the bridge creates the topic
    replication: int = 1  # when the bridge creates the topic
    group: str = "kstate"
    instance_id: str = ""
    session_timeout_ms: int = 10_000
    heartbeat_ms: int = 1_666
    max_batch: int = 5_000
    compression: str = "none"  # the node producer's codec (Kafka's compression.type)
    request_timeout_ms: int = 5_000  # the node producer's (a write's bound)
    # the largest record the node producer sends (aiokafka refuses larger ones itself,
    # whatever the topic takes): set from max_body, so that only Kafka says "too large"
    max_request_bytes: int = 1_048_576
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    log_format: str = "kv"  # the node's: its producer process writes its own last lines

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap.split(",")]
