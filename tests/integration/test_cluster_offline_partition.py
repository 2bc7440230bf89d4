"""A partition without a leader while the group rebalances: replication 1 on a cluster
of three brokers of this module's own (never the session broker), one of them down.

The member assigned that partition cannot read its end offset (its catch-up target)
until the broker is back. Before, its assignment callback gave up after aiokafka's
request timeout (40 s) and the node exited 1 (``rebalance_listener_failed``), and every
member assigned the partition next in turn; heartbeats were not sent while the callback
waited, so the member was expelled after the session timeout. Then it waited in the
group (heartbeating), but its callback waited for every partition's end offset, so none
of its partitions served until the broker was back. Now each partition passes its own
catch-up gate: the others serve at once, that one once the broker is back and it has
caught up to its own end offset."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.support.owners import emails_in
from tools.procs import REPO, Node, wait_ready, wait_stable

# One worker runs this module: its cluster (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_cluster_offline_partition")

KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
PARTITIONS = 6
# aiokafka's consumer request timeout (ms): the old code gave up and stopped the node
# once one attempt at the end offsets took this long.
AIOKAFKA_REQUEST_TIMEOUT = 40.0


@dataclass
class Cluster:
    name: str
    bootstrap: str

    async def broker_stop(self, i: int) -> None:
        await _kafka_sh("broker-stop", self.name, str(i))

    async def broker_start(self, i: int) -> None:
        await _kafka_sh("broker-start", self.name, str(i))


async def _kafka_sh(*args: str) -> None:
    res = await trio.run_process([str(KAFKA_SH), *args], capture_stdout=True,
                                 capture_stderr=True, check=False)
    assert res.returncode == 0, res.stderr.decode()[-2000:]


def _run_dir(name: str) -> Path:
    return Path(os.environ.get("KAFKA_CACHE", REPO / ".cache" / "kafka")) / "run" / name


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    name = f"offline-{uuid.uuid4().hex[:8]}"
    try:
        res = subprocess.run([str(KAFKA_SH), "cluster-up", name],
                             env={**os.environ, "KAFKA_PORT": "0"}, capture_output=True,
                             text=True, timeout=600, check=False)
        if res.returncode != 0:
            pytest.fail(f"kafka.sh cluster-up failed:\n{res.stderr[-3000:]}", pytrace=False)
        yield Cluster(name, res.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run([str(KAFKA_SH), "cluster-down", name], timeout=120, check=False)
        shutil.rmtree(_run_dir(name), ignore_errors=True)


def _layout(bootstrap: str, topic: str, group: str | None
            ) -> tuple[dict[int, int], int | None]:
    """(partition -> leader broker id (-1: none), the group's coordinator id if
    ``group`` is named)."""
    async def ask() -> tuple[dict[int, int], int | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            md = await admin._client.fetch_all_metadata()
            leaders = {p: md.leader_for_partition(TopicPartition(topic, p))
                       for p in range(PARTITIONS)}
            coordinator = (None if group is None
                           else int(await admin._client.coordinator_lookup(0, group)))
            return {p: -1 if lead is None else int(lead) for p, lead in leaders.items()}, \
                coordinator
        finally:
            await admin.close()
    return asyncio.run(ask())


def _group_members(bootstrap: str, group: str) -> int:
    async def ask() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (answer,) = await admin.describe_consumer_groups([group])
            return len(answer.groups[0][5])
        finally:
            await admin.close()
    return asyncio.run(ask())


def _key_of(partition: int) -> str:
    return emails_in(partition, PARTITIONS, 1, "off")[0]


async def _one_key_each(client: httpx.AsyncClient, node: Node) -> dict[int, str]:
    """Write one user in every partition through ``node``: partition -> its email."""
    keys = {p: _key_of(p) for p in range(PARTITIONS)}
    for p, k in keys.items():
        r = await client.put(f"{node.base}/users/{k}", json={"name": f"before-{p}"})
        assert r.status_code == 201, (p, r.status_code, r.text)
    return keys


async def _stop_a_leader(cluster: Cluster, topic: str, group: str,
                         prefer: Collection[int] = ()) -> tuple[int, list[int]]:
    """Stop a broker that leads some of ``topic``'s partitions and is not ``group``'s
    coordinator (one leading a partition of ``prefer`` if one does), and wait until the
    controller says those partitions have no leader: (the broker, its partitions)."""
    leaders, coordinator = await trio.to_thread.run_sync(
        _layout, cluster.bootstrap, topic, group)
    candidates = [i for i in (1, 2, 3) if i != coordinator and i in leaders.values()]
    victim = next((i for i in candidates if any(leaders[p] == i for p in prefer)),
                  candidates[0])
    offline = sorted(p for p, lead in leaders.items() if lead == victim)
    await cluster.broker_stop(victim)
    try:
        with trio.fail_after(60):  # the controller notices the broker is gone
            while True:
                leaders, _ = await trio.to_thread.run_sync(
                    _layout, cluster.bootstrap, topic, None)
                if all(leaders[p] == -1 for p in offline):
                    return victim, offline
                await trio.sleep(1.0)
    except BaseException:
        with trio.CancelScope(shield=True):  # the module's other tests need the cluster
            await cluster.broker_start(victim)
        raise


async def test_member_waits_for_a_partition_without_a_leader(
        cluster: Cluster, artifacts: Path, client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:10]
    topic, group = f"t-{tag}", f"g-{tag}"
    env = {"KSTATE_PARTITIONS": str(PARTITIONS), "KSTATE_REPLICATION": "1",
           "KSTATE_WRITE_TIMEOUT": "2"}
    a = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env)).start()
    b = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env))
    try:
        await wait_ready(client, a, timeout=60)
        b.start()
        await wait_stable(client, [a, b], PARTITIONS, timeout=60)
        keys = await _one_key_each(client, a)

        victim, _ = await _stop_a_leader(cluster, topic, group)

        # b leaves: a is assigned every partition, the offline ones included
        b.term()
        assert await b.wait_exit(30) == 0
        waited_from = time.monotonic()
        while time.monotonic() - waited_from < AIOKAFKA_REQUEST_TIMEOUT + 8:
            assert a.alive(), a.log_text()[-3000:]
            await trio.sleep(1.0)
        # still in the group: it heartbeat while its assignment waited
        assert await trio.to_thread.run_sync(_group_members, cluster.bootstrap, group) == 1

        await cluster.broker_start(victim)
        for p, k in keys.items():
            with trio.fail_after(90):
                while True:
                    r = await client.put(f"{a.base}/users/{k}", json={"name": f"after-{p}"})
                    if r.status_code == 200:
                        break
                    assert r.status_code == 503, (p, r.status_code, r.text)
                    await trio.sleep(0.5)
            r = await client.get(f"{a.base}/users/{k}")
            assert r.status_code == 200, (p, r.text)
            assert r.json()["name"] == f"after-{p}", (p, r.text)
        assert a.alive()
    finally:
        a.stop_now()
        b.stop_now()


async def test_a_node_starts_while_a_partition_has_no_leader(
        cluster: Cluster, artifacts: Path, client: httpx.AsyncClient) -> None:
    # Its feed's reader and its standby copy's open without waiting for the partition's
    # offsets; before, the node waited for them before serving HTTP or joining, with no
    # line of its own in the log, for as long as the broker was down.
    tag = uuid.uuid4().hex[:10]
    topic, group = f"t-{tag}", f"g-{tag}"
    env = {"KSTATE_PARTITIONS": str(PARTITIONS), "KSTATE_REPLICATION": "1",
           "KSTATE_STANDBY": "true"}
    a = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env)).start()
    c = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env))
    try:
        await wait_ready(client, a, timeout=60)
        keys = await _one_key_each(client, a)
        victim, offline = await _stop_a_leader(cluster, topic, group)

        for _ in range(2):  # a start, a SIGTERM (exit 0 in time), and a start again
            c.start()
            with trio.fail_after(60):
                while c.log_text().count("event=node_started") < c.starts:
                    assert c.alive(), c.log_text()[-3000:]
                    await trio.sleep(0.5)
            r = await client.get(f"{c.base}/readyz", timeout=5)  # it serves HTTP
            assert r.status_code in (200, 503), r.text
            if c.starts == 1:
                c.term()
                assert await c.wait_exit(30) == 0, c.log_text()[-3000:]
        # both members serve every partition that has a leader (the one assigned a
        # leaderless partition too), through either node; the others answer 503
        healthy = [p for p in range(PARTITIONS) if p not in offline]
        seen: list[int] = []
        for node in (c, a):
            for p in healthy:
                await _get_until(client, f"{node.base}/users/{keys[p]}", f"before-{p}",
                                 60, seen)
            for p in offline:
                r = await client.get(f"{node.base}/users/{keys[p]}", timeout=10)
                assert r.status_code == 503, (p, r.status_code, r.text)
                assert r.json()["error"] == "catching_up", (p, r.text)
        # c's standby copy, opened meanwhile, follows every partition that has a leader
        # (before, its reader waited for every partition's offsets: it held nothing)
        with trio.fail_after(60):
            while True:
                body = (await client.get(f"{c.base}/readyz", timeout=5)).json()
                if body["standby"]["keys"] == len(healthy):
                    break
                await trio.sleep(0.5)
        assert not body["standby"]["caught_up"]  # the leaderless one is not
        # so with a dead owner c answers that owner's keys from it, before the group
        # notices (the session timeout) and moves them
        table = (await client.get(f"{c.base}/groupinfo", timeout=5)).json()
        of_a = [p for p in healthy if table[f"{topic}-{p}"] == a.url]
        if of_a:
            a.kill()
            for p in of_a:
                r = await client.get(f"{c.base}/users/{keys[p]}", timeout=10)
                assert r.status_code == 200, (p, r.status_code, r.text)
                assert r.json()["name"] == f"before-{p}", (p, r.text)

        await cluster.broker_start(victim)
        with trio.fail_after(120):  # then every partition, and its standby copy, catch up
            while True:
                r = await client.get(f"{c.base}/readyz", timeout=2)
                body = r.json()
                if r.status_code == 200 and body["standby"]["caught_up"]:
                    break
                await trio.sleep(0.5)
        for p, k in keys.items():
            r = await client.get(f"{c.base}/users/{k}")
            assert r.status_code == 200, (p, r.text)
            assert r.json()["name"] == f"before-{p}", (p, r.text)
        assert a.alive() or of_a
        assert c.alive()
    finally:
        a.stop_now()
        c.stop_now()


async def _get_until(client: httpx.AsyncClient, url: str, want: str, seconds: float,
                     seen: list[int]) -> None:
    """GET ``url`` until it answers 200 with name ``want``; every answer before is a
    503 (never a 404 or another value: no spurious 404, no stale read). ``seen``
    collects the statuses."""
    with trio.fail_after(seconds):
        while True:
            r = await client.get(url, timeout=10)
            seen.append(r.status_code)
            if r.status_code == 200:
                assert r.json()["name"] == want, (url, r.text)
                return
            assert r.status_code == 503, (url, r.status_code, r.text)
            await trio.sleep(0.3)


async def test_healthy_partitions_serve_while_one_has_no_leader(
        cluster: Cluster, artifacts: Path, client: httpx.AsyncClient) -> None:
    # After a rebalance, one partition without a leader held up every partition newly
    # assigned to the member: its end offsets were asked for the whole assignment at
    # once, again and again until Kafka answered for each, so healthy partitions
    # answered 503 for as long as the broker was down. Each partition now passes its
    # own catch-up gate; the leaderless one answers 503 catching_up until its leader
    # is back, and then only after it has replayed up to its own end offset.
    tag = uuid.uuid4().hex[:10]
    topic, group = f"t-{tag}", f"g-{tag}"
    env = {"KSTATE_PARTITIONS": str(PARTITIONS), "KSTATE_REPLICATION": "1",
           "KSTATE_WRITE_TIMEOUT": "2", "KSTATE_CATCHUP_TIMEOUT": "1"}
    a = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env)).start()
    b = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env))
    try:
        await wait_ready(client, a, timeout=60)
        b.start()
        table = await wait_stable(client, [a, b], PARTITIONS, timeout=60)
        b_parts = {int(name.rsplit("-", 1)[1]) for name, url in table.items() if url == b.url}
        keys = {p: emails_in(p, PARTITIONS, 20, "lead") for p in range(PARTITIONS)}
        for p, ks in keys.items():
            for k in ks:
                r = await client.put(f"{a.base}/users/{k}", json={"name": f"before-{k}"})
                assert r.status_code == 201, (p, r.status_code, r.text)

        # a broker leading one of b's partitions, if one does: a then rebuilds it from
        # the beginning, where a gate opened too early answers 404
        victim, offline = await _stop_a_leader(cluster, topic, group, prefer=b_parts)
        healthy = sorted(set(range(PARTITIONS)) - set(offline))

        b.term()  # a is assigned every partition, the leaderless ones included
        assert await b.wait_exit(30) == 0
        seen: list[int] = []
        for p in healthy:  # served while the others have no leader
            for k in keys[p]:
                await _get_until(client, f"{a.base}/users/{k}", f"before-{k}", 45, seen)
            k = keys[p][0]
            with trio.fail_after(30):
                while True:
                    r = await client.put(f"{a.base}/users/{k}", json={"name": f"mid-{k}"})
                    if r.status_code == 200:
                        break
                    assert r.status_code == 503, (p, r.status_code, r.text)
                    await trio.sleep(0.3)
            r = await client.get(f"{a.base}/users/{k}")
            assert (r.status_code, r.json()["name"]) == (200, f"mid-{k}"), r.text
        for p in offline:  # and these answer 503 catching_up
            r = await client.get(f"{a.base}/users/{keys[p][0]}", timeout=10)
            assert r.status_code == 503, (p, r.status_code, r.text)
            assert r.json()["error"] == "catching_up", (p, r.text)
            assert "Retry-After" in r.headers
            k = keys[p][0]
            r = await client.put(f"{a.base}/users/{k}", json={"name": f"lost-{k}"},
                                 timeout=10)
            assert (r.status_code, r.json()["error"]) == (503, "catching_up"), (p, r.text)
        r = await client.get(f"{a.base}/readyz", timeout=5)
        assert r.status_code == 503, r.text
        parts = r.json()["partitions"]
        assert all(parts[str(p)]["caught_up"] for p in healthy), parts
        assert not any(parts[str(p)]["caught_up"] for p in offline), parts
        now = (await trio.to_thread.run_sync(_layout, cluster.bootstrap, topic, None))[0]
        assert all(now[p] == -1 for p in offline), now  # still without a leader

        await cluster.broker_start(victim)
        for p in offline:  # then each catches up: never a 404, never an older value
            for k in keys[p]:
                await _get_until(client, f"{a.base}/users/{k}", f"before-{k}", 90, seen)
        await wait_ready(client, a, timeout=30)
        for p in range(PARTITIONS):
            k = keys[p][-1]
            r = await client.put(f"{a.base}/users/{k}", json={"name": f"after-{k}"})
            assert r.status_code == 200, (p, r.status_code, r.text)
            r = await client.get(f"{a.base}/users/{k}")
            assert r.json()["name"] == f"after-{k}", (p, r.text)
        assert a.alive()
    finally:
        a.stop_now()
        b.stop_now()


async def _resumed_readers(client: httpx.AsyncClient, node: Node) -> float:
    text = (await client.get(f"{node.base}/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("kstate_feed_resumed_readers "))
    return float(line.split()[1])


async def test_a_resumed_feed_is_answered_while_a_partition_has_no_leader(
        cluster: Cluster, artifacts: Path, client: httpx.AsyncClient) -> None:
    # A /changes?from= subscriber's own reader opens before the handshake and needs every
    # partition's offsets; one without a leader has none while its broker is down.
    # Before, the handshake waited unanswered, holding a feed_max_resumed slot, for as
    # long as the broker was down (from a named offset or the beginning alike). Now it is
    # answered 503 feed_unavailable, its slot given back; once the broker is back it
    # replays.
    tag = uuid.uuid4().hex[:10]
    topic, group = f"t-{tag}", f"g-{tag}"
    env = {"KSTATE_PARTITIONS": str(PARTITIONS), "KSTATE_REPLICATION": "1",
           "KSTATE_FEED_MAX_RESUMED": "1"}
    a = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env)).start()
    victim = 0
    try:
        await wait_ready(client, a, timeout=60)
        keys = await _one_key_each(client, a)
        victim, offline = await _stop_a_leader(cluster, topic, group)
        online = next(p for p in range(PARTITIONS) if p not in offline)

        base = a.base.replace("http://", "ws://")
        for query in ("from=beginning", f"from={online}:0"):
            with trio.fail_after(60), pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(f"{base}/changes?{query}"):
                    pass
            assert refused.value.status_code == 503, query
            assert orjson.loads(refused.value.body or b"{}")["error"] == "feed_unavailable"
            assert await _resumed_readers(client, a) == 0

        await cluster.broker_start(victim)
        victim = 0
        with trio.fail_after(120):
            while True:
                try:
                    async with open_websocket_url(f"{base}/changes?from=beginning") as ws:
                        assert orjson.loads(await ws.get_message())["type"] == "hello"
                        seen: set[str] = set()
                        while not set(keys.values()) <= seen:
                            seen.add(orjson.loads(await ws.get_message()).get("key"))
                        break
                except ConnectionRejected as exc:
                    if exc.status_code != 503:
                        raise
                    await trio.sleep(1.0)
        assert a.alive()
    finally:
        a.stop_now()
        if victim:  # the module's other tests need the whole cluster
            await cluster.broker_start(victim)


async def test_a_live_feed_is_answered_while_a_partition_has_no_leader(
        cluster: Cluster, artifacts: Path, client: httpx.AsyncClient) -> None:
    # A /changes subscriber without from= wakes the node's idle live feed, which needs
    # every partition's end offset for the hello's positions; one without a leader has
    # none while its broker is down. Before, the websocket was accepted and no hello
    # came for as long as the broker was down. Now the handshake is answered 503
    # feed_unavailable; once the broker is back a live subscriber gets its hello and
    # then every change written after it, of that partition too.
    tag = uuid.uuid4().hex[:10]
    topic, group = f"t-{tag}", f"g-{tag}"
    env = {"KSTATE_PARTITIONS": str(PARTITIONS), "KSTATE_REPLICATION": "1"}
    a = Node(bootstrap=cluster.bootstrap, topic=topic, group=group, log_dir=artifacts,
             extra=dict(env)).start()
    victim = 0
    try:
        await wait_ready(client, a, timeout=60)
        keys = await _one_key_each(client, a)
        victim, _ = await _stop_a_leader(cluster, topic, group)

        base = a.base.replace("http://", "ws://")
        with trio.fail_after(60), pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(f"{base}/changes"):
                pass
        assert refused.value.status_code == 503
        assert orjson.loads(refused.value.body or b"{}")["error"] == "feed_unavailable"

        await cluster.broker_start(victim)
        victim = 0
        with trio.fail_after(120):
            while True:
                try:
                    async with open_websocket_url(f"{base}/changes") as ws:
                        hello = orjson.loads(await ws.get_message())
                        assert hello["type"] == "hello"
                        assert sorted(hello["positions"]) == [str(p) for p in range(PARTITIONS)]
                        for p, k in keys.items():
                            while True:  # a write may wait for the partition's leader
                                r = await client.put(f"{a.base}/users/{k}",
                                                     json={"name": f"after-{p}"})
                                if r.status_code == 200:
                                    break
                                assert r.status_code == 503, (p, r.status_code, r.text)
                                await trio.sleep(1.0)
                        got: dict[str, str] = {}
                        while set(got) != set(keys.values()):
                            change = orjson.loads(await ws.get_message())
                            assert change["offset"] >= hello["positions"][
                                str(change["partition"])], change
                            got[change["key"]] = change["value"]["name"]
                        assert got == {k: f"after-{p}" for p, k in keys.items()}
                        break
                except ConnectionRejected as exc:
                    if exc.status_code != 503:
                        raise
                    await trio.sleep(1.0)
        assert a.alive()
    finally:
        a.stop_now()
        if victim:  # the module's other tests need the whole cluster
            await cluster.broker_start(victim)
