"""Settings: one frozen object, built once from flags and ``KSTATE_*`` env vars.

Every field is named after its env var (``bootstrap`` ← ``KSTATE_BOOTSTRAP``) and has a
documented default; a flag wins over the env var. Invalid values raise
:class:`SettingsError` with a one-line message, which the CLI prints and exits 2.

Secrets (the API token, the SASL password) are never flags: ``ps`` shows a process's
arguments to every user. Each comes from its env var or from a file named by
``--<secret>-file`` / ``KSTATE_<SECRET>_FILE``, read once here, at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from actors.router import TABLE_WAIT
from kstate.bridge.config import KafkaConfig
from kstate.core.assignment import member_url_ok
from kstate.core.log_lines import FORMATS
from kstate.settings_help import ENV_ONLY, FIELDS, SECRET_FILES, env_name, flag_name
from web import tls

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})
# Network and scheduling slack on top of the owner's own bounds (proxy_timeout).
PROXY_MARGIN = 1.0


class SettingsError(ValueError):
    """A setting has an invalid value; the message is one line, meant for a human."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises SettingsError (one line) instead of printing its whole
    usage and exiting: an unknown flag is an invalid setting like any other. Flags are
    never abbreviated (``--api-token`` must not turn into ``--api-token-file``)."""

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
    proxy_timeout: float = 0.0
    max_body: int = 65_536
    http_max_connections: int = 2048
    http_head_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_idle_timeout: float = 75.0
    http_send_timeout: float = 30.0
    http_max_head_bytes: int = 16_384
    tls_certfile: str = ""
    tls_keyfile: str = ""
    tls_cafile: str = ""
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
    api_token_file: str = ""
    sasl_password_file: str = ""
    cluster_auth_window: float = 30.0
    cluster_auth_nonces: int = 100_000
    require_durable: bool = False
    feed_max_subscribers: int = 512
    feed_max_resumed: int = 32
    feed_stall_timeout: float = 5.0

    @property
    def advertised_url(self) -> str:
        """host:port other nodes and clients use to reach this node."""
        return self.advertise or self.listen

    @property
    def owner_worst_case(self) -> float:
        """Seconds an owner may take before it answers a forwarded request: waiting for
        a newer routing table (TABLE_WAIT), for the key's lock (write_timeout), for the
        partition to be writable (catchup_timeout), then for the produce (write_timeout,
        then 503 write_timeout); plus PROXY_MARGIN. A read's worst case is shorter."""
        return TABLE_WAIT + 2 * self.write_timeout + self.catchup_timeout + PROXY_MARGIN

    @property
    def proxy_deadline(self) -> float:
        """proxy_timeout, or (0) the owner's worst case."""
        return self.proxy_timeout or self.owner_worst_case

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
            max_request_bytes=max(1_048_576, self.max_body + RECORD_OVERHEAD),
            security_protocol=self.security_protocol, sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username, sasl_password=self.sasl_password,
            ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile, log_format=self.log_format)


# Bytes a record takes beyond its value: the key (an email, at most 254), kstate's
# headers and Kafka's record and batch framing, with room to spare.
RECORD_OVERHEAD = 16_384
MAX_SECRET_FILE = 4096  # bytes: a token or password, not a document
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MIN_API_TOKEN = 16
COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")  # Kafka's compression.type values
# Every duration in seconds is checked alike: low..high, so 0, negatives, NaN and inf
# are refused. No low bound is under MIN_SECONDS: shorter is a typo, and some become
# milliseconds for Kafka (write_timeout 0.0005 would be request_timeout_ms=0).
# proxy_timeout is apart: 0 (derived) or MIN_SECONDS..600 and never under the owner's
# worst case; session_timeout_ms is an int of milliseconds.
MIN_SECONDS = 0.1
DURATIONS: dict[str, tuple[float, float]] = {
    "catchup_timeout": (MIN_SECONDS, 600), "write_timeout": (MIN_SECONDS, 600),
    "http_head_timeout": (MIN_SECONDS, 3600), "http_body_timeout": (MIN_SECONDS, 3600),
    "http_idle_timeout": (MIN_SECONDS, 3600), "http_send_timeout": (MIN_SECONDS, 3600),
    "feed_stall_timeout": (MIN_SECONDS, 600),
    "cluster_auth_window": (1, 300)}


def describe() -> list[tuple[str, str, str, str]]:
    """(flag, env var, default, help) for every setting: the README table's source."""
    defaults = Settings()
    return [
        ("-" if f in ENV_ONLY else flag_name(f), env_name(f), repr(getattr(defaults, f)),
         text)
        for f, (_, text) in FIELDS.items()
    ]


