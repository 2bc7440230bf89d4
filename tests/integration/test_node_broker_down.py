"""Issue 3: the broker goes away and comes back. The nodes run on a broker of this
module's own (started here, so stopping it disturbs no other test); ``kafka.sh
stop``/``start`` stop it for real and bring it back with the same data and ports.

While it is down: PUT/DELETE answer 503 + Retry-After within write_timeout (plus a
little), never 500, never hang. GETs are served from state while the node can prove it
still owns its partitions (its read lease: the last heartbeat the coordinator answered,
plus the session timeout minus a margin), then answered 503 ``owner_isolated``, never a
value; a node started with ``serve_isolated`` keeps answering from memory. After it is
back: writes succeed again and nothing written before is lost."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from kstate.bridge.produce_wire import PRODUCER_GIVES_UP_S
from kstate.core.messages import Record
from kstate.core.partitioner import partition_for
from kstate.core.records import EPOCH_HEADER, MARKER_PREFIX
from tests.support.brokers import Broker, own_broker
from tests.support.feed import feed_url, open_feed
from tools import topic as load
from tools.procs import Node, wait_ready

# One worker runs this module: its broker (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_node_broker_down")

WRITE_TIMEOUT = 2.0
PARTITIONS = 10  # the topic the nodes create (the default partitions, kstate/settings.py)
SLACK = 1.5  # what "a little" over write_timeout may be on a loaded 2-core machine


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with own_broker("it-down") as b:
        yield b


@pytest.fixture
def node_on(artifacts: Path) -> Iterator[object]:
    nodes: list[Node] = []

    def make(bootstrap: str, **extra: str) -> Node:
        tag = uuid.uuid4().hex[:10]
        n = Node(bootstrap=bootstrap, topic=f"t-{tag}", group=f"g-{tag}", log_dir=artifacts,
                 extra=extra)
        nodes.append(n)
        return n.start()

    yield make
    for n in nodes:
        n.stop_now()


def assert_refused(r: httpx.Response) -> str:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["retry-after"].isdigit()
    body = r.json()
    assert body["message"]
    return str(body["error"])


async def timed(coro) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = await coro
    return r, time.monotonic() - t0


SESSION = 6.0  # tools/procs.Node's KSTATE_SESSION_TIMEOUT_MS


def epoch_rule(topic: dict[int, list[Record]], key: bytes) -> bytes | None:
    """What ``key`` holds by its partition's records as Kafka has them (None: absent),
    under the owner-epoch rule (docs/design.md): a record written under an owner epoch
    below the highest marker before it is fenced; otherwise the last record of the
    key decides (a tombstone deletes). Enough for keys written by kstate nodes without
    If-Match, as this module's are."""
    epoch, value = -1, None
    for rec in topic[partition_for(key, PARTITIONS)]:
        written = dict(rec.headers).get(EPOCH_HEADER)
        if rec.key is not None and rec.key.startswith(MARKER_PREFIX):
            assert written is not None, rec
            epoch = max(epoch, int(written))
        elif rec.key == key and (written is None or int(written) >= epoch):
            value = rec.value or None
    return value


