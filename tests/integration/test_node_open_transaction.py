"""Another producer's open transaction (README, "Other producers" and the row "another
program leaves a transaction open on a partition"), against a real broker: Kafka's Java
producer begins a transaction on both partitions, writes a record in each and dies in
it (``hang``: no commit, no abort, no close), so the transaction stays open until the
coordinator aborts it, ``transaction.timeout.ms`` after it began. kstate reads committed
records only, so everything after the transaction's first record is held back, kstate's
own writes included. Meanwhile:

- reads are answered from what was committed before the transaction;
- a write is produced, then answered 503 ``write_timeout`` (it may have been applied:
  it lands when the transaction ends), and a write of the same key 503 ``key_busy``;
- a node that joins and takes a partition over replays it up to the transaction and
  cannot apply its owner-epoch marker: its writes get 503 ``claiming``.

Once the coordinator aborts it, the held write is applied, the transaction's records
never are, and both owners take writes again."""

from __future__ import annotations

import time

import httpx
import pytest
import trio

from tests.support.owners import emails_in
from tools.procs import Node, wait_ready
from tools.producers.run import java_produce

PARTITIONS = 2
WRITE_TIMEOUT = 1.5
# Long enough for the observations below (a second node's start and rebalance among
# them) to happen while the transaction is open, on a loaded machine; the broker aborts
# it within its check interval (10 s by default) after that.
TX_TIMEOUT_MS = 15_000
ENDS_WITHIN = TX_TIMEOUT_MS / 1000 + 10 + 15

pytestmark = pytest.mark.timeout(240)


def emails(partition: int, tag: str, n: int) -> list[str]:
    return emails_in(partition, PARTITIONS, n, tag)


async def owner_of(client: httpx.AsyncClient, node: Node, topic: str,
                   partition: int) -> str | None:
    """The partition's owner in the node's routing table (None before it has one)."""
    table = (await client.get(f"{node.base}/groupinfo")).json()
    return table.get(f"{topic}-{partition}")


async def test_an_open_transaction_holds_its_partitions_writes_until_it_ends(
        make_node, client, kafka_bootstrap, names):
    topic = names["topic"]
    a = make_node(KSTATE_PARTITIONS=str(PARTITIONS), KSTATE_WRITE_TIMEOUT=str(WRITE_TIMEOUT))
    await wait_ready(client, a)
    users = {p: emails(p, f"held{p}-", 3) for p in range(PARTITIONS)}
    for p in range(PARTITIONS):
        r = await client.put(f"{a.base}/users/{users[p][0]}", json={"name": "before"})
        assert r.status_code == 201, r.text
    in_tx = [emails(p, f"intx{p}-", 1)[0] for p in range(PARTITIONS)]

    opened = time.monotonic()
    await java_produce(kafka_bootstrap, topic, [
        "begin", "partition 0", f"put {in_tx[0]} In Tx", "partition 1",
        f"put {in_tx[1]} In Tx", "hang"],
        transactional_id=f"hang-{topic}", transaction_timeout_ms=TX_TIMEOUT_MS)

    # reads: what was committed before the transaction
    for p in range(PARTITIONS):
        r = await client.get(f"{a.base}/users/{users[p][0]}")
        assert (r.status_code, r.json()) == (200, {"name": "before", "email": users[p][0]})
        r = await client.get(f"{a.base}/users/{in_tx[p]}")
        assert r.status_code == 404, r.text

    # a write: produced, held back behind the transaction, answered write_timeout
    held = users[0][0]
    r = await client.put(f"{a.base}/users/{held}", json={"name": "held"})
    assert (r.status_code, r.json()["error"]) == (503, "write_timeout"), r.text
    r = await client.put(f"{a.base}/users/{held}", json={"name": "not this one"})
    assert (r.status_code, r.json()["error"]) == (503, "key_busy"), r.text

    # a second node takes a partition over: it cannot apply its marker
    b = make_node(KSTATE_PARTITIONS=str(PARTITIONS), KSTATE_WRITE_TIMEOUT=str(WRITE_TIMEOUT))
    claiming: set[int] = set()
    with trio.fail_after(60):
        while not claiming:
            assert b.alive(), b.log_text()[-3000:]
            for p in range(PARTITIONS):
                try:
                    if await owner_of(client, b, topic, p) != b.url:
                        continue
                    r = await client.put(f"{b.base}/users/{users[p][1]}",
                                         json={"name": "at the new owner"})
                except httpx.HTTPError:
                    continue
                assert r.status_code == 503, r.text
                assert r.json()["error"] in {"claiming", "catching_up", "rebalancing",
                                             "owner_not_reached", "no_owner"}, r.text
                if r.json()["error"] == "claiming":
                    claiming.add(p)
            await trio.sleep(0.2)
    # everything above happened while the transaction was open: the coordinator
    # cannot have aborted it yet
    assert time.monotonic() - opened < TX_TIMEOUT_MS / 1000, (
        "the observations took longer than the transaction's timeout")

    # the coordinator aborts it: the held write lands, the transaction's records never
    # do, and every partition takes writes again (at whichever node owns it)
    with trio.fail_after(ENDS_WITHIN):
        while True:
            r = await client.get(f"{a.base}/users/{held}")
            if r.status_code == 200 and r.json()["name"] == "held":
                break
            assert r.status_code in (200, 503), r.text
            await trio.sleep(0.3)
    for p in range(PARTITIONS):
        for node in (a, b):
            r = await client.get(f"{node.base}/users/{in_tx[p]}")
            assert r.status_code == 404, r.text
    with trio.fail_after(30):
        for p in range(PARTITIONS):
            while True:
                r = await client.put(f"{a.base}/users/{users[p][2]}", json={"name": "after"})
                if r.status_code in (200, 201):
                    break
                assert r.status_code == 503, r.text
                await trio.sleep(0.3)
            r = await client.get(f"{b.base}/users/{users[p][2]}")
            assert (r.status_code, r.json()["name"]) == (200, "after"), r.text
    assert a.alive()
    assert b.alive()