def _host_port(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    # ASCII digits only: str.isdigit() also takes "²" (which int() refuses) and "٨٠"
    # (which int() reads as 80 but a peer's url check refuses)
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
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
    what, given = ("advertise", s.advertise) if s.advertise else ("listen", s.listen)
    # The whole url peers will see, as written (port 0: the bound one, known later):
    # a url they drop (decode_claim) leaves this node's partitions with no owner.
    url = given if _host_port(given, what)[1] else given.rpartition(":")[0] + ":1"
    if not member_url_ok(url):
        raise SettingsError(
            f"{what}: {given!r} is not a host:port peers can dial as written (ASCII "
            "letters, digits and . - _ : [ ] % only, a non-ASCII name in its xn-- form; "
            "a port of at most 5 ASCII digits)")
    if not s.topic or any(c not in _TOPIC_CHARS for c in s.topic) or len(s.topic) > 249:
        raise SettingsError(f"topic: {s.topic!r} is not a valid Kafka topic name")
    if not s.group:
        raise SettingsError("group: must not be empty")
    checks: list[tuple[bool, str]] = [
        *((low <= getattr(s, name) <= high, f"{name}: must be {low:g}..{high:g} seconds")
          for name, (low, high) in DURATIONS.items()),
        (1 <= s.partitions <= 10_000, "partitions: must be 1..10000"),
        (1 <= s.replication <= 32, "replication: must be 1..32"),
        (1_000 <= s.session_timeout_ms <= 300_000, "session_timeout_ms: must be 1000..300000"),
        (s.proxy_timeout == 0 or MIN_SECONDS <= s.proxy_timeout <= 600,
         f"proxy_timeout: must be 0 (derived) or {MIN_SECONDS:g}..600 seconds"),
        (1_024 <= s.max_body <= 64 * 1024 * 1024, "max_body: must be 1024..67108864 bytes"),
        (1 <= s.http_max_connections <= 1_000_000, "http_max_connections: must be 1..1000000"),
        (1_024 <= s.http_max_head_bytes <= 1024 * 1024,
         "http_max_head_bytes: must be 1024..1048576 bytes"),
        (1 <= s.max_batch <= 100_000, "max_batch: must be 1..100000"),
        (s.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
         "log_level: must be DEBUG, INFO, WARNING or ERROR"),
        (s.log_format in FORMATS, "log_format: must be kv or json"),
        (s.compression in COMPRESSION, f"compression: must be one of {', '.join(COMPRESSION)}"),
        (1_000 <= s.cluster_auth_nonces <= 10_000_000,
         "cluster_auth_nonces: must be 1000..10000000"),
        (1 <= s.feed_max_subscribers <= 100_000, "feed_max_subscribers: must be 1..100000"),
        (0 <= s.feed_max_resumed <= s.feed_max_subscribers,
         "feed_max_resumed: must be 0..feed_max_subscribers"),
    ]
    for ok, message in checks:
        if not ok:
            raise SettingsError(message)
    if s.proxy_timeout and s.proxy_timeout < s.owner_worst_case:
        raise SettingsError(
            f"proxy_timeout: {s.proxy_timeout}s is shorter than an owner may take to answer "
            f"a write ({s.owner_worst_case}s = 2*write_timeout + catchup_timeout + "
            f"{TABLE_WAIT + PROXY_MARGIN:g}); set 0 to derive it")
    _validate_security(s)
    _validate_tls(s)
    return s


def _validate_tls(s: Settings) -> None:
    for name in ("tls_certfile", "tls_keyfile", "tls_cafile"):
        path = getattr(s, name)
        if path and not os.path.isfile(path):
            raise SettingsError(f"{name}: no such file {path!r}")
    if bool(s.tls_certfile) != bool(s.tls_keyfile):
        raise SettingsError("tls_certfile and tls_keyfile go together (the node's HTTPS)")
    if s.tls_cafile and not s.tls_certfile:
        raise SettingsError("tls_cafile needs tls_certfile: peers speak TLS only when every "
                            "node does")
    if s.tls_certfile:
        try:  # fail at start, in one line, rather than at the first connection
            tls.server_context(s.tls_certfile, s.tls_keyfile)
            tls.peer_context(s.tls_cafile)
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(f"tls_certfile/tls_keyfile/tls_cafile: cannot be used: "
                                f"{exc}") from None


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
    kind = FIELDS[field][0]
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
    parser = _Parser(prog="kstate node", add_help=True, allow_abbrev=False)
    for name, (_, text) in FIELDS.items():
        if name not in ENV_ONLY:
            parser.add_argument(flag_name(name), dest=name, default=None,
                                help=f"{text} [env {env_name(name)}]")
        else:  # known, so that it is refused by name and its value is never echoed
            parser.add_argument(flag_name(name), dest=name, default=None,
                                help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv))
    for name in sorted(ENV_ONLY):
        if getattr(args, name, None) is not None:
            raise SettingsError(f"{flag_name(name)}: a secret is not taken as a flag (ps "
                                f"shows flags to every user); use {env_name(name)} or "
                                f"{flag_name(name + '_file')}")
    values: dict[str, object] = {}
    for name in FIELDS:
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = _convert(name, flag, "flag")
        elif env_name(name) in environ:
            values[name] = _convert(name, environ[env_name(name)], env_name(name))
    for file_field, secret in SECRET_FILES.items():
        path = values.get(file_field)
        if path:
            if secret in values:
                raise SettingsError(f"{secret}: set both by {env_name(secret)} and by "
                                    f"{file_field}; keep one")
            values[secret] = _convert(secret, read_secret_file(str(path), file_field),
                                      file_field)
    settings = dataclasses.replace(Settings(), **values)  # type: ignore[arg-type]
    return validate(settings)


def read_secret_file(path: str, what: str) -> str:
    """A secret from a file: its UTF-8 text without one trailing newline. Raises
    SettingsError (never quoting the content). kstate does not check the file's
    permissions (deploy/SECURITY.md says why)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise SettingsError(f"{what}: cannot read {path!r}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET_FILE:
        raise SettingsError(f"{what}: {path!r} is larger than {MAX_SECRET_FILE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{what}: {path!r} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise SettingsError(f"{what}: {path!r} is empty")
    return text