async def test_broker_down_writes_refused_reads_leased_then_resume(broker, node_on, client,
                                                                   artifacts):
    node = node_on(broker.bootstrap, KSTATE_WRITE_TIMEOUT=str(WRITE_TIMEOUT))
    # the opt-in: a node that trades the no-stale-read promise for availability
    isolated = node_on(broker.bootstrap, KSTATE_SERVE_ISOLATED="true")
    await wait_ready(client, node, timeout=60)
    await wait_ready(client, isolated, timeout=60)
    base = node.base
    stable = {f"stable{i}@example.com": f"Stable {i}" for i in range(20)}
    victims = {f"victim{i}@example.com": f"Victim {i}" for i in range(4)}
    for email, name in (stable | victims).items():
        r = await client.put(f"{base}/users/{email}", json={"name": name})
        assert r.status_code == 201, r.text
        r = await client.put(f"{isolated.base}/users/{email}", json={"name": name})
        assert r.status_code == 201, r.text

    t0 = time.monotonic()
    await broker.stop()
    stopped_in = time.monotonic() - t0

    # -- broker down: writes refused in bounded time, reads served ------------------------
    bound = WRITE_TIMEOUT + SLACK
    latencies: list[float] = []
    codes: list[str] = []
    attempted: dict[str, set[bytes | None]] = {}  # key -> values a refused write may leave
    limit = httpx.Timeout(bound + 5)
    # reads of the node: served from state only while the lease lasts (it began before
    # the broker stopped, so within SESSION of `t0`), then refused with owner_isolated
    served: list[float] = []
    refused: list[float] = []
    downs = [f"down{i}@example.com" for i in range(3)]
    bursts = [f"burst{i}@example.com" for i in range(10)]

    async def read_untouched(email: str) -> None:
        """The refused writes leave the node's state alone: Kafka never had them (it was
        down before they came) and a node applies only what Kafka has. So a key read
        while its write is held or after it was refused reads as before (a victim's
        old value; 404 for a key never written), never the refused value, as long as
        the node answers from memory; past the lease it is refused like any read."""
        r = await client.get(f"{base}/users/{email}")
        at = time.monotonic() - t0
        if r.status_code == 503:
            assert assert_refused(r) == "owner_isolated", r.text
            refused.append(at)
        elif email in victims:
            assert r.status_code == 200, (email, r.status_code, r.text)
            assert r.content == load.user_bytes(email, victims[email]), email
            served.append(at)
        else:
            assert r.status_code == 404, (email, r.status_code, r.text)
            served.append(at)

    async def write_all() -> None:
        # the victims first: their writes are held, then refused, while the lease lasts
        for i, email in enumerate(victims):
            if i % 2:
                r, dt = await timed(client.delete(f"{base}/users/{email}", timeout=limit))
                attempted.setdefault(email, set()).add(None)
            else:
                r, dt = await timed(client.put(f"{base}/user", params={"email": email},
                                               content=b'{"name":"Seed Down"}',
                                               timeout=limit))
                attempted.setdefault(email, set()).add(load.user_bytes(email, "Seed Down"))
            codes.append(assert_refused(r))
            latencies.append(dt)
        for email in downs:
            r, dt = await timed(client.put(f"{base}/users/{email}", json={"name": "Down"},
                                           timeout=limit))
            codes.append(assert_refused(r))
            latencies.append(dt)
            attempted.setdefault(email, set()).add(load.user_bytes(email, "Down"))

        async def concurrent_put(email: str) -> None:
            attempted.setdefault(email, set()).add(load.user_bytes(email, "Burst"))
            r, dt = await timed(client.put(f"{base}/users/{email}", json={"name": "Burst"},
                                           timeout=limit))
            codes.append(assert_refused(r))
            latencies.append(dt)

        async with trio.open_nursery() as nursery:
            for email in bursts:
                nursery.start_soon(concurrent_put, email)

    async with trio.open_nursery() as nursery:
        async def watch() -> None:  # one reader: `served` and `refused` in time order
            while True:
                for email in [*victims, *downs, *bursts]:
                    await read_untouched(email)
                await trio.sleep(0.05)

        nursery.start_soon(watch)
        await write_all()
        nursery.cancel_scope.cancel()
    assert max(latencies) <= bound, latencies
    # broker_unavailable/write_timeout: may or may not apply; claiming: not applied (an
    # earlier unconfirmed write raised the partition's epoch, whose marker cannot be
    # written while Kafka is down); owner_isolated: not applied (the read lease ran out
    # while these writes went on, and a write is decided only under it)
    assert set(codes) <= {"broker_unavailable", "write_timeout", "claiming",
                          "owner_isolated"}, codes
    victim_reads_served = len(served)  # while the writes were held or refused

    # and reads go on being checked; the node with serve_isolated keeps answering from
    # memory
    isolated_reads = 0
    down_since = time.monotonic()
    while time.monotonic() - down_since < SESSION + 3.0 or isolated_reads < 100:
        for email, name in stable.items():
            r = await client.get(f"{base}/users/{email}")
            at = time.monotonic() - t0
            if r.status_code == 200:
                assert r.content == load.user_bytes(email, name)
                served.append(at)
            else:
                assert assert_refused(r) == "owner_isolated", r.text
                refused.append(at)
            r = await client.get(f"{isolated.base}/users/{email}")
            assert r.status_code == 200, (email, r.status_code, r.text)
            assert r.content == load.user_bytes(email, name)
            isolated_reads += 1
        for email in attempted:
            await read_untouched(email)
        await trio.sleep(0.1)
    assert refused, "past the session timeout the node must stop answering from memory"
    assert max(served, default=0.0) < SESSION, (max(served), SESSION)
    assert min(refused) > max(served, default=0.0)  # once refused, never a value again
    reads = len(served) + isolated_reads
    r = await client.get(f"{base}/healthz")
    assert r.status_code == 200
    assert node.alive()
    assert isolated.alive()
    # a feed resumed with from= needs a reader of its own, which cannot start: 503 before
    # the handshake (it was accepted, then closed 1000, "resume elsewhere", a traceback)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(feed_url(base, **{"from": "0:-1"}), connect_timeout=10):
            pass
    assert rejected.value.status_code == 503
    assert json.loads(rejected.value.body or b"{}")["error"] == "feed_unavailable"
    assert dict(rejected.value.headers)[b"retry-after"].isdigit()

    # -- broker back: writes resume, nothing lost -----------------------------------------
    t0 = time.monotonic()
    await broker.start()
    restarted_in = time.monotonic() - t0
    t0 = time.monotonic()
    refusals: list[str] = []
    with trio.fail_after(90):
        while True:
            r = await client.put(f"{base}/users/after@example.com", json={"name": "After"},
                                 timeout=httpx.Timeout(bound + 5))
            if r.status_code in (200, 201):
                break
            refusals.append(assert_refused(r))
            await trio.sleep(0.2)
    first_write_after = time.monotonic() - t0
    r = await client.get(f"{base}/users/after@example.com")
    assert r.status_code == 200
    assert r.content == load.user_bytes("after@example.com", "After")
    await wait_ready(client, node, timeout=60)
    for email, name in stable.items():
        r = await client.get(f"{base}/users/{email}")
        assert r.status_code == 200, (email, r.status_code, r.text)
        assert r.content == load.user_bytes(email, name)
    # a refused write "may or may not apply" (the producer held it, and may deliver it
    # now): each key holds its old value or one of the refused ones, nothing else, and
    # exactly what its topic says: the refused record if it landed before the owner's
    # next marker, else the old value (it landed after it, fenced, or never). A record
    # still in flight may land between the reads and the look at the topic: ask again
    # until they agree.
    before = {email: load.user_bytes(email, victims[email]) if email in victims else None
              for email in attempted}
    deadline = time.monotonic() + 60
    while True:
        answers: dict[str, bytes | None] = {}
        for email, maybe in attempted.items():
            r = await client.get(f"{base}/users/{email}")
            assert r.status_code in (200, 404), r.text
            answers[email] = r.content if r.status_code == 200 else None
            assert answers[email] == before[email] or answers[email] in maybe, \
                (email, answers[email])
        topic = await load.read_all(broker.bootstrap, node.topic, within=60)
        decided = {email: epoch_rule(topic, email.encode()) for email in attempted}
        if answers == decided or time.monotonic() > deadline:
            break
        await trio.sleep(0.5)
    assert answers == decided, {e: {"node": answers[e], "topic": decided[e]}
                                for e in attempted if answers[e] != decided[e]}
    refused_writes_applied = sorted(e for e in attempted if decided[e] != before[e])
    # and writes to every kind of key work again
    for email in [*victims, "down0@example.com"]:
        r = await client.put(f"{base}/users/{email}", json={"name": "Again"})
        assert r.status_code in (200, 201), r.text
        r = await client.get(f"{base}/users/{email}")
        assert r.content == load.user_bytes(email, "Again")

    numbers = {
        "write_timeout": WRITE_TIMEOUT,
        "refused_write_latency_s": {"min": round(min(latencies), 3),
                                    "max": round(max(latencies), 3),
                                    "n": len(latencies)},
        "refusal_codes": sorted(set(codes)),
        "reads_served_while_down": reads,
        "refused_keys_reads_served_during_the_writes": victim_reads_served,
        "last_read_served_s": round(max(served, default=0.0), 2),
        "first_owner_isolated_s": round(min(refused), 2),
        "broker_stop_s": round(stopped_in, 2),
        "broker_restart_s": round(restarted_in, 2),
        "first_write_after_restart_s": round(first_write_after, 2),
        "refusals_after_restart": len(refusals),
        "refused_writes_applied_after_restart": refused_writes_applied,
    }
    (artifacts / "broker-down-numbers.json").write_text(json.dumps(numbers, indent=2))
    print("broker-down numbers:", json.dumps(numbers))


