"""The change feed's bounds over real websockets against a real node: bad parameters are
a 400 JSON before the handshake whatever their bytes; subscribers beyond the node's
bounds get a 503 JSON; a subscriber that reads nothing (resumed or live) is cut off
after ``feed_stall_timeout`` seconds (its Kafka reader closed at once, close 4001 when
it reads again) and, until then, its reader holds little; a client's oversized message
is refused."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from kstate.core.partitioner import partition_for
from tests.support.feed import open_feed
from tools import topic as load
from tools.bench import load as bench
from tools.procs import Node, wait_ready

BIG_NAME = "n" * 60_000  # ~60 KB per change: a few hundred fill any socket buffer


def handshake(node: Node, query: bytes) -> tuple[int, bytes]:
    """A websocket handshake on /changes?<query> (raw bytes): (status, body)."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(b"GET /changes?" + query + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if status != 101 and length:
            while len(body) < int(length[1]):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
    return status, body


BAD = [
    (b"from=0:--5", "invalid_from"), (b"from=%C2%B2:1", "invalid_from"),
    (b"from=0:%C2%B2", "invalid_from"), (b"from=%EF%BC%91:1", "invalid_from"),
    (b"from=0:%D9%A3", "invalid_from"), (b"from=99999999999999999999:1", "invalid_from"),
    (b"from=0:99999999999999999999999", "invalid_from"),
    (b"from=0:9223372036854775807", "invalid_from"), (b"from=10:1", "invalid_from"),
    (b"from=0:1,0:2", "invalid_from"), (b"from=abc", "invalid_from"),
    (b"from=0:", "invalid_from"), (b"from=:1", "invalid_from"), (b"from=0:1,", "invalid_from"),
    (b"from=0:1:2", "invalid_from"), (b"from=beginning2", "invalid_from"),
    (b"from=0:+1", "invalid_from"), (b"from=0:1e3", "invalid_from"),
    (b"from=%FF%FE:1", "invalid_from"), (b"from=" + b"1" * 3000 + b":1", "invalid_from"),
    (b"key=notanemail", "invalid_email"), (b"key=%C2%B2", "invalid_email"),
    (b"key=a%00@b.c", "invalid_email"), (b"key=%FF%FE", "invalid_email"),
    (b"key=a%20b@c.d", "invalid_email"), (b"key=", "invalid_email"),
    (b"key=" + b"a" * 300 + b"@b.c", "invalid_email"),
    (b"from=0:1000", "invalid_from"),  # past partition 0's end (a fresh topic)
    # a parameter given twice: never read as its first (partition 1 would start live)
    (b"from=0:-1&from=1:-1", "invalid_from"), (b"from=beginning&from=0:-1", "invalid_from"),
    (b"key=a@b.c&key=d@e.f", "invalid_email"), (b"key=a@b.c&key=a@b.c", "invalid_email"),
]


async def test_bad_feed_parameters_are_400_json_never_500(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    for query, code in BAD:
        status, body = handshake(node, query)
        assert status == 400, (query[:60], status, body[:200])
        assert json.loads(body)["error"] == code, (query[:60], body[:200])
    # from=0:5 needs an offset 5 in partition 0 (past its end is a 400, above)
    zero = [e for e in (f"z{i}@example.com" for i in range(400))
            if partition_for(e.encode(), 10) == 0]
    for email in zero[:6]:
        r = await client.put(f"{node.base}/users/{email}", json={"name": "Z"})
        assert r.status_code == 201, r.text
    for good in (b"from=0:-1", b"from=0:5,9:-1", b"from=beginning", b"key=a@b.c", b""):
        assert handshake(node, good)[0] == 101, good
    assert "Traceback" not in node.log_text()


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found[1])


async def wait_metric(client, node: Node, name: str, want: float, seconds: float = 30) -> None:
    with trio.fail_after(seconds):
        while True:
            text = (await client.get(f"{node.base}/metrics")).text
            if metric(text, name) == want:
                return
            await trio.sleep(0.1)


