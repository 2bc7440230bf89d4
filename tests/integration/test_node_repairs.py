"""Repairs against a real broker: a zombie owner's late write (a record whose
``kstate-epoch`` is below the partition's newest marker), written with Kafka's Java
client, becomes its key's latest record while the owner may not write the partition.
Compaction would keep only that ignored record; the owner restates the key (same
value, same version in ``kstate-version``) once its own marker is applied, whether it
replays the zombie's record as a new owner or sees it land while it is claiming the
partition again. The repair is read back from the topic itself."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest
import trio

from kstate.core.records import EPOCH_HEADER, EPOCH_STRIDE, VERSION_HEADER, marker
from tools import topic as load
from tools.procs import Node, wait_ready
from tools.producers.run import java_produce

pytestmark = pytest.mark.timeout(240)

EMAIL = "repaired@example.com"  # one partition: every key is in partition 0
WITHIN_S = 30.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def marker_lines(epoch: int) -> list[str]:
    key, _, _ = marker(0, epoch)
    return [f"header {EPOCH_HEADER} {epoch}", f"rawkey {b64(key)} -"]


def zombie_lines(epoch: int) -> list[str]:
    return [f"header {EPOCH_HEADER} {epoch}", f"put {EMAIL} zombie"]


async def wait_repair(client: httpx.AsyncClient, node: Node, bootstrap: str, topic: str,
                      zombie_offset: int, name: str) -> None:
    """The key's latest record in the topic is the owner's restatement of ``name``."""
    with trio.fail_after(WITHIN_S):
        while True:
            records = (await load.read_all(bootstrap, topic, partitions=1))[0]
            latest = [r for r in records if r.key == EMAIL.encode()][-1]
            if latest.offset > zombie_offset:
                break
            await trio.sleep(0.5)
    stats = (await client.get(f"{node.base}/readyz")).json()["partitions"]["0"]
    headers = dict(latest.headers)
    assert latest.value == orjson.dumps({"name": name, "email": EMAIL})
    assert headers[EPOCH_HEADER] == str(stats["own_epoch"]).encode()
    assert VERSION_HEADER in headers
    r = await client.get(f"{node.base}/users/{EMAIL}")
    assert (r.status_code, r.json()["name"]) == (200, name), r.text


async def test_a_new_owner_repairs_a_key_it_replays_shadowed(make_node, client,
                                                             kafka_bootstrap, names):
    """The old owner (epoch A) acknowledged a write; a newer owner claimed (epoch B);
    the old owner's late write landed after that marker. No node ran since: the next
    owner replays the key shadowed, and repairs it once it has claimed."""
    topic = names["topic"]
    old, new = EPOCH_STRIDE, 2 * EPOCH_STRIDE
    sent = await java_produce(kafka_bootstrap, topic, [
        "partition 0", *marker_lines(old), f"header {EPOCH_HEADER} {old}",
        f"put {EMAIL} acked", *marker_lines(new), *zombie_lines(old)],
        create_partitions=1)
    node = make_node(KSTATE_PARTITIONS="1")
    await wait_ready(client, node, timeout=60)
    await wait_repair(client, node, kafka_bootstrap, topic, sent[-1].offset, "acked")


async def test_a_key_shadowed_while_the_owner_claims_again_is_repaired(
        make_node, client, kafka_bootstrap, names):
    """A foreign marker takes the partition from its owner, and a late write of the
    owner's old epoch lands right after it: the key is shadowed while the owner may not
    write. The owner claims the partition again (a rebalance), then repairs the key."""
    topic = names["topic"]
    node = make_node(KSTATE_PARTITIONS="1")
    await wait_ready(client, node, timeout=60)
    r = await client.put(f"{node.base}/users/{EMAIL}", json={"name": "acked"})
    assert r.status_code == 201, r.text
    own = (await client.get(f"{node.base}/readyz")).json()["partitions"]["0"]["own_epoch"]
    foreign = own + 5 * EPOCH_STRIDE
    sent = await java_produce(kafka_bootstrap, topic, [
        "partition 0", *marker_lines(foreign), *zombie_lines(own)])
    await wait_repair(client, node, kafka_bootstrap, topic, sent[-1].offset, "acked")
    stats = (await client.get(f"{node.base}/readyz")).json()["partitions"]["0"]
    assert stats["own_epoch"] > foreign