async def test_sigterm_lets_a_write_in_flight_finish(broker, node_on, client, artifacts):
    """A write already produced but not yet acknowledged by Kafka when SIGTERM comes:
    the node stops serving, waits for it (revoke drains the writer), answers it 2xx,
    then leaves and exits 0. The broker is frozen (SIGSTOP) to hold the write there."""
    await broker.start()  # running (no-op) even if the test before failed half-way
    node = node_on(broker.bootstrap)  # default write_timeout: 5 s
    await wait_ready(client, node, timeout=60)
    r = await client.put(f"{node.base}/users/first@example.com", json={"name": "First"})
    assert r.status_code == 201

    answer: list[httpx.Response] = []

    async def slow_put() -> None:
        answer.append(await client.put(f"{node.base}/users/held@example.com",
                                       json={"name": "Held"}, timeout=20))

    broker.freeze(True)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_put)
            await trio.sleep(0.5)  # the PUT is in the writer, waiting for Kafka
            assert not answer
            t0 = time.monotonic()
            node.term()
            await trio.sleep(1.0)
            assert not answer  # held: the node neither answered nor dropped it
            assert node.alive()  # and it waits for it
            broker.freeze(False)
    finally:
        broker.freeze(False)
    assert answer[0].status_code == 201, answer[0].text
    assert answer[0].content == load.user_bytes("held@example.com", "Held")
    code = await node.wait_exit(timeout=20)
    exit_seconds = time.monotonic() - t0
    assert code == 0, node.log_text()[-3000:]
    raw = await load.read_all(broker.bootstrap, node.topic)
    values = {rec.key: rec.value for recs in raw.values() for rec in recs}
    assert values[b"held@example.com"] == load.user_bytes("held@example.com", "Held")
    (artifacts / "shutdown-inflight-write.json").write_text(
        json.dumps({"exit_seconds": round(exit_seconds, 3)}))
    print(f"SIGTERM with a write held by a frozen broker for 1 s: exit 0 after "
          f"{exit_seconds:.3f} s, the write answered 201")


