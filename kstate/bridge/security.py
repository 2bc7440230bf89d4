"""How a Kafka client of the bridge logs in: TLS and SASL arguments for aiokafka, and
a first login that tells a refused login (never retried) from a broker not up yet."""

from __future__ import annotations

import functools
import logging
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import KafkaAuthFailed

log = logging.getLogger(__name__)

# What a broker answers to a login it refuses (not: a broker that is not up yet).
AUTH_ERRORS = (SaslAuthenticationFailed, AuthenticationFailedError,
               AuthenticationMethodNotSupported, UnsupportedSaslMechanismError,
               ssl.SSLCertVerificationError)


@functools.lru_cache(maxsize=4)
def _ssl_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(
        cafile=cafile or None, certfile=certfile or None, keyfile=keyfile or None)
    return context


def security_args(c: KafkaConfig) -> dict[str, Any]:
    """aiokafka's security arguments (the password included: never log them)."""
    out: dict[str, Any] = {"security_protocol": c.security_protocol}
    if c.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = _ssl_context(c.ssl_cafile, c.ssl_certfile, c.ssl_keyfile)
    if c.security_protocol.startswith("SASL_"):
        out.update(sasl_mechanism=c.sasl_mechanism, sasl_plain_username=c.sasl_username,
                   sasl_plain_password=c.sasl_password)
    return out


def client_args(c: KafkaConfig) -> dict[str, Any]:
    """What every aiokafka client of the bridge is built with."""
    return {"bootstrap_servers": c.servers, "client_id": "kstate", **security_args(c)}


async def check_access(c: KafkaConfig) -> None:
    """Log in to the first bootstrap server that answers. Raises KafkaAuthFailed if
    one refuses the credentials, the TLS handshake or this node's client certificate;
    a server that does not answer is left to the caller's retries."""
    kwargs = security_args(c)
    for server in c.servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(host, int(port), client_id="kstate",
                                     request_timeout_ms=10_000, **kwargs)
        except AUTH_ERRORS as exc:
            raise _refused(c, server, exc) from None
        except (TimeoutError, OSError, KafkaError) as exc:
            alert = tls_alert(exc)
            if alert is None:
                continue  # not up yet or unreachable: the next server; the caller retries
            raise _refused(c, server, alert) from None
        conn.close()
        return


def _refused(c: KafkaConfig, server: str, why: BaseException) -> KafkaAuthFailed:
    log.error("event=kafka_auth_failed server=%s protocol=%s mechanism=%s user=%s "
              "error=%r", server, c.security_protocol, c.sasl_mechanism, c.sasl_username, why)
    cert = f", client certificate {c.ssl_certfile!r}" if c.ssl_certfile else ""
    return KafkaAuthFailed(f"Kafka at {server} refused this node ({c.security_protocol}, "
                           f"user {c.sasl_username!r}{cert}): {why}")


def tls_alert(exc: BaseException) -> ssl.SSLError | None:
    """The TLS alert the server sent, if that is what broke the connection. With TLS
    1.3 the client's handshake is over before the server has checked the client's
    certificate: a server that refuses it sends an alert (bad certificate, unknown CA,
    certificate required) that the client reads only with the first answer it awaits,
    and aiokafka reports it as a closed connection whose cause is that alert. A
    connection merely closed or reset (a broker not up yet) carries no alert."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if (isinstance(cur, ssl.SSLError)
                and not isinstance(cur, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
                and "ALERT" in str(getattr(cur, "reason", None) or "").upper()):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None
