"""A foreign owner marker (a mirrored topic, a restored backup, another kstate group on
the same topic), written with Kafka's Java client against a real broker: a record
``kstate:epoch:<p>:<E>`` with ``kstate-epoch: E`` above the owner's claim takes the
partition over while the group still assigns it to that owner. Nobody would serve it
until some unrelated rebalance; the owner asks for one, keeps the partition (sticky
plan), claims above the foreign marker, and serves writes again within a rebalance."""

from __future__ import annotations

import base64
import time

import pytest
import trio

from kstate.core.partitioner import partition_for
from kstate.core.records import EPOCH_HEADER, EPOCH_STRIDE, marker
from tools.procs import wait_stable
from tools.producers.run import java_produce

PARTITIONS = 2
SESSION_S = 6.0  # tools/procs.Node's KSTATE_SESSION_TIMEOUT_MS
# A rebalance: every member sees it at its next heartbeat (a sixth of the session
# timeout), revokes, rejoins; then the claim (one produce). A session timeout bounds it
# generously; without the rejoin the partition stays taken over for good.
BOUND_S = SESSION_S

pytestmark = pytest.mark.timeout(240)

# What README's row "a foreign owner marker lands" lets a client of the owner see until
# it has claimed the partition again: reads answered (fenced) with what it holds, or
# 503 `rebalancing` should Kafka hold records it has not applied; writes 503, none
# applied: `rebalancing` (the owner in every routing table, serving nothing), for a
# write under way when the marker landed `not_owner`, or, produced after the marker,
# `superseded` / `write_unconfirmed`; then, around the new claim, `catching_up` /
# `claiming`.
READ_CODES = {"rebalancing"}
WRITE_CODES = {"rebalancing", "not_owner", "superseded", "write_unconfirmed", "catching_up",
               "claiming"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_foreign_marker_above_the_owner_is_claimed_over_within_a_rebalance(
        make_node, client, kafka_bootstrap, names):
    a = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    b = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    table = await wait_stable(client, [a, b], PARTITIONS)
    owner = a if table[f"{names['topic']}-0"] == a.url else b
    email = next(f"mirror{i}@example.com" for i in range(10_000)
                 if partition_for(f"mirror{i}@example.com".encode(), PARTITIONS) == 0)
    r = await client.put(f"{owner.base}/users/{email}", json={"name": "before"})
    assert r.status_code == 201, r.text
    stats = (await client.get(f"{owner.base}/readyz")).json()["partitions"]["0"]
    foreign = stats["own_epoch"] + 5 * EPOCH_STRIDE
    key, _, _ = marker(0, foreign)
    await java_produce(kafka_bootstrap, names["topic"], [
        "partition 0", f"header {EPOCH_HEADER} {foreign}", f"rawkey {b64(key)} -"])
    taken_over = time.monotonic()

    # Writes answer again, from a claim above the foreign marker; reads answer
    # throughout.
    seen: set[tuple[str, int, str | None]] = set()
    with trio.fail_after(BOUND_S):
        while True:
            r = await client.get(f"{owner.base}/users/{email}")
            if r.status_code == 200:
                assert r.json()["name"] == "before", r.text
                seen.add(("GET", 200, None))
            else:
                assert (r.status_code, r.json()["error"] in READ_CODES) == (503, True), r.text
                seen.add(("GET", 503, r.json()["error"]))
            r = await client.put(f"{owner.base}/users/{email}", json={"name": "after"})
            if r.status_code == 200:
                break
            assert (r.status_code, r.json()["error"] in WRITE_CODES) == (503, True), r.text
            seen.add(("PUT", 503, r.json()["error"]))
            await trio.sleep(0.1)
    print("answers while it was taken over:", sorted(seen, key=str))
    stats = (await client.get(f"{owner.base}/readyz")).json()["partitions"]["0"]
    assert stats["epoch"] == stats["own_epoch"] > foreign
    print(f"writes answer again {time.monotonic() - taken_over:.2f} s after the marker")
    r = await client.get(f"{owner.base}/users/{email}")
    assert (r.status_code, r.json()["name"]) == (200, "after")
    log = owner.log_text()
    assert log.count("event=superseded_rejoin") == 1, log[-3000:]
    # the other member kept its partition and nobody asked twice
    assert "event=superseded_rejoin" not in (b if owner is a else a).log_text()
