"""Issue 16: every resource a hostile client can hold on a node is bounded.

One real node with 100,000 users in its topic (10 partitions) is made to hold, at the
same time:

- 1,000 idle keep-alive connections (one GET each, then nothing): the node closes each
  ``http_idle_timeout`` after its answer, not before;
- 50 connections that send nothing, 50 slowloris heads (a byte every 0.2 s) and 50
  slowloris bodies: the node closes each at its deadline (silently, or after a 408);
- 200 live ``/changes`` websockets and 50 resumed ones (``from`` offset 0 of every
  partition) that never read: ``feed_max_resumed`` (32) resumed ones are admitted, the
  others refused 503 ``feed_resume_full``; every admitted one is cut off once it has
  taken nothing for ``feed_stall_timeout`` seconds (its Kafka reader closed at once),
  and its socket is dropped by the kernel once it gave up sending into the shut window
  (``SEND_STALL_TIMEOUT``);
- connections over ``http_max_connections``, each answered 503.

Meanwhile a well-behaved client (a keep-alive connection, and a fresh connection per
read-back) does GET/PUT round trips, every one of which must succeed with the right
body; its latency before, during and after is printed, never asserted. The node's RSS
while it holds everything must stay under a bound computed from the settings
(``rss_bound``, quoted in the README's "Resources"). The figures are printed (``-s``)
and written to ``resources.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from actors.feed_resume import READER_FETCH_BYTES, READER_MAX_RECORDS
from tools import topic as topic_tools
from tools.bench import load as bench
from tools.procs import Node, wait_stable
from web.loop_lag import LoopLag
from web.server import SEND_STALL_TIMEOUT

PARTITIONS = 10
USERS = 100_000
# Record batches of the bulk load. A resumed feed's reader holds one fetched answer per
# partition, READER_FETCH_BYTES or the whole first batch if that is larger: the topic's
# batch size is part of that reader's allowance (RESUMED_READER).
LOAD_BATCH_BYTES = 64 * 1024

# The node's settings, all explicit.
# The connection cap: above what is held here at once (~1,400), so the well-behaved
# client is never refused, and close enough that ~300 more sockets reach it (default
# 2048).
MAX_CONNECTIONS = 1500
# Short deadlines keep the test short; every bound asserted is derived from them.
HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
# Long enough that the idle connections outlive the whole hold, short enough to wait
# for the node to close them (default 75 s).
IDLE_TIMEOUT = 20.0
STALL_TIMEOUT = 2.0  # feed_stall_timeout (default 5 s)
MAX_SUBSCRIBERS = 512  # feed_max_subscribers (default): the 250 websockets fit
MAX_RESUMED = 32  # feed_max_resumed (default): 50 resumed do not
# write_timeout (default 5 s): this test is about what hostile clients can hold, and the
# good client's latency is reported, not bounded; on a 2-core host the rest of the suite
# loads past its cores (load average ~14 seen in CI), one of its writes during the storm
# took over 5 s and was answered 503 write_timeout ("may or may not apply").
WRITE_TIMEOUT = 15.0
# The front checks deadlines every quarter of its shortest timeout, at most every 0.5 s
# (web/http1/limits.py): a deadline fires at its setting or up to a tick after, never
# before.
TICK = min(max(min(HEAD_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT, 30.0) / 4, 0.01), 0.5)
LINGER = 1.0  # web/http1/limits.py linger_timeout: what the node reads after a 408
# Scheduling slack on a loaded 2-core machine (the node and this test share it): what
# the node closes must be closed by its deadline + TICK + MARGIN. How late the node's
# event loop and this process's timers ran meanwhile is measured and reported with
# every cut, to tell a loaded machine from a late node.
MARGIN = 5.0
EARLY = 0.05  # how much sooner than its deadline a close may be seen (clock reads)

IDLE = 1000
SILENT = 50
SLOW_HEAD = 50
SLOW_BODY = 50
LIVE = 200
RESUMED = 50
DRIP = 0.2  # seconds between two bytes of a slowloris client

# RSS allowances (README, "Resources"): upper bounds of what one more held thing may
# cost the node; a run measures well under each.
MiB = 1024 * 1024
HTTP_CONNECTION = 64 * 1024  # a lean-front connection: task, parser, buffers
WEBSOCKET = 256 * 1024  # hypercorn + quart + the feed's tasks, outbox, a frame in flight
# A resumed feed's own reader: an aiokafka consumer (~1 MiB with its connections), one
# fetched answer per partition and READER_MAX_RECORDS records decoded (~1 KiB each).
RESUMED_READER = (MiB + PARTITIONS * max(READER_FETCH_BYTES, LOAD_BATCH_BYTES)
                  + READER_MAX_RECORDS * 1024)
SLACK = 64 * MiB  # the good client's traffic, the noise records, the allocator's rounding


def rss_bound(baseline: int) -> int:
    """The most RSS the node may have while it holds everything."""
    connections = IDLE + SILENT + SLOW_HEAD + SLOW_BODY
    return (baseline + connections * HTTP_CONNECTION + (LIVE + MAX_RESUMED) * WEBSOCKET
            + MAX_RESUMED * RESUMED_READER + SLACK)


def rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def node_sockets(node: Node) -> int:
    """Connections on the node's port that the node process holds open (its accepted
    sockets in any state; not the listener, not those it already let go of)."""
    assert node.proc is not None
    inodes = set()
    for fd in Path(f"/proc/{node.proc.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    held = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == node.port and f[3] != "0A" and f[9] in inodes:
            held += 1
    return held


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found[1])


async def metrics(client: httpx.AsyncClient, node: Node) -> str:
    r = await client.get(f"{node.base}/metrics")
    assert r.status_code == 200, r.text
    return r.text


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def connect(node: Node, rcvbuf: int | None = None) -> trio.socket.SocketType:
    sock = trio.socket.socket()
    if rcvbuf is not None:  # before connect, so the kernel does not grow it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", node.port))
    return sock


async def read_answer(sock: trio.socket.SocketType) -> tuple[int, bytes]:
    """An HTTP answer's status and body (Content-Length framed; for a 101, nothing
    past the head is read)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await sock.recv(1 if not data else 512)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if status != 101 and length:
        while len(body) < int(length[1]):
            chunk = await sock.recv(65536)
            assert chunk, "closed in the middle of a body"
            body += chunk
    return status, body


