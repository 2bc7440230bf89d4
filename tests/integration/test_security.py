"""Security over real sockets: nodes logging in to a SASL broker (PLAIN and
SCRAM-SHA-256; a wrong password stops the node at once, clearly, without printing the
password), TLS settings wired into aiokafka, secrets kept out of reprs. The API token
and node signatures: tests/integration/test_cluster_auth.py."""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kstate.bridge.security import client_args
from kstate.settings import SettingsError, load_settings
from tests.support.kafka_modes import run_dir
from tools import topic as load
from tools.procs import REPO, Node, wait_ready, wait_stable

# One worker runs this module: its broker (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_security")

KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
SASL_USER = "kstate-node"
PARTITIONS = 10
# Two nodes started at once on a new topic can both "create" it, and the loser may
# read 0 partitions from metadata (a 500 on every request): the tests let the first
# node make the topic before the second starts. (Reported for kstate/bridge/admin.py.)


# -- settings and TLS wiring (no broker) ------------------------------------------

def test_secrets_stay_out_of_repr_and_flags():
    env = {"KSTATE_SECURITY_PROTOCOL": "SASL_SSL", "KSTATE_SASL_MECHANISM": "SCRAM-SHA-512",
           "KSTATE_SASL_USERNAME": "alice", "KSTATE_SASL_PASSWORD": "pw-Zq9 with space ",
           "KSTATE_API_TOKEN": "tok-0123456789abcdef"}
    s = load_settings([], env)
    assert s.sasl_password == "pw-Zq9 with space "  # taken as it is
    assert s.api_token == "tok-0123456789abcdef"
    assert "pw-Zq9" not in repr(s)
    assert "tok-0123456789abcdef" not in repr(s)
    assert "alice" in repr(s)
    with pytest.raises((SystemExit, SettingsError)):
        load_settings(["--sasl-password", "x"], {})  # env only: ps shows flags


@pytest.mark.parametrize(("env", "message"), [
    ({"KSTATE_SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
    ({"KSTATE_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KSTATE_SASL_USERNAME": "u"},
     "KSTATE_SASL_PASSWORD"),
    ({"KSTATE_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KSTATE_SASL_MECHANISM": "GSSAPI",
      "KSTATE_SASL_USERNAME": "u", "KSTATE_SASL_PASSWORD": "p"}, "sasl_mechanism"),
    ({"KSTATE_SSL_CAFILE": "/nonexistent/ca.pem"}, "ssl_cafile"),
    ({"KSTATE_API_TOKEN": "short"}, "api_token"),
])
def test_invalid_security_settings_fail_fast(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings([], env)


def _make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA plus a client certificate and key (openssl CLI)."""
    ca_key, ca, key, csr, cert = (folder / n for n in
                                  ("ca.key", "ca.pem", "client.key", "client.csr",
                                   "client.pem"))

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(ca), "-days", "2", "-subj", "/CN=kstate-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=kstate-node")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2")
    return ca, cert, key


def test_tls_and_sasl_settings_reach_aiokafka(tmp_path: Path):
    ca, cert, key = _make_ca(tmp_path)
    s = load_settings([], {"KSTATE_SECURITY_PROTOCOL": "SASL_SSL",
                           "KSTATE_SASL_MECHANISM": "SCRAM-SHA-256",
                           "KSTATE_SASL_USERNAME": "bob", "KSTATE_SASL_PASSWORD": "pw",
                           "KSTATE_SSL_CAFILE": str(ca), "KSTATE_SSL_CERTFILE": str(cert),
                           "KSTATE_SSL_KEYFILE": str(key)})
    kwargs = client_args(s.kafka())
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kwargs["sasl_plain_username"] == "bob"
    assert kwargs["sasl_plain_password"] == "pw"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert {"commonName": "kstate-test-ca"} in subjects
    plain = client_args(load_settings([], {}).kafka())
    assert plain["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in plain
    assert "sasl_plain_password" not in plain


# -- a SASL broker ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[tuple[str, str]]:
    """A broker of our own whose clients must log in as SASL_USER: (bootstrap, password)."""
    name = f"sasl-{os.getpid()}"
    password = "pw-" + secrets.token_hex(12)
    res = subprocess.run([str(KAFKA_SH), "up-sasl", name, SASL_USER, password],
                         env={**os.environ, "KAFKA_PORT": "0"}, capture_output=True,
                         text=True, timeout=600)
    if res.returncode != 0:
        pytest.fail(f"SASL Kafka did not start:\n{res.stderr}", pytrace=False)
    try:
        yield res.stdout.strip().splitlines()[-1], password
    finally:
        subprocess.run([str(KAFKA_SH), "down", name], timeout=60, check=False)
        shutil.rmtree(run_dir(name), ignore_errors=True)


@pytest.fixture
def sasl_node(sasl_broker, names, artifacts, tmp_path) -> Iterator[object]:
    """sasl_node(mechanism, password, via_file=False) -> a started Node on the SASL
    broker (the password in KSTATE_SASL_PASSWORD, or in a file named by
    KSTATE_SASL_PASSWORD_FILE)."""
    nodes: list[Node] = []

    def make(mechanism: str, password: str, via_file: bool = False) -> Node:
        secret = {"KSTATE_SASL_PASSWORD": password}
        if via_file:
            path = tmp_path / f"password-{len(nodes)}"
            path.write_text(password + "\n")
            secret = {"KSTATE_SASL_PASSWORD_FILE": str(path)}
        node = Node(bootstrap=sasl_broker[0], topic=names["topic"], group=names["group"],
                    log_dir=artifacts, extra={
                        "KSTATE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                        "KSTATE_SASL_MECHANISM": mechanism,
                        "KSTATE_SASL_USERNAME": SASL_USER, **secret})
        nodes.append(node)
        return node.start()

    yield make
    for node in nodes:
        node.stop_now()


async def test_sasl_nodes_log_in_with_plain_and_scram(sasl_broker, sasl_node, client):
    _, password = sasl_broker
    a = sasl_node("PLAIN", password)
    await wait_ready(client, a)  # the first node creates the topic (note above)
    b = sasl_node("SCRAM-SHA-256", password, via_file=True)
    await wait_stable(client, [a, b], PARTITIONS)
    for i in range(6):  # some owned by each: local and forwarded writes and reads
        email = f"sasl{i}@example.com"
        writer, reader = (a, b) if i % 2 else (b, a)
        r = await client.put(f"{writer.base}/users/{email}", json={"name": f"S{i}"})
        assert r.status_code == 201, r.text
        r = await client.get(f"{reader.base}/users/{email}")
        assert r.status_code == 200, r.text
        assert r.content == load.user_bytes(email, f"S{i}")
    for node in (a, b):
        assert password not in node.log_text()


async def test_wrong_password_stops_the_node_with_a_clear_error(sasl_broker, sasl_node):
    wrong = "not-" + secrets.token_hex(8)
    node = sasl_node("PLAIN", wrong)
    started = time.monotonic()
    code = await node.wait_exit(30)
    assert code != 0
    assert time.monotonic() - started < 30  # no minute of retries: a refusal is final
    text = node.log_text()
    lines = [line for line in text.splitlines() if "event=kafka_auth_failed" in line]
    assert len(lines) == 1, text[-3000:]
    assert f"user={SASL_USER} " in lines[0]
    assert "mechanism=PLAIN" in lines[0]
    assert "Authentication failed" in lines[0]
    assert "refused this node" in text  # the exception the node exits with
    assert wrong not in text
    assert sasl_broker[1] not in text
