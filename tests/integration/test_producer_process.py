"""The node's producer runs in a child process (kstate/bridge/producer_link.py). What a
client sees when that process dies: the writes it held, and those made before its
replacement is up, answer 503 (Kafka may or may not have them), never 5xx otherwise;
then writes succeed again with no acknowledged write lost. The process ends with its
node, whichever way the node ends, and only the node ends it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import trio

from kstate.core.partitioner import partition_for
from tools import topic as load
from tools.procs import Node, wait_ready

KEYS = [f"pp{i}@example.com" for i in range(8)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


async def _producer_pid(node: Node, other_than: int | None = None, timeout: float = 20.0
                        ) -> int:
    with trio.fail_after(timeout):
        while True:
            kids = [p for p in node.children() if p != other_than and _running(p)]
            if kids:
                assert len(kids) == 1, kids
                return kids[0]
            await trio.sleep(0.05)


async def _put(client: httpx.AsyncClient, node: Node, email: str, name: str) -> int:
    r = await client.put(f"{node.base}/users/{email}", json={"name": name, "email": email})
    assert r.status_code in (200, 201, 503), (r.status_code, r.text)
    if r.status_code == 503:
        assert r.json()["error"] in {"broker_unavailable", "write_unconfirmed"}, r.text
    return r.status_code


async def test_a_killed_producer_process_is_replaced_and_no_acknowledged_write_is_lost(
        make_node, client: httpx.AsyncClient) -> None:
    node = make_node()
    await wait_ready(client, node)
    acked: dict[str, str] = {}  # the last acknowledged name per key
    maybe: dict[str, set[str]] = {k: set() for k in KEYS}  # refused since then
    counts = {"ok": 0, "refused": 0}
    stop = trio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            email = KEYS[n % len(KEYS)]
            name = f"write {n}"
            n += 1
            if await _put(client, node, email, name) == 503:
                counts["refused"] += 1
                maybe[email].add(name)
            else:
                counts["ok"] += 1
                acked[email] = name
                maybe[email].clear()

    first = await _producer_pid(node)
    pids = [first]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        for _ in range(2):
            await trio.sleep(1.0)
            ok_before = counts["ok"]
            os.kill(pids[-1], signal.SIGKILL)
            pids.append(await _producer_pid(node, other_than=pids[-1]))
            with trio.fail_after(20):  # writes succeed again once the new one is up
                while counts["ok"] <= ok_before + 5:
                    await trio.sleep(0.05)
        stop.set()

    assert len(set(pids)) == 3, pids
    assert counts["refused"] >= 1, counts  # the kills really cut writes off
    assert node.log_text().count("event=producer_process_ended") == 2
    metrics = (await client.get(f"{node.base}/metrics")).text
    assert "kstate_producer_process_starts_total 3.0" in metrics
    for email in KEYS:
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 200, (email, r.status_code, r.text)
        # a refused write may or may not have applied; an acknowledged one must have
        assert r.json()["name"] in {acked[email], *maybe[email]}, (email, acked[email])
    print(f"producer process killed twice: {counts['ok']} writes acknowledged, "
          f"{counts['refused']} refused with 503")


async def test_the_producer_process_ends_with_its_node(make_node,
                                                       client: httpx.AsyncClient) -> None:
    node = make_node()
    await wait_ready(client, node)
    child = await _producer_pid(node)
    node.term()
    assert await node.wait_exit() == 0
    assert not _running(child)

    node.start()
    await wait_ready(client, node)
    child = await _producer_pid(node)
    assert await _put(client, node, KEYS[0], "before the kill") in (200, 201)
    node.kill()
    with trio.fail_after(20):  # its socket closes with the node: it stops and exits
        while _running(child):
            await trio.sleep(0.05)


async def test_only_the_node_ends_its_producer_process(make_node,
                                                       client: httpx.AsyncClient) -> None:
    """A Ctrl-C reaches the whole process group and a service manager may SIGTERM every
    process of the unit: the node must still be able to finish its writes."""
    node = make_node()
    await wait_ready(client, node)
    child = await _producer_pid(node)
    os.kill(child, signal.SIGINT)
    os.kill(child, signal.SIGTERM)
    await trio.sleep(1.0)
    assert _running(child)
    assert await _put(client, node, KEYS[1], "after the signals") in (200, 201)
    assert await _producer_pid(node) == child


async def test_a_frozen_producer_process_is_replaced(make_node, client: httpx.AsyncClient
                                                     ) -> None:
    """A producer process that stops (SIGSTOP) would hold its writes and their keys for
    ever: the node stops hearing its pings, kills it and starts another."""
    node = make_node()
    await wait_ready(client, node)
    frozen = await _producer_pid(node)
    os.kill(frozen, signal.SIGSTOP)
    try:
        # held by the frozen process: answered 503 within write_timeout, never applied
        # before Kafka has it
        r = await client.put(f"{node.base}/users/{KEYS[2]}",
                             json={"name": "to the frozen process", "email": KEYS[2]})
        assert r.status_code == 503, r.text
        assert r.json()["error"] in {"write_timeout", "broker_unavailable"}, r.text
        replacement = await _producer_pid(node, other_than=frozen, timeout=20)
        with trio.fail_after(20):
            while await _put(client, node, KEYS[3], "after the replacement") == 503:
                await trio.sleep(0.2)
    finally:
        if _running(frozen):
            os.kill(frozen, signal.SIGCONT)
    assert not _running(frozen)
    assert _running(replacement)
    assert "event=producer_process_unresponsive" in node.log_text()


async def test_a_record_kafka_refuses_does_not_stop_its_partition(
        kafka_bootstrap: str, names: dict[str, str], make_node,
        client: httpx.AsyncClient) -> None:
    """A record the idempotent producer gives up on (here: larger than the topic's
    max.message.bytes) has used its sequence number: Kafka refuses every later record
    of that producer in that partition (OutOfOrderSequenceNumber). The producer is
    replaced, so the value is refused (413) and the partition takes writes again."""
    await load.produce(kafka_bootstrap, names["topic"], [],
                       create_configs={"max.message.bytes": "4096"})
    node = make_node()
    await wait_ready(client, node)
    big = "too.large@example.com"
    partition = partition_for(big.encode(), 10)
    same = [k for k in (f"neighbour{i}@example.com" for i in range(2000))
            if partition_for(k.encode(), 10) == partition][:4]
    r = await client.put(f"{node.base}/users/{big}", json={"name": "x" * 10_000})
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "value_too_large", r.text

    acked: dict[str, str] = {}
    with trio.fail_after(10):  # its partition takes writes again at once
        for n in range(12):
            email = same[n % len(same)]
            status = await _put(client, node, email, f"after {n}")
            assert status in (200, 201), (n, status, node.log_text()[-2000:])
            acked[email] = f"after {n}"
    for email, name in acked.items():
        r = await client.get(f"{node.base}/users/{email}")
        assert r.status_code == 200, (email, r.text)
        assert r.json()["name"] == name, (email, r.text)
    assert (await client.get(f"{node.base}/users/{big}")).status_code == 404
    assert "OutOfOrderSequenceNumber" not in node.log_text()


async def test_a_value_the_topic_takes_is_written_past_the_clients_default_limit(
        kafka_bootstrap: str, names: dict[str, str], make_node,
        client: httpx.AsyncClient) -> None:
    """max_body lets 2 MiB in and the topic takes 8 MiB: the write is applied. The
    producer's own request limit (aiokafka's default 1 MiB) refused it before, and the
    node answered 503 write_refused (retry) for ever."""
    await load.produce(kafka_bootstrap, names["topic"], [],
                       create_configs={"max.message.bytes": str(8 * 1024 * 1024)})
    node = make_node(KSTATE_MAX_BODY=str(4 * 1024 * 1024))
    await wait_ready(client, node)
    name = "y" * (2 * 1024 * 1024)
    email = "big.value@example.com"
    r = await client.put(f"{node.base}/users/{email}", json={"name": name}, timeout=30)
    assert r.status_code == 201, r.text[:500]
    r = await client.get(f"{node.base}/users/{email}")
    assert r.status_code == 200
    assert r.json()["name"] == name