async def read_to_eof(sock: trio.socket.SocketType, seconds: float) -> bytes:
    """Everything until the node closes (its FIN); fails after ``seconds``."""
    data = b""
    with trio.fail_after(seconds):
        while chunk := await sock.recv(65536):
            data += chunk
    return data


@dataclass
class Cut:
    """When a hostile connection's deadline started (between ``start`` and ``started``,
    as seen from here) and when the node answered and closed it."""
    start: float
    started: float
    answered: float = 0.0
    closed: float = 0.0

    def __str__(self) -> str:
        return (f"deadline started within {self.started - self.start:.2f}s; answered "
                f"{self.answered - self.started:.2f}s and closed "
                f"{self.closed - self.started:.2f}s after")


@dataclass
class Hostile:
    """What the hostile clients saw."""
    silent: list[Cut] = field(default_factory=list)
    head: list[Cut] = field(default_factory=list)
    body: list[Cut] = field(default_factory=list)
    idle: list[Cut] = field(default_factory=list)
    idle_open: int = 0
    idle_ready: trio.Event = field(default_factory=trio.Event)
    live: list[tuple[int, bytes, trio.socket.SocketType]] = field(default_factory=list)
    resumed: list[tuple[int, bytes, trio.socket.SocketType]] = field(default_factory=list)


async def silent(node: Node, out: list[Cut]) -> None:
    """Connect and send nothing: closed silently at the head deadline (from accept)."""
    start = time.monotonic()
    with await connect(node) as sock:
        cut = Cut(start, time.monotonic())
        assert await read_to_eof(sock, HEAD_TIMEOUT + MARGIN + 10) == b""
        cut.answered = cut.closed = time.monotonic()
        out.append(cut)


async def drip(sock: trio.socket.SocketType, data: bytes) -> bytes:
    """Send ``data`` a byte every DRIP seconds until the node answers; the answer."""
    for byte in data:
        with trio.move_on_after(DRIP):
            answer = await sock.recv(65536)
            assert answer, "closed without an answer"
            return answer
        await sock.send(bytes([byte]))
    raise AssertionError("a slowloris client was never cut off")


async def refused_408(sock: trio.socket.SocketType, cut: Cut, answer: bytes) -> Cut:
    """After a drip the node cut short: it answered 408 and then closed."""
    cut.answered = time.monotonic()
    answer += await read_to_eof(sock, LINGER + MARGIN + 10)
    cut.closed = time.monotonic()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b'"request_timeout"' in answer, answer
    return cut