async def test_client_reports_an_unconfirmed_conditional_write_as_outcome_unknown(
        broker, node_on, client):
    """A conditional write the owner could not confirm (Kafka down) may still apply;
    the routing-aware client must not retry it (a retry could answer 412 to the very
    same write) but say the outcome is unknown."""
    from kstate.client import KstateClient, Unavailable

    node = node_on(broker.bootstrap, KSTATE_WRITE_TIMEOUT=str(WRITE_TIMEOUT))
    await wait_ready(client, node)
    async with KstateClient([node.url], retries=3, timeout=10) as kc:
        etag = await kc.put("cond@example.com", "before")
        await broker.stop()
        try:
            with pytest.raises(Unavailable) as info:
                await kc.put("cond@example.com", "after", if_match=etag)
            assert info.value.code == "outcome_unknown"
            assert kc.statistics().retries == 0
        finally:
            await broker.start()
        # once Kafka is back the key answers one of the two values, never anything else
        with trio.fail_after(60):
            while True:
                try:
                    got = await kc.get("cond@example.com")
                    break
                except Unavailable:
                    await trio.sleep(0.5)
        assert got is not None
        assert got["name"] in {"before", "after"}


async def test_sigterm_while_kafka_is_down_exits_cleanly(broker, node_on, client):
    """SIGTERM while the broker is down and a write is in flight, held in the producer:
    the write is still answered (503 at write_timeout: the HTTP drain waits that long),
    then the node stops what it can, gives up the record it cannot send and exits 0
    (within write_timeout, the producer process's 15 s to send what it holds, and a
    little). Regressions: aiokafka's consumer stop raised a cancellation of its own
    there, and the node exited 1 with a traceback; and the HTTP drain (3 s) cut the
    write's connection without an answer.

    The node logs JSON: every line it printed is one JSON object, its producer
    process's complaints about the missing broker too (they travel to the node).

    Its feed websockets, live and resumed, end with a clean close (1000), never cut
    off by the HTTP drain (1006: it used to end before the node had left the group,
    where they were closed)."""
    await broker.start()
    write_timeout = 5.0  # the default: longer than the drain used to be
    node = node_on(broker.bootstrap, KSTATE_WRITE_TIMEOUT=str(write_timeout),
                   KSTATE_LOG_FORMAT="json")
    await wait_ready(client, node, timeout=60)
    r = await client.put(f"{node.base}/users/before@example.com", json={"name": "Before"})
    assert r.status_code == 201, r.text
    closes: dict[str, int | None] = {}
    answers: list[httpx.Response] = []

    async def watch(name: str, ws: WebSocketConnection) -> None:
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            closes[name] = exc.reason.code

    async def held_put() -> None:
        answers.append(await client.put(f"{node.base}/users/held@example.com",
                                        json={"name": "Held"}, timeout=30))

    async with open_feed(node.base) as live, \
            open_feed(node.base, **{"from": "beginning"}) as resumed, \
            trio.open_nursery() as nursery:
        nursery.start_soon(watch, "live", live.ws)
        nursery.start_soon(watch, "resumed", resumed.ws)
        await broker.stop()
        try:
            nursery.start_soon(held_put)
            await trio.sleep(0.5)  # the PUT is in the writer, waiting for Kafka
            assert not answers
            t0 = time.monotonic()
            node.term()
            code = await node.wait_exit(timeout=45)
            exit_seconds = time.monotonic() - t0
        finally:
            await broker.start()
    assert_refused(answers[0])
    assert closes == {"live": 1000, "resumed": 1000}, closes
    log = node.log_text()
    assert code == 0, log[-3000:]
    lines = [json.loads(line) for line in log.splitlines() if not line.startswith("---- ")]
    assert not [line for line in lines if line.get("event") == "node_crashed"]
    assert any(line["logger"].startswith("aiokafka.producer") for line in lines)
    print(f"SIGTERM with Kafka down and a write in flight: exit 0 after {exit_seconds:.1f} s")


