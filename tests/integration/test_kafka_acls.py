"""kstate against a broker that enforces ACLs (``KAFKA_ACLS=1 kafka.sh up-secure``: the
StandardAuthorizer, nothing allowed without an ACL). A node logged in as the SASL user
serves with exactly the ACLs README ("Kafka ACLs") lists; without any one of them, or
with one revoked while it runs, it exits 2 with one line
(``event=node_refused reason=kafka_not_authorized``) naming the operation and the
resource, never a traceback (it exited 1 with one, or answered 503 for good)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import acls
from tests.support.acls import Acl
from tests.support.kafka_modes import SecureBroker, make_certs, secure_broker
from tools.procs import Node, wait_ready

# One worker runs this module: its broker (a module fixture) is started once, and the
# ACLs granted to its one user must not mix across tests run side by side.
pytestmark = pytest.mark.xdist_group("test_kafka_acls")

USER = "kstate-acl"
PRINCIPAL = f"User:{USER}"
EXIT_WITHIN = 30.0  # seconds: a refusal is final, not a minute of retries


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    with secure_broker("acls", certs, USER, "pw-" + secrets.token_hex(12), acls=True) as b:
        yield b


class Grants:
    """ACLs of the test's user, all revoked when the test ends: a Write left on any
    topic would let the next test's idempotent producer start."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.held: set[Acl] = set()

    async def grant(self, *items: Acl) -> None:
        await acls.grant(self.admin, PRINCIPAL, *items)
        self.held |= set(items)

    async def revoke(self, *items: Acl) -> None:
        await acls.revoke(self.admin, PRINCIPAL, *items)
        self.held -= set(items)


@pytest.fixture
async def grants(broker: SecureBroker) -> AsyncIterator[Grants]:
    g = Grants(broker.listeners["PLAINTEXT"])
    try:
        yield g
    finally:
        if g.held:
            await g.revoke(*g.held)


def _node(broker: SecureBroker, names: dict[str, str], artifacts: Path) -> Node:
    env = {"KSTATE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "KSTATE_SASL_MECHANISM": "SCRAM-SHA-512",
           "KSTATE_SASL_USERNAME": broker.user, "KSTATE_SASL_PASSWORD": broker.password}
    return Node(bootstrap=broker.listeners["SASL_PLAINTEXT"], topic=names["topic"],
                group=names["group"], log_dir=artifacts, extra=env)


async def _refused(node: Node, *named: str) -> str:
    """Wait for ``node`` to exit; it must exit 2 with one refusal line naming ``named``
    and no traceback. Returns that line."""
    started = time.monotonic()
    code = await node.wait_exit(EXIT_WITHIN + 10)
    text = node.log_text()
    assert code == 2, text[-3000:]
    assert time.monotonic() - started < EXIT_WITHIN, text[-3000:]
    lines = [line for line in text.splitlines() if "event=node_refused" in line]
    assert len(lines) == 1, text[-3000:]
    assert "reason=kafka_not_authorized" in lines[0], lines[0]
    for word in (PRINCIPAL, *named):
        assert word in lines[0], lines[0]
    assert "Traceback" not in text, text[-3000:]
    assert "node_crashed" not in text, text[-3000:]
    return lines[0]


async def test_a_node_serves_with_the_acls_readme_lists(
        broker: SecureBroker, grants: Grants, names: dict[str, str], artifacts: Path,
        client: httpx.AsyncClient) -> None:
    await acls.create_topic(broker.listeners["PLAINTEXT"], names["topic"])
    await grants.grant(*acls.node_acls(names["topic"], names["group"]))
    node = _node(broker, names, artifacts)
    try:
        node.start()
        await wait_ready(client, node, timeout=60)
        r = await client.put(f"{node.base}/users/acl@example.com", json={"name": "Acl"})
        assert r.status_code == 201, r.text
        r = await client.get(f"{node.base}/users/acl@example.com")
        assert r.status_code == 200, r.text
        text = node.log_text()
        assert "Traceback" not in text
        # its configs were described: the topic is compacted, and said so
        assert "event=topic_not_compacted" not in text
    finally:
        node.stop_now()


# ACLs README lists, missing at start (indexes in acls.node_acls), and what the
# refusal names. Describe alone is not needed: Read, Write and DescribeConfigs each
# imply it.
MISSING = {
    "every topic ACL": ((0, 1, 2, 3), ("Describe", "topic")),
    "topic DescribeConfigs": ((1,), ("DescribeConfigs", "topic")),
    "topic Read": ((2,), ("Read", "topic")),
    "topic Write": ((3,), ("Write", "topic")),
    "group Read": ((4,), ("Read", "group")),
}


@pytest.mark.parametrize("missing", list(MISSING))
async def test_a_node_missing_one_acl_exits_2_naming_it(
        broker: SecureBroker, grants: Grants, names: dict[str, str], artifacts: Path,
        missing: str) -> None:
    await acls.create_topic(broker.listeners["PLAINTEXT"], names["topic"])
    needed = acls.node_acls(names["topic"], names["group"])
    left_out, named = MISSING[missing]
    await grants.grant(*(a for i, a in enumerate(needed) if i not in left_out))
    node = _node(broker, names, artifacts)
    try:
        node.start()
        line = await _refused(node, *named)
        kind = named[1]
        assert repr(names[kind]) in line, line
    finally:
        node.stop_now()


# Each ACL revoked while the node runs (after a write), and what the refusal names.
REVOKED = {
    "topic Read": (2, ("Read", "topic")),
    "topic Write": (3, ("Write", "topic")),
    "group Read": (4, ("Read", "group")),
}


@pytest.mark.parametrize("revoked", list(REVOKED))
async def test_an_acl_revoked_while_a_node_runs_stops_it_with_one_line(
        broker: SecureBroker, grants: Grants, names: dict[str, str], artifacts: Path,
        client: httpx.AsyncClient, revoked: str) -> None:
    await acls.create_topic(broker.listeners["PLAINTEXT"], names["topic"])
    needed = acls.node_acls(names["topic"], names["group"])
    await grants.grant(*needed)
    index, named = REVOKED[revoked]
    node = _node(broker, names, artifacts)
    try:
        node.start()
        await wait_ready(client, node, timeout=60)
        r = await client.put(f"{node.base}/users/before@example.com", json={"name": "B"})
        assert r.status_code == 201, r.text
        await grants.revoke(needed[index])
        # a write after the revoke is never acknowledged (Write: refused; the others:
        # the node stops); what it answers, if anything, is not 2xx
        try:
            r = await client.put(f"{node.base}/users/after@example.com", json={"name": "A"})
        except httpx.HTTPError:
            pass
        else:
            assert r.status_code == 503 or (r.status_code == 201 and index != 3), r.text
        line = await _refused(node, *named)
        assert repr(names[named[1]]) in line, line
    finally:
        node.stop_now()
