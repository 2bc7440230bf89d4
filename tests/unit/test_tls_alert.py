"""Which broken connection is a broker's refusal of this node's TLS (kstate/bridge/
security.py): only one whose cause chain holds a TLS alert the server sent. A closed,
reset or cut connection is a broker not up yet, and is waited for."""

from __future__ import annotations

import ssl

from aiokafka.errors import KafkaConnectionError

from kstate.bridge.security import tls_alert


def _ssl_error(cls: type[ssl.SSLError], reason: str) -> ssl.SSLError:
    err = cls(1, f"[SSL: {reason}] {reason.lower()}")
    err.reason = reason  # what the ssl module sets on the errors it raises
    return err


def _closed_by(cause: BaseException | None) -> KafkaConnectionError:
    """What aiokafka raises: its reader task's error as the cause (aiokafka/conn.py)."""
    err = KafkaConnectionError("Connection at 127.0.0.1:9093 closed")
    err.__cause__ = cause
    return err


def test_an_alert_behind_a_closed_connection_is_a_refusal() -> None:
    for reason in ("SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                   "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE"):
        alert = _ssl_error(ssl.SSLError, reason)
        assert tls_alert(_closed_by(alert)) is alert
        assert tls_alert(alert) is alert


def test_an_alert_is_found_through_implicit_chaining_too() -> None:
    alert = _ssl_error(ssl.SSLError, "TLSV1_ALERT_UNKNOWN_CA")
    outer = KafkaConnectionError("Unable to bootstrap")
    outer.__context__ = _closed_by(alert)
    assert tls_alert(outer) is alert


def test_a_connection_merely_closed_or_reset_is_not_a_refusal() -> None:
    assert tls_alert(_closed_by(None)) is None
    assert tls_alert(_closed_by(ConnectionResetError(104, "reset by peer"))) is None
    assert tls_alert(ConnectionRefusedError(111, "refused")) is None
    assert tls_alert(TimeoutError()) is None
    # A TLS connection cut without an alert (the broker stopping mid-handshake).
    assert tls_alert(_closed_by(_ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"))) \
        is None
    assert tls_alert(_closed_by(_ssl_error(ssl.SSLError, "WRONG_VERSION_NUMBER"))) is None
    assert tls_alert(_closed_by(ssl.SSLError(1, "no reason attribute"))) is None


def test_a_cause_chain_that_loops_ends() -> None:
    a = KafkaConnectionError("a")
    b = KafkaConnectionError("b")
    a.__cause__, b.__cause__ = b, a
    assert tls_alert(a) is None