@pytest.mark.parametrize("step", ["event=topic ", "event=producer_process_started"],
                         ids=["producer_start", "readers_and_join"])
async def test_sigterm_while_kafka_stops_answering_mid_start_exits_0(broker, node_on, step):
    """Kafka answers the topic check, then stops answering (frozen) while the node is
    still starting: its producer process, its feed reader and its group consumer each
    wait for it. SIGTERM then ends the start at once, exit 0: nothing was served yet,
    nothing acknowledged, no group joined. It waited for the step to fail (up to 40 s,
    past a service manager's grace period) and exited 1 with a traceback."""
    await broker.start()
    node = node_on(broker.bootstrap)
    try:
        with trio.fail_after(60):
            while step not in node.log_text():
                assert node.alive(), node.log_text()[-3000:]
                await trio.sleep(0.005)
        broker.freeze(True)
        await trio.sleep(1.0)  # the step is waiting for the frozen broker
        assert node.alive()
        node.term()
        code = await node.wait_exit(timeout=60)
    finally:
        broker.freeze(False)
    log = node.log_text()
    assert code == 0, log[-3000:]
    assert "event=node_stopped_before_start" in log
    assert "event=node_crashed" not in log
    assert "Traceback" not in log


@pytest.mark.parametrize("step", ["event=topic ", "event=producer_process_started"],
                         ids=["producer_start", "readers_and_join"])