async def slow_head(node: Node, i: int, out: list[Cut]) -> None:
    """A request head a byte at a time that never ends: 408, then closed."""
    start = time.monotonic()
    with await connect(node) as sock:
        cut = Cut(start, time.monotonic())
        answer = await drip(sock, (f"GET /users/{bench.email_of(i)} HTTP/1.1\r\nHost: x\r\n"
                                   "X-Slow: " + "z" * 10_000).encode())
        out.append(await refused_408(sock, cut, answer))


async def slow_body(node: Node, i: int, out: list[Cut]) -> None:
    """A whole head, then its body a byte at a time: 408 at the body deadline (from
    the end of the head), then closed."""
    email = f"slowbody{i}@example.com"
    body = json.dumps({"name": "n" * 1000, "email": email}).encode()
    with await connect(node) as sock:
        start = time.monotonic()
        await sock.send(f"PUT /users/{email} HTTP/1.1\r\nHost: x\r\n"
                        "Content-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode())
        cut = Cut(start, time.monotonic())
        answer = await drip(sock, body)
        out.append(await refused_408(sock, cut, answer))


async def idle_keepalive(node: Node, i: int, hostile: Hostile) -> None:
    """One GET of a loaded user on a keep-alive connection, then nothing until the node
    closes it (its idle deadline runs from its answer)."""
    n = i * (USERS // IDLE)
    with await connect(node) as sock:
        start = time.monotonic()
        await sock.send(f"GET /users/{bench.email_of(n)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, body = await read_answer(sock)
        cut = Cut(start, time.monotonic())
        assert status == 200, (status, body)
        assert body == bench.value_of(n, bench.email_of(n)), body
        hostile.idle_open += 1
        if hostile.idle_open == IDLE:
            hostile.idle_ready.set()
        assert await read_to_eof(sock, IDLE_TIMEOUT + MARGIN + 120) == b""
        cut.answered = cut.closed = time.monotonic()
        hostile.idle.append(cut)


async def websocket(node: Node, query: str,
                    out: list[tuple[int, bytes, trio.socket.SocketType]]) -> None:
    """A /changes handshake on a socket with a tiny receive buffer; after the answer's
    head it reads nothing."""
    sock = await connect(node, rcvbuf=4096)
    await sock.send(f"GET /changes{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    status, body = await read_answer(sock)
    out.append((status, body, sock))


class GoodClient:
    """GET/PUT round trips that must all succeed with the right bodies; their
    latencies by phase."""

    def __init__(self, node: Node, sample: list[str]) -> None:
        self.node = node
        self.sample = sample
        self.phase = "before"
        self.paused = False
        self.latency: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        self.created: set[str] = set()
        self.round = 0

    async def timed(self, client: httpx.AsyncClient, method: str, url: str,
                    **kw: object) -> httpx.Response:
        t0 = time.monotonic()
        r = await client.request(method, url, **kw)  # type: ignore[arg-type]
        self.latency[self.phase].append(time.monotonic() - t0)
        return r

    async def one_round(self, keep: httpx.AsyncClient) -> None:
        base, i = self.node.base, self.round
        self.round += 1
        # a loaded user, on the keep-alive connection: exactly what was loaded
        email = self.sample[i % len(self.sample)]
        n = int(email.removeprefix("user").partition("@")[0])
        r = await self.timed(keep, "GET", f"{base}/users/{email}")
        assert r.status_code == 200, (self.phase, email, r.status_code, r.text)
        assert r.content == bench.value_of(n, email), (self.phase, r.content)
        # a write, answered with the stored document
        key = f"good{i % 40}@example.com"
        value = {"name": f"{self.phase} {i}", "email": key}
        r = await self.timed(keep, "PUT", f"{base}/users/{key}", json=value)
        assert r.status_code == (200 if key in self.created else 201), (
            self.phase, key, r.status_code, r.text)
        assert r.json() == value, (self.phase, r.text)
        self.created.add(key)
        # and read back on a fresh connection
        async with httpx.AsyncClient(trust_env=False, timeout=10) as fresh:
            r = await self.timed(fresh, "GET", f"{base}/users/{key}")
        assert r.status_code == 200, (self.phase, key, r.status_code, r.text)
        assert r.content == topic_tools.user_bytes(key, value["name"]), r.content

    async def run(self, seconds: float | None = None) -> None:
        """Round trips until cancelled, or for ``seconds``."""
        deadline = time.monotonic() + (seconds if seconds is not None else 1e9)
        async with httpx.AsyncClient(trust_env=False, timeout=10) as keep:
            while time.monotonic() < deadline:
                if self.paused:
                    await trio.sleep(0.05)
                    continue
                await self.one_round(keep)
                await trio.sleep(0.01)

    def figures(self) -> dict[str, dict[str, float]]:
        return {phase: {"requests": len(v), "p50_ms": ms(v, 0.50), "p99_ms": ms(v, 0.99)}
                for phase, v in self.latency.items() if v}


async def test_every_resource_a_client_can_hold_is_bounded(
        kafka_bootstrap, names, make_node, client, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:  # ~1,800 sockets here at most; the node (a child) inherits it
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    t_start = time.monotonic()
    loaded = await bench.load(kafka_bootstrap, names["topic"], PARTITIONS, USERS, 200,
                              batch_bytes=LOAD_BATCH_BYTES)
    node = make_node(
        KSTATE_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        KSTATE_HTTP_HEAD_TIMEOUT=str(HEAD_TIMEOUT),
        KSTATE_HTTP_BODY_TIMEOUT=str(BODY_TIMEOUT),
        KSTATE_HTTP_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
        KSTATE_FEED_STALL_TIMEOUT=str(STALL_TIMEOUT),
        KSTATE_FEED_MAX_SUBSCRIBERS=str(MAX_SUBSCRIBERS),
        KSTATE_FEED_MAX_RESUMED=str(MAX_RESUMED),
        KSTATE_WRITE_TIMEOUT=str(WRITE_TIMEOUT))
    await wait_stable(client, [node], PARTITIONS, timeout=90)
    assert node.proc is not None
    pid = node.proc.pid
    r = await client.get(f"{node.base}/readyz")
    assert sum(p["keys"] for p in r.json()["partitions"].values()) == USERS

    good = GoodClient(node, [email for email, _ in loaded.sample])
    await good.run(3.0)
    rss_before = rss(pid)
    bound = rss_bound(rss_before)

    hostile = Hostile()
    lag = LoopLag()  # this process's own timers, measured as the node measures its loop
    before = metric(await metrics(client, node), "kstate_event_loop_lag_max_seconds")
    node_lag = {"before": before, "sampled": 0.0}
    rss_during: list[int] = []
    most = {"node_sockets": 0, "resumed_readers": 0.0}
    t_hold = time.monotonic()

    async def sample() -> None:
        while True:
            rss_during.append(rss(pid))
            most["node_sockets"] = max(most["node_sockets"], node_sockets(node))
            if not good.paused:  # (at the cap, /metrics on a new connection is refused)
                text = await metrics(client, node)
                readers = metric(text, "kstate_feed_resumed_readers")
                most["resumed_readers"] = max(most["resumed_readers"], readers)
                node_lag["sampled"] = max(node_lag["sampled"],
                                          metric(text, "kstate_event_loop_lag_seconds"))
            await trio.sleep(0.2)

    async with trio.open_nursery() as idle_nursery:  # until the node closes them all
        async with trio.open_nursery() as background:
            good.phase = "during"
            background.start_soon(good.run)
            background.start_soon(sample)
            background.start_soon(lag.run)
            # -- take everything at once ----------------------------------------------
            for i in range(IDLE):  # first, as they take longest to open
                idle_nursery.start_soon(idle_keepalive, node, i, hostile)
                if i % 100 == 99:
                    await trio.sleep(0.05)  # in waves: the listen backlog is 1024
            with trio.fail_after(60):
                await hostile.idle_ready.wait()
            async with trio.open_nursery() as cut_off:
                async with trio.open_nursery() as opening:
                    for _ in range(LIVE):
                        opening.start_soon(websocket, node, "", hostile.live)
                    resume = "?from=" + ",".join(f"{p}:-1" for p in range(PARTITIONS))
                    for _ in range(RESUMED):
                        opening.start_soon(websocket, node, resume, hostile.resumed)
                    for _ in range(SILENT):
                        cut_off.start_soon(silent, node, hostile.silent)
                    for i in range(SLOW_HEAD):
                        cut_off.start_soon(slow_head, node, i, hostile.head)
                    for i in range(SLOW_BODY):
                        cut_off.start_soon(slow_body, node, i, hostile.body)
                t_opened = time.monotonic()
                # changes for the live subscribers not to read: 300 records of 16 kB
                big = "n" * 16_000
                noise = [topic_tools.keyed(e.encode(), topic_tools.user_bytes(e, big))
                         for e in (f"noise{i % 20}@example.com" for i in range(300))]
                await topic_tools.produce(kafka_bootstrap, names["topic"], noise, chunk=50)
                t_noise = time.monotonic()
            # (every silent and slowloris connection was cut: each checked its answer)

            # -- the feed's bounds --------------------------------------------------------
            assert Counter(s for s, _, _ in hostile.live) == {101: LIVE}
            resumed = Counter(s for s, _, _ in hostile.resumed)
            # Over feed_max_resumed: a clear refusal. (A resumed one cut off for reading
            # nothing frees its slot: one handshake late by STALL_TIMEOUT could get in.)
            assert resumed[101] + resumed[503] == RESUMED, resumed
            assert resumed[101] >= MAX_RESUMED, resumed
            assert resumed[503] >= 1, resumed
            for status, body, _ in hostile.resumed:
                if status == 503:
                    assert json.loads(body)["error"] == "feed_resume_full", body
            admitted = LIVE + resumed[101]
            with trio.fail_after(STALL_TIMEOUT + MARGIN + 20):
                while True:  # every one that reads nothing is cut off, its reader closed
                    text = await metrics(client, node)
                    if (metric(text, "kstate_feed_dropped_subscribers_total") == admitted
                            and metric(text, "kstate_feed_subscribers") == 0
                            and metric(text, "kstate_feed_resumed_readers") == 0):
                        break
                    await trio.sleep(0.2)
            t_cut = time.monotonic()
            stalled = metric(text, "kstate_feed_stalled_subscribers_total")
            assert metric(text, "kstate_feed_refused_total") == resumed[503]
            assert most["resumed_readers"] <= MAX_RESUMED, most

            # -- the connection cap -------------------------------------------------------
            good.paused = True
            await trio.sleep(0.5)  # its requests in flight end
            held = node_sockets(node)
            extra = MAX_CONNECTIONS - held + 50
            probes = [await connect(node) for _ in range(extra)]
            answers: list[bytes] = []

            async def probe(sock: trio.socket.SocketType) -> None:
                with sock:  # refused at once, or accepted and cut at the head deadline
                    answers.append(await read_to_eof(sock, HEAD_TIMEOUT + MARGIN + 10))

            async with trio.open_nursery() as probing:
                for sock in probes:
                    probing.start_soon(probe, sock)
            refused = sum(1 for a in answers if a)
            for a in answers:
                assert a == b"" or a.startswith(b"HTTP/1.1 503 "), a
                assert a == b"" or b'"too_many_connections"' in a, a
            # what was over the cap was refused (give or take the few sockets that come
            # and go meanwhile: the metrics client's, the refused probes' own)
            assert abs(refused - (held + extra - MAX_CONNECTIONS)) <= 25, (refused, held)
            good.paused = False
            await trio.sleep(1.0)
            background.cancel_scope.cancel()
        rss_peak = max(rss_during)
        hwm = rss(pid, "VmHWM")  # the kernel's peak since the node started
        t_release = time.monotonic()
        # -- release: the node lets go of everything by itself ----------------------------
        # the websockets cut off: their sockets are dropped once the kernel gave up
        # sending into their shut windows (TCP_USER_TIMEOUT)
        with trio.fail_after(SEND_STALL_TIMEOUT + MARGIN + 10):
            while True:
                text = await metrics(client, node)
                if metric(text, "kstate_feed_connections") == 0:
                    break
                await trio.sleep(0.2)
        t_dropped = time.monotonic()
        # (and the idle ones are closed at their deadline: idle_nursery waits for it)
    with trio.fail_after(MARGIN + 10):
        while node_sockets(node) > 1:  # (the metrics client's keep-alive connection)
            await trio.sleep(0.2)
    t_released = time.monotonic()
    for _, _, sock in hostile.live + hostile.resumed:
        sock.close()

    good.phase = "after"
    await good.run(3.0)
    rss_after = rss(pid)
    assert node.alive()
    log = node.log_text()
    assert "Traceback" not in log, log[-3000:]

    worst_ever = metric(await metrics(client, node), "kstate_event_loop_lag_max_seconds")
    # a worst set during the hold is the hold's; else the hold's stayed under the old one
    late = max(node_lag["sampled"], worst_ever if worst_ever > node_lag["before"] else 0.0)

    def worst(cuts: list[Cut], what: str) -> float:
        return round(max(getattr(c, what) - c.started for c in cuts), 2)

    figures = {
        "users": USERS, "partitions": PARTITIONS,
        "settings": {"http_max_connections": MAX_CONNECTIONS, "write_timeout": WRITE_TIMEOUT,
                     "http_head_timeout": HEAD_TIMEOUT, "http_body_timeout": BODY_TIMEOUT,
                     "http_idle_timeout": IDLE_TIMEOUT, "feed_stall_timeout": STALL_TIMEOUT,
                     "feed_max_subscribers": MAX_SUBSCRIBERS, "feed_max_resumed": MAX_RESUMED},
        "held": {"idle": len(hostile.idle), "silent": len(hostile.silent),
                 "slow_head": len(hostile.head), "slow_body": len(hostile.body),
                 "live_websockets": LIVE, "resumed_admitted": resumed[101],
                 "resumed_refused": resumed[503], "node_sockets_max": most["node_sockets"],
                 "resumed_readers_max": most["resumed_readers"]},
        "rss_mib": {"before": round(rss_before / MiB, 1), "peak": round(rss_peak / MiB, 1),
                    "peak_hwm": round(hwm / MiB, 1),
                    "after": round(rss_after / MiB, 1), "bound": round(bound / MiB, 1)},
        "latency_ms": good.figures(),
        "cut": {"feed_stalled": stalled, "feed_lagged": admitted - stalled,
                "cap_refused": refused},
        "seconds": {
            "silent_closed": worst(hostile.silent, "closed"),
            "slow_head_408": worst(hostile.head, "answered"),
            "slow_head_closed": worst(hostile.head, "closed"),
            "slow_body_408": worst(hostile.body, "answered"),
            "slow_body_closed": worst(hostile.body, "closed"),
            "idle_closed_first": round(min(c.closed - c.started for c in hostile.idle), 2),
            "idle_closed_last": worst(hostile.idle, "closed"),
            "opening": round(t_opened - t_hold, 2),
            "feed_cut_after_noise": round(t_cut - t_noise, 2),
            "websockets_dropped_after_cut": round(t_dropped - t_cut, 2),
            "release": round(t_released - t_release, 2),
            "total": round(time.monotonic() - t_start, 1),
            "node_loop_lag_worst": round(late, 2),
            "test_timer_lag_worst": round(lag.worst, 2)},
    }
    (tmp_path / "resources.json").write_text(json.dumps(figures, indent=2))
    print("\nresources:", json.dumps(figures, indent=1))

    # -- the bounds -----------------------------------------------------------------------
    assert len(hostile.silent) == SILENT
    assert len(hostile.head) == SLOW_HEAD
    assert len(hostile.body) == SLOW_BODY
    assert len(hostile.idle) == IDLE
    for cuts, timeout, linger in ((hostile.silent, HEAD_TIMEOUT, 0.0),
                                  (hostile.head, HEAD_TIMEOUT, LINGER),
                                  (hostile.body, BODY_TIMEOUT, LINGER),
                                  (hostile.idle, IDLE_TIMEOUT, 0.0)):
        for c in cuts:  # at the deadline (within a tick + MARGIN), not before, and closed
            why = (f"{timeout}s: {c}; the node's loop late by up to {late:.2f}s, this "
                   f"process's timers by {lag.worst:.2f}s")
            assert c.answered - c.start >= timeout - EARLY, why
            assert c.answered - c.started <= timeout + TICK + MARGIN, why
            assert c.closed - c.started <= timeout + TICK + linger + MARGIN, why
    assert t_dropped - t_cut <= SEND_STALL_TIMEOUT + MARGIN
    assert most["node_sockets"] <= MAX_CONNECTIONS + 60, most  # (+ refused probes)
    assert rss_peak <= bound, (
        f"RSS {rss_peak / MiB:.0f} MiB while held, bound {bound / MiB:.0f} MiB "
        f"(baseline {rss_before / MiB:.0f} MiB)")