@asynccontextmanager
async def lazy_feed(node: Node, query: str) -> AsyncIterator[WebSocketConnection]:
    """A websocket to /changes that reads nothing until the test says so: a tiny
    receive buffer (set before connect, so the kernel does not grow it) and a queue of
    one message."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", node.port))
    stream = trio.SocketStream(sock)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", f"/changes?{query}",
                                      message_queue_size=1)
        try:
            yield ws
        finally:
            with trio.move_on_after(5):
                await ws.aclose()
            nursery.cancel_scope.cancel()


async def read_to_close(ws: WebSocketConnection) -> tuple[int, int | None]:
    """Messages read until the server closes; (count, close code)."""
    count = 0
    with trio.fail_after(60):
        try:
            while True:
                await ws.get_message()
                count += 1
        except ConnectionClosed as closed:
            return count, closed.reason.code


async def test_subscribers_that_read_nothing_are_cut_and_bounds_hold(
        kafka_bootstrap, names, make_node, client):
    records = [load.keyed(e.encode(), load.user_bytes(e, BIG_NAME))
               for e in (load.email_of(i, "big") for i in range(300))]
    await load.produce(kafka_bootstrap, names["topic"], records, chunk=50)
    node = make_node(KSTATE_FEED_MAX_RESUMED="1", KSTATE_FEED_MAX_SUBSCRIBERS="3",
                     KSTATE_FEED_STALL_TIMEOUT="2")
    await wait_ready(client, node)

    # A resumed subscriber that reads nothing holds the only own-reader slot...
    async with lazy_feed(node, "from=beginning") as stuck:
        await wait_metric(client, node, "kstate_feed_resumed_readers", 1)
        status, body = handshake(node, b"from=beginning")
        assert status == 503, body
        assert json.loads(body)["error"] == "feed_resume_full"
        # ... until it is cut off for taking nothing: its reader is closed at once.
        await wait_metric(client, node, "kstate_feed_stalled_subscribers_total", 1)
        await wait_metric(client, node, "kstate_feed_resumed_readers", 0)
        async with open_feed(node.base, **{"from": "0:-1"}) as reader:  # the slot is free
            assert reader.positions
        # When it reads again it gets what was sent, then close 4001.
        count, code = await read_to_close(stuck)
        assert code == 4001
        assert count >= 1
    await wait_metric(client, node, "kstate_feed_connections", 0)

    # A live subscriber that reads nothing is cut off the same way.
    async with lazy_feed(node, "") as live:
        await wait_metric(client, node, "kstate_feed_subscribers", 1)
        more = [load.keyed(e.encode(), load.user_bytes(e, BIG_NAME))
                for e in (load.email_of(i, "live") for i in range(300))]
        await load.produce(kafka_bootstrap, names["topic"], more, chunk=50)
        await wait_metric(client, node, "kstate_feed_stalled_subscribers_total", 2)
        await wait_metric(client, node, "kstate_feed_subscribers", 0)
        _, code = await read_to_close(live)
        assert code == 4001

    # At most three websockets at once; the fourth gets 503 until one leaves.
    async with open_feed(node.base), open_feed(node.base), open_feed(node.base):
        await wait_metric(client, node, "kstate_feed_connections", 3)
        status, body = handshake(node, b"")
        assert status == 503, body
        assert json.loads(body)["error"] == "feed_full"
    await wait_metric(client, node, "kstate_feed_connections", 0)
    assert handshake(node, b"")[0] == 101
    text = (await client.get(f"{node.base}/metrics")).text
    assert metric(text, "kstate_feed_refused_total") == 2


def rss_mib(node: Node) -> float:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_resumed_subscriber_that_reads_nothing_holds_little(
        kafka_bootstrap, names, make_node, client):
    """Until it is cut off, a resumed subscriber that reads nothing keeps its own Kafka
    reader: that reader holds one fetched answer per partition and one fetch's records.
    With aiokafka's defaults (1 MiB per partition, 5,000 records) that was ~12 MB per
    subscriber here (100k users, 10 partitions), feed_max_resumed times over; now a
    fetch brings at most 64 KiB per partition (actors/feed_resume.py)."""
    count = 16
    await bench.load(kafka_bootstrap, names["topic"], 10, 100_000, 0, batch_bytes=64 * 1024)
    node = make_node(KSTATE_FEED_MAX_RESUMED=str(count), KSTATE_FEED_STALL_TIMEOUT="60")
    await wait_ready(client, node, timeout=60)
    async with lazy_feed(node, "from=beginning"):  # the code paths, warm
        await wait_metric(client, node, "kstate_feed_resumed_readers", 1)
    await wait_metric(client, node, "kstate_feed_connections", 0)
    await trio.sleep(1.0)
    before = rss_mib(node)
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(lazy_feed(node, "from=beginning"))
        await wait_metric(client, node, "kstate_feed_resumed_readers", count)
        await trio.sleep(3.0)  # each reader fetches all it will hold
        during = rss_mib(node)
        assert metric((await client.get(f"{node.base}/metrics")).text,
                      "kstate_feed_stalled_subscribers_total") == 0  # still held
    per = (during - before) / count
    print(f"\nresumed subscribers reading nothing: {count}, node RSS {before:.0f} MiB "
          f"before, {during:.0f} MiB with them: {per:.2f} MiB each")
    assert per < 3, f"{per:.1f} MiB per resumed subscriber that reads nothing"


async def test_a_client_message_over_the_limit_closes_the_socket(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    async with open_feed(node.base) as reader:
        await reader.ws.send_message("x" * 10_000)
        _, code = await read_to_close(reader.ws)
        assert code == 1009  # message too big
