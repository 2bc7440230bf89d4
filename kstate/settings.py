"""Settings: one frozen object, built once from flags and ``KSTATE_*`` env vars.

Every field is named after its env var (``bootstrap`` ← ``KSTATE_BOOTSTRAP``) and has a
documented default; a flag wins over the env var. Invalid values raise
:class:`SettingsError` with a one-line message, which the CLI prints and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from kstate.bridge.config import KafkaConfig

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})


class SettingsError(ValueError):
    """A setting has an invalid value; the message is one line, meant for a human."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises SettingsError (one line) instead of printing its whole
    usage and exiting: an unknown flag is an invalid setting like any other."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError(f"{message} (kstate node --help lists the flags)")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a node, each named after its KSTATE_* env var (see describe())."""
    bootstrap: str = "127.0.0.1:9092"
    topic: str = "user"
    partitions: int = 10
    replication: int = 1
    group: str = "kstate"
    listen: str = "127.0.0.1:8080"
    advertise: str = ""
    instance_id: str = ""
    session_timeout_ms: int = 10_000
    catchup_timeout: float = 5.0
    write_timeout: float = 5.0
    proxy_timeout: float = 5.0
    max_body: int = 65_536
    max_batch: int = 5_000
    compression: str = "none"
    standby: bool = False
    serve_isolated: bool = False
    log_level: str = "INFO"
    log_format: str = "kv"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    # Secrets: never in repr (so never in a log line or a traceback's locals).
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    api_token: str = field(default="", repr=False)

    @property
    def advertised_url(self) -> str:
        """host:port other nodes and clients use to reach this node."""
        return self.advertise or self.listen

    @property
    def heartbeat_ms(self) -> int:
        # A sixth, not Kafka's usual third: every member stops serving when it learns
        # of a rebalance and serves again only when the slowest member has rejoined,
        # which takes up to one heartbeat. 1 s instead of 2 s at a 6 s session.
        return max(100, self.session_timeout_ms // 6)

    def kafka(self) -> KafkaConfig:
        """What the Kafka bridge needs of these settings."""
        return KafkaConfig(
            bootstrap=self.bootstrap, topic=self.topic, partitions=self.partitions,
            replication=self.replication, group=self.group, instance_id=self.instance_id,
            session_timeout_ms=self.session_timeout_ms, heartbeat_ms=self.heartbeat_ms,
            max_batch=self.max_batch, compression=self.compression,
            request_timeout_ms=int(self.write_timeout * 1000),
            security_protocol=self.security_protocol, sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username, sasl_password=self.sasl_password,
            ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile)


# name -> (type, help). Order is the order of --help and of the README table.
_FIELDS: dict[str, tuple[type, str]] = {
    "bootstrap": (str, "Kafka bootstrap servers, host:port[,host:port]"),
    "topic": (str, "compacted topic holding the users (created if missing)"),
    "partitions": (int, "partitions of the topic when kstate creates it"),
    "replication": (int, "replication factor of the topic when kstate creates it"),
    "group": (str, "consumer group shared by every node of one cluster"),
    "listen": (str, "host:port the HTTP server binds (port 0 = any free port)"),
    "advertise": (str, "host:port other nodes use to reach this one (default: listen)"),
    "instance_id": (str, "static group membership id (restart without rebalance)"),
    "session_timeout_ms": (int, "group session timeout; heartbeat is a sixth of it"),
    "catchup_timeout": (float, "seconds a read waits for its partition to catch up"),
    "write_timeout": (float, "seconds a write may take (produce + apply) before 503"),
    "proxy_timeout": (float, "seconds a request forwarded to the owner may take"),
    "max_body": (int, "largest request body in bytes (413 above)"),
    "max_batch": (int, "most records the consumer hands over in one batch"),
    "compression": (str, "codec of the batches this node writes: none, gzip, snappy, lz4 or "
                         "zstd (it reads every codec whatever this says)"),
    "standby": (bool, "keep a copy of every partition to answer reads (fenced) while "
                      "their owner is down; costs memory (true/false)"),
    "serve_isolated": (bool, "answer reads from memory even when this node cannot prove it "
                             "still owns the partition (cut off from Kafka): trades the "
                             "no-stale-read promise for availability (true/false)"),
    "log_level": (str, "DEBUG, INFO, WARNING or ERROR"),
    "log_format": (str, "kv (key=value lines) or json"),
    "security_protocol": (str, "Kafka security: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    "sasl_mechanism": (str, "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    "sasl_username": (str, "SASL user name (with SASL_PLAINTEXT / SASL_SSL)"),
    "sasl_password": (str, "SASL password; env var only, never logged"),
    "ssl_cafile": (str, "PEM file of the CA(s) that signed the brokers' certificates"),
    "ssl_certfile": (str, "PEM client certificate for TLS client authentication"),
    "ssl_keyfile": (str, "PEM private key of ssl_certfile"),
    "api_token": (str, "when set, PUT/DELETE need Authorization: Bearer <token>"),
}

# Secrets a flag would show to every user of `ps`: read from the environment only.
_ENV_ONLY = frozenset({"sasl_password"})
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MIN_API_TOKEN = 16
COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")  # Kafka's compression.type values


def env_name(field: str) -> str:
    return "KSTATE_" + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def describe() -> list[tuple[str, str, str, str]]:
    """(flag, env var, default, help) for every setting: the README table's source."""
    defaults = Settings()
    return [
        ("-" if f in _ENV_ONLY else flag_name(f), env_name(f), repr(getattr(defaults, f)),
         text)
        for f, (_, text) in _FIELDS.items()
    ]


def _host_port(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"{what}: expected host:port, got {value!r}")
    return host, int(port)


def validate(s: Settings) -> Settings:
    """Check every field; return ``s`` or raise :class:`SettingsError`."""
    for server in s.bootstrap.split(","):
        _host_port(server.strip(), "bootstrap")
    host, _ = _host_port(s.listen, "listen")
    if s.advertise:
        ahost, aport = _host_port(s.advertise, "advertise")
        if ahost in WILDCARD_HOSTS or aport == 0:
            raise SettingsError(f"advertise: {s.advertise!r} is not an address others can reach")
    elif host in WILDCARD_HOSTS:
        raise SettingsError(
            f"listen: wildcard host {s.listen!r} needs --advertise (KSTATE_ADVERTISE) "
            "so other nodes know how to reach this one"
        )
    if not s.topic or any(c not in _TOPIC_CHARS for c in s.topic) or len(s.topic) > 249:
        raise SettingsError(f"topic: {s.topic!r} is not a valid Kafka topic name")
    if not s.group:
        raise SettingsError("group: must not be empty")
    checks: list[tuple[bool, str]] = [
        (1 <= s.partitions <= 10_000, "partitions: must be 1..10000"),
        (1 <= s.replication <= 32, "replication: must be 1..32"),
        (1_000 <= s.session_timeout_ms <= 300_000, "session_timeout_ms: must be 1000..300000"),
        (0 < s.catchup_timeout <= 600, "catchup_timeout: must be > 0 and <= 600 seconds"),
        (0 < s.write_timeout <= 600, "write_timeout: must be > 0 and <= 600 seconds"),
        (0 < s.proxy_timeout <= 600, "proxy_timeout: must be > 0 and <= 600 seconds"),
        (1_024 <= s.max_body <= 64 * 1024 * 1024, "max_body: must be 1024..67108864 bytes"),
        (1 <= s.max_batch <= 100_000, "max_batch: must be 1..100000"),
        (s.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
         "log_level: must be DEBUG, INFO, WARNING or ERROR"),
        (s.log_format in {"kv", "json"}, "log_format: must be kv or json"),
        (s.compression in COMPRESSION, f"compression: must be one of {', '.join(COMPRESSION)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise SettingsError(message)
    _validate_security(s)
    return s


def _validate_security(s: Settings) -> None:
    if s.security_protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(f"security_protocol: must be one of {', '.join(SECURITY_PROTOCOLS)}")
    if s.security_protocol.startswith("SASL_"):
        if s.sasl_mechanism not in SASL_MECHANISMS:
            raise SettingsError(f"sasl_mechanism: must be one of {', '.join(SASL_MECHANISMS)}")
        if not s.sasl_username or not s.sasl_password:
            raise SettingsError(f"security_protocol {s.security_protocol} needs "
                                "KSTATE_SASL_USERNAME and KSTATE_SASL_PASSWORD")
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(s, name)
        if path and not os.path.isfile(path):
            raise SettingsError(f"{name}: no such file {path!r}")
    if bool(s.ssl_certfile) != bool(s.ssl_keyfile):
        raise SettingsError("ssl_certfile and ssl_keyfile go together (TLS client auth)")
    if s.api_token and (len(s.api_token) < MIN_API_TOKEN or not s.api_token.isascii()
                        or not s.api_token.isprintable() or " " in s.api_token):
        raise SettingsError(f"api_token: must be at least {MIN_API_TOKEN} printable ASCII "
                            "characters without spaces")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _convert(field: str, raw: str, source: str) -> object:
    kind = _FIELDS[field][0]
    if field == "sasl_password":
        return raw  # a password is taken as it is, spaces included
    if kind is str:
        return raw.strip()
    if kind is bool:
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise SettingsError(f"{field}: {source} {raw!r} is not true/false (or 1/0, yes/no, "
                            "on/off)")
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{field}: {source} {raw!r} is not a valid {kind.__name__}") from None


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build Settings from ``argv`` (flags only, no sub-command) and ``environ``."""
    parser = _Parser(prog="kstate node", add_help=True)
    for name, (_, text) in _FIELDS.items():
        if name not in _ENV_ONLY:
            parser.add_argument(flag_name(name), dest=name, default=None,
                                help=f"{text} [env {env_name(name)}]")
    args = parser.parse_args(list(argv))
    values: dict[str, object] = {}
    for name in _FIELDS:
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = _convert(name, flag, "flag")
        elif env_name(name) in environ:
            values[name] = _convert(name, environ[env_name(name)], env_name(name))
    settings = dataclasses.replace(Settings(), **values)  # type: ignore[arg-type]
    return validate(settings)