async def test_kafka_gone_mid_start_exits_2_with_one_line(broker, node_on, step):
    """Kafka answers the topic check, then stops answering while the node is still
    starting, and nobody stops the node: the step waiting for Kafka (its producer
    process, a reader) gives up, and the node exits as for a Kafka unreachable from
    the start: exit 2, one line naming the address and the setting
    (reason=kafka_unreachable). It exited 1 with event=node_crashed and a traceback."""
    await broker.start()
    node = node_on(broker.bootstrap)
    try:
        with trio.fail_after(60):
            while step not in node.log_text():
                assert node.alive(), node.log_text()[-3000:]
                await trio.sleep(0.005)
        broker.freeze(True)
        code = await node.wait_exit(timeout=150)
    finally:
        broker.freeze(False)
    log = node.log_text()
    assert code == 2, log[-3000:]
    refused = [line for line in log.splitlines() if "event=node_refused" in line]
    assert len(refused) == 1, log[-3000:]
    assert "reason=kafka_unreachable" in refused[0]
    assert broker.bootstrap in refused[0]
    assert "KSTATE_BOOTSTRAP" in refused[0]
    assert "event=node_crashed" not in log
    assert "Traceback" not in log


async def test_a_killed_nodes_producer_process_ends_though_kafka_is_down(broker, node_on,
                                                                        client):
    """kill -9 of a node while Kafka is down and its producer process holds a write: the
    process sees its socket close and gives up what it cannot send on its own (no node
    is left to kill it). Regression: it waited for Kafka for ever, an orphan.

    What it logs with no node left (aiokafka's complaints, that it gave up) it writes
    to the stderr it shares with the node, in the node's format: with JSON logs every
    line is one JSON object. Regression: those lines were plain text."""
    await broker.start()
    node = node_on(broker.bootstrap, KSTATE_LOG_FORMAT="json")
    await wait_ready(client, node, timeout=60)
    r = await client.put(f"{node.base}/users/before@example.com", json={"name": "Before"})
    assert r.status_code == 201, r.text
    (child,) = node.children()
    await broker.stop()
    try:
        async with trio.open_nursery() as nursery:
            async def held_put() -> None:
                with contextlib.suppress(httpx.HTTPError):  # the node dies under it
                    await client.put(f"{node.base}/users/held@example.com",
                                     json={"name": "Held"}, timeout=30)

            nursery.start_soon(held_put)
            await trio.sleep(1.0)  # the PUT is in the producer process, waiting for Kafka
            node.kill()
        t0 = time.monotonic()
        with trio.fail_after(PRODUCER_GIVES_UP_S + 10):
            while _running(child):
                await trio.sleep(0.2)
        print(f"producer process of a killed node, Kafka down: gone after "
              f"{time.monotonic() - t0:.1f} s")
    finally:
        await broker.start()
    lines = [json.loads(line) for line in node.log_text().splitlines()
             if not line.startswith("---- ")]
    gave_up = [line for line in lines if line.get("event") == "producer_process_gave_up"]
    assert [line["logger"] for line in gave_up] == ["kstate.bridge.producer_process"]


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited orphan may linger as a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
