"""Hostile websocket clients of the feed over real sockets against a real node: what
such a client sends after its handshake must never make the node hold more than the
documented bounds, nor keep a subscriber (and its connection) once the client is gone
or the node has given up on it.

- ``permessage-deflate`` is not negotiated: with it, a message of a few hundred KiB
  inflates to hundreds of MiB in the node before its size is checked;
- a message over the limit fails the connection (close 1009, then the node closes
  it, RFC 6455 §7.1.7) and frees its subscriber: hypercorn alone sent the 1009, kept
  every byte the client sent after it, and never told the route;
- a client that sends messages (the feed reads none) and leaves frees its subscriber:
  unread messages filled the queues between hypercorn and the route, hypercorn stopped
  reading the socket and never saw the client leave.

One node serves the module; an autouse check proves it alive, without a traceback,
and with no subscriber left behind by the test."""

from __future__ import annotations

import socket
import struct
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.events import CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

from tests.support.ready_node import ready_node
from tools.procs import Node

pytestmark = pytest.mark.xdist_group("test_feed_hostile")

MAX_MESSAGE = 4096  # web/server.py WEBSOCKET_MAX_MESSAGE


def handshake(path: bytes = b"/changes", extra: bytes = b"") -> bytes:
    return (b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One masked client frame (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", n)
    mask = b"\x11\x22\x33\x44"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


TEXT, CONTINUATION = 1, 0


class Client:
    """A raw websocket client: the handshake's answer head, then the server's frames
    parsed by wsproto (as a client) from whatever the socket gives."""

    def __init__(self, node: Node, path: bytes = b"/changes", extra: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        self.sock.sendall(handshake(path, extra))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the handshake: {data!r}"
            data += chunk
        self.head, _, rest = data.partition(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head
        self.ws = WsConnection(ConnectionType.CLIENT)
        self.ws.receive_data(rest)
        self.messages: list[str] = []
        self.close: CloseConnection | None = None

    def headers(self) -> dict[bytes, bytes]:
        lines = self.head.split(b"\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines)}

    def _take(self) -> None:
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self.messages.append(event.data)
            elif isinstance(event, CloseConnection):
                self.close = event

    def read_until(self, done: object, seconds: float) -> bool:
        """Read frames until ``done()`` or the connection ends (False) or ``seconds``
        pass (False)."""
        deadline = time.monotonic() + seconds
        self._take()
        while not done():  # type: ignore[operator]
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return bool(done())  # type: ignore[operator]
            if not chunk:
                self.ws.receive_data(None)
                self._take()
                return bool(done())  # type: ignore[operator]
            self.ws.receive_data(chunk)
            self._take()
        return True

    def ended(self, seconds: float) -> bool:
        """Whether the node closes the connection within ``seconds`` (what it sends
        meanwhile is read and parsed)."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True

    def aclose(self) -> None:
        self.sock.close()


def rss_kib(node: Node, field: str) -> int:
    assert node.proc is not None
    with open(f"/proc/{node.proc.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


def subscribers(node: Node) -> int:
    """Feed websockets the node holds (admitted and not gone)."""
    with httpx.Client(trust_env=False, timeout=5) as c:
        text = c.get(f"{node.base}/metrics").text
    for line in text.splitlines():
        if line.startswith("kstate_feed_connections "):
            return int(float(line.split()[1]))
    raise AssertionError("kstate_feed_connections not in /metrics")


def wait_subscribers(node: Node, want: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while subscribers(node) != want:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def node(kafka_bootstrap: str) -> Iterator[Node]:
    with ready_node(kafka_bootstrap, "test_feed_hostile") as n:
        yield n


@pytest.fixture(autouse=True)
def _node_survives(node: Node) -> Iterator[None]:
    yield
    assert node.alive(), node.log_text()[-3000:]
    log = node.log_text()
    assert "Traceback" not in log, log[-5000:]
    assert wait_subscribers(node, 0, 10), "a feed subscriber outlived its connection"


def deflated(size: int) -> bytes:
    """A permessage-deflate payload (RFC 7692 §7.2.1) that inflates to ``size`` bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(b"\0" * size) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def test_permessage_deflate_is_not_negotiated(node):
    """A client that offers permessage-deflate gets a websocket without it (the hello
    comes uncompressed), and a compressed message sent anyway is a protocol error, not
    ~200 MiB inflated inside the node (the old code's peak grew by ~340 MiB here)."""
    client = Client(node, extra=b"Sec-WebSocket-Extensions: permessage-deflate; "
                                b"client_max_window_bits\r\n")
    try:
        assert b"sec-websocket-extensions" not in client.headers(), client.head
        assert client.read_until(lambda: client.messages, 10), "no hello"
        assert client.messages[0].startswith('{"type":"hello"')
        before = rss_kib(node, "VmHWM")
        bomb = deflated(200 << 20)  # ~200 KiB on the wire
        try:
            client.sock.sendall(frame(TEXT, bomb, rsv1=True))
        except OSError:
            pass  # the node failed the connection before it had it all
        assert client.ended(10), "the node kept a websocket that sent a compressed frame"
        grew = rss_kib(node, "VmHWM") - before
        assert grew < 64 * 1024, f"the node's peak memory grew {grew} KiB"
    finally:
        client.aclose()


@pytest.mark.parametrize("offer", [b"permessage-deflate; client_max_window_bits=abc",
                                   b"permessage-deflate; server_max_window_bits=99",
                                   b"permessage-deflate; foo"])
def test_an_odd_extension_offer_is_declined(node, offer):
    """An offer wsproto fails on (a window size that is not a number) was a connection
    dropped without an answer and a traceback in the node's log (the autouse check);
    every offer is declined now, and the feed is served."""
    client = Client(node, extra=b"Sec-WebSocket-Extensions: " + offer + b"\r\n")
    try:
        assert b"sec-websocket-extensions" not in client.headers(), client.head
        assert client.read_until(lambda: client.messages, 10), "no hello"
    finally:
        client.aclose()


def test_a_message_over_the_limit_fails_the_connection_and_frees_the_subscriber(node):
    """Close 1009, then the node closes the connection and lets the subscriber go, even
    while the client goes on sending and never answers the close. (hypercorn kept
    every byte sent after the 1009: 300 MB sent, 310 MB more held by the node.)"""
    client = Client(node, path=b"/changes?key=nobody@example.com")
    try:
        assert client.read_until(lambda: client.messages, 10), "no hello"
        assert subscribers(node) == 1
        client.sock.sendall(frame(TEXT, b"x" * (MAX_MESSAGE + 1000), fin=False))
        assert client.read_until(lambda: client.close is not None, 10), "no close frame"
        assert client.close is not None
        assert client.close.code == CloseReason.MESSAGE_TOO_BIG
        more = frame(CONTINUATION, b"y" * 60_000, fin=False)
        try:
            for _ in range(100):  # 6 MB: every byte the old code kept
                client.sock.sendall(more)
        except OSError:
            pass  # the node closed the connection: what it should do
        assert client.ended(10), "the node kept the connection after its 1009"
        # the client's socket is still open here: only the node can have let it go
        assert wait_subscribers(node, 0, 10), "the subscriber outlived its 1009"
    finally:
        client.aclose()


@pytest.mark.parametrize("count", [5, 50])
def test_a_client_that_sends_messages_and_leaves_frees_its_subscriber(node, count):
    """The feed reads nothing a client sends; messages it never took filled the queues
    (hypercorn's and quart's: 20) and hypercorn stopped reading the socket, so a
    subscriber that sent more and left was held for good on a quiet feed (here a key
    nobody writes). Messages are read and dropped now: it goes when its client does."""
    client = Client(node, path=b"/changes?key=nobody@example.com")
    try:
        assert client.read_until(lambda: client.messages, 10), "no hello"
        client.sock.sendall(b"".join(frame(TEXT, b"hi %d" % i) for i in range(count)))
        time.sleep(0.5)
        assert subscribers(node) == 1
    finally:
        client.aclose()
    assert wait_subscribers(node, 0, 10), f"the subscriber outlived its client ({count} sent)"
