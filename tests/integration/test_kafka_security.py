"""kstate's Kafka security settings against a real TLS + SASL broker (``kafka.sh
up-secure``, certificates from deploy/tls/make-certs.sh): every protocol and mechanism
kstate offers writes and reads a record through the bridge; a wrong password or a
server certificate from another CA, or a client certificate from another CA, is refused
at once with KafkaAuthFailed (a node exits 2, one line); a real ``kstate node`` serves
over SASL_SSL + SCRAM-SHA-512."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bridge import KafkaAuthFailed, bridge_settings, round_trip
from tests.support.kafka_modes import SecureBroker, make_certs, secure_broker
from tools import topic as load
from tools.procs import Node, wait_ready

# One worker runs this module: its broker (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_kafka_security")

USER = "kstate-sec"
REFUSED_WITHIN = 10.0  # seconds: a refusal is final, not a minute of retries


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    with secure_broker("secure", certs, USER, "pw-" + secrets.token_hex(12)) as b:
        yield b


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates of a CA the broker does not know."""
    return make_certs(tmp_path_factory.mktemp("other-certs"))


def _security(b: SecureBroker, protocol: str, mechanism: str = "", client_cert: bool = False,
              password: str | None = None, ca: Path | None = None) -> dict[str, str]:
    out = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        out["ssl_cafile"] = str((ca or b.certs) / "ca.pem")
    if client_cert:
        out.update(ssl_certfile=str(b.certs / "client.pem"),
                   ssl_keyfile=str(b.certs / "client-key.pem"))
    if mechanism:
        out.update(sasl_mechanism=mechanism, sasl_username=b.user,
                   sasl_password=b.password if password is None else password)
    return out


@pytest.mark.parametrize(("protocol", "mechanism", "client_cert"), [
    ("SSL", "", False),
    ("SSL", "", True),
    ("SASL_SSL", "SCRAM-SHA-256", False),
    ("SASL_SSL", "SCRAM-SHA-512", False),
    ("SASL_SSL", "PLAIN", False),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512", False),
])
async def test_write_and_read_back(broker: SecureBroker, names: dict[str, str], protocol: str,
                                   mechanism: str, client_cert: bool) -> None:
    s = bridge_settings(broker.listeners[protocol], names["topic"],
                        **_security(broker, protocol, mechanism, client_cert))
    value = f"over {protocol} {mechanism} cert={client_cert}".encode()
    assert await round_trip(s, value) == 0


@pytest.mark.parametrize(("protocol", "mechanism"), [
    ("SASL_SSL", "SCRAM-SHA-512"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
])
async def test_wrong_password_is_refused_at_once(broker: SecureBroker, names: dict[str, str],
                                                 protocol: str, mechanism: str) -> None:
    s = bridge_settings(broker.listeners[protocol], names["topic"],
                        **_security(broker, protocol, mechanism, password="wrong-password"))
    started = time.monotonic()
    with pytest.raises(KafkaAuthFailed, match="refused this node"):
        await round_trip(s, b"never written")
    assert time.monotonic() - started < REFUSED_WITHIN


@pytest.mark.parametrize(("protocol", "mechanism"), [("SSL", ""), ("SASL_SSL", "SCRAM-SHA-512")])
async def test_server_certificate_from_another_ca_is_refused_at_once(
        broker: SecureBroker, other_ca: Path, names: dict[str, str], protocol: str,
        mechanism: str) -> None:
    s = bridge_settings(broker.listeners[protocol], names["topic"],
                        **_security(broker, protocol, mechanism, ca=other_ca))
    started = time.monotonic()
    with pytest.raises(KafkaAuthFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await round_trip(s, b"never written")
    assert time.monotonic() - started < REFUSED_WITHIN


def _foreign_client_cert(b: SecureBroker, other_ca: Path) -> dict[str, str]:
    """SSL with the broker's CA but a client certificate another CA signed: the broker
    requests client certificates and refuses one it cannot verify."""
    security = _security(b, "SSL")
    security.update(ssl_certfile=str(other_ca / "client.pem"),
                    ssl_keyfile=str(other_ca / "client-key.pem"))
    return security


async def test_client_certificate_from_another_ca_is_refused_at_once(
        broker: SecureBroker, other_ca: Path, names: dict[str, str]) -> None:
    # With TLS 1.3 the client's handshake succeeds before the broker checks the client's
    # certificate; the refusal is an alert read with the first answer, not a failed
    # handshake, and must not be taken for a broker that is not up yet.
    s = bridge_settings(broker.listeners["SSL"], names["topic"],
                        **_foreign_client_cert(broker, other_ca))
    started = time.monotonic()
    with pytest.raises(KafkaAuthFailed, match=r"refused this node .*client certificate .*ALERT"):
        await round_trip(s, b"never written")
    assert time.monotonic() - started < REFUSED_WITHIN


async def test_a_node_with_a_client_certificate_from_another_ca_stops_at_once(
        broker: SecureBroker, other_ca: Path, names: dict[str, str], artifacts: Path) -> None:
    extra = {f"KSTATE_{k.upper()}": v
             for k, v in _foreign_client_cert(broker, other_ca).items()}
    node = Node(bootstrap=broker.listeners["SSL"], topic=names["topic"],
                group=names["group"], log_dir=artifacts, extra=extra)
    try:
        started = time.monotonic()
        node.start()
        code = await node.wait_exit(60)
        text = node.log_text()
        # a refusal, like the others (exit 2, one line), not a crash with a traceback
        assert code == 2, text[-3000:]
        assert time.monotonic() - started < 30  # not a minute of retries: a refusal is final
        lines = [line for line in text.splitlines() if "event=kafka_auth_failed" in line]
        assert len(lines) == 1, text[-3000:]
        assert "protocol=SSL" in lines[0]
        assert "ALERT" in lines[0]
        refused = [line for line in text.splitlines() if "event=node_refused" in line]
        assert len(refused) == 1, text[-3000:]
        assert "reason=kafka_auth_failed" in refused[0], refused[0]
        assert "Traceback" not in text, text[-3000:]
        assert "event=kafka_wait" not in text  # never taken for a broker that is not up
    finally:
        node.stop_now()


async def test_node_serves_over_sasl_ssl_scram_sha_512(
        broker: SecureBroker, names: dict[str, str], artifacts: Path,
        client: httpx.AsyncClient) -> None:
    env = {"KSTATE_SECURITY_PROTOCOL": "SASL_SSL", "KSTATE_SASL_MECHANISM": "SCRAM-SHA-512",
           "KSTATE_SASL_USERNAME": broker.user, "KSTATE_SASL_PASSWORD": broker.password,
           "KSTATE_SSL_CAFILE": str(broker.certs / "ca.pem")}
    node = Node(bootstrap=broker.listeners["SASL_SSL"], topic=names["topic"],
                group=names["group"], log_dir=artifacts, extra=env)
    try:
        node.start()
        await wait_ready(client, node, timeout=60)
        email = "tls-scram@example.com"
        r = await client.put(f"{node.base}/users/{email}", json={"name": "Scram Tls"})
        assert r.status_code == 201, r.text
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 200, r.text
        assert r.content == load.user_bytes(email, "Scram Tls")
        assert broker.password not in node.log_text()
    finally:
        node.stop_now()
