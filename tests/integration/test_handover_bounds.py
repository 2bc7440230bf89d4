"""What a client can hold or trigger on the node's HTTP front, above all on a connection
handed to hypercorn, on a live node over real sockets: a client that half-closes
(shuts its sending side) once answered has its connection closed at once, not at
``http_idle_timeout``, as on the lean path; a client that reads its answers too slowly
has its connection closed at ``http_send_timeout``, as on the lean path (hypercorn has
no send timeout); a request with ``Expect: 100-continue`` and a body declared over
``max_body`` is refused at once, never invited with a ``100 Continue``, handed over or
not; an absolute-form target whose authority is malformed is a 400, not its path served,
and so is an HTTP/1.1 request without ``Host``, with two, or with one that is not a
host[:port].

One node serves the whole module; an autouse check proves it is still alive, healthy,
and without a traceback in its log."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio

from tests.support.http1 import connect, parse_replies, read_replies, read_until_closed
from tests.support.ready_node import assert_node_survived, ready_node
from tools.procs import Node

# One worker runs this module: its node (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_handover_bounds")

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"
USER = b"GET /users/a@b.c HTTP/1.1\r\nHost: h\r\n\r\n"
IDLE = 60.0  # the node's http_idle_timeout: far longer than any wait below
SEND = 0.5  # the node's http_send_timeout
# web/server.py's TCP_USER_TIMEOUT: the kernel may drop a connection whose window stays
# shut this long, so a send timeout is seen to act only when a connection ends before
STALL = 20.0


@pytest.fixture(scope="module")
def node(kafka_bootstrap: str) -> Iterator[Node]:
    with ready_node(kafka_bootstrap, "test_handover_bounds",
                    {"KSTATE_HTTP_IDLE_TIMEOUT": str(IDLE),
                     "KSTATE_HTTP_SEND_TIMEOUT": str(SEND)}) as n:
        yield n


@pytest.fixture(autouse=True)
def _node_survives(node: Node) -> Iterator[None]:
    yield
    assert_node_survived(node)


# -- a client that half-closes once answered ------------------------------------------

@pytest.mark.parametrize("requests", [[HEALTH], [HEALTH, USER], [USER, HEALTH]],
                         ids=["handed_over", "hot_after", "handed_over_later"])
async def test_a_half_closed_handed_over_connection_closes_once_answered(node, requests):
    """Each request is answered before the next is sent; then the client shuts its
    sending side: nothing more can come to be answered, so the node closes the
    connection at once (hypercorn kept it open till its idle timeout)."""
    s = await connect(node.url)
    for request in requests:
        await s.send_all(request)
        await read_replies(s, 1)
    await s.send_eof()
    with trio.fail_after(IDLE / 4):
        assert await read_until_closed(s, timeout=IDLE) == b""


async def test_a_half_close_with_a_request_in_flight_still_gets_its_answer(node):
    s = await connect(node.url)
    await s.send_all(HEALTH)
    await read_replies(s, 1)
    await s.send_all(HEALTH)
    await s.send_eof()
    with trio.fail_after(IDLE / 4):
        raw = await read_until_closed(s, timeout=IDLE)
    assert raw.startswith(b"HTTP/1.1 200 "), raw


# -- a client that reads too slowly -----------------------------------------------

async def _small_window(node: Node) -> trio.SocketStream:
    """A connection whose receive buffer (so its TCP window) is a few KiB."""
    host, _, port = node.url.rpartition(":")
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    return trio.SocketStream(sock)


@pytest.mark.parametrize("path", [b"/openapi.json", b"/metrics", b"/dashboard/dashboard.js"])
async def test_a_slow_reader_of_a_handed_over_connection_is_cut_off_at_the_send_timeout(
        node, path):
    """A client asks for many answers of 10-20 kB each (pipelined, in one write) and
    reads a little every half second, so its window opens every time: the node gives
    up a write that waited ``http_send_timeout`` and closes the connection (a FIN,
    after what its socket had queued), long before the client could read them all.
    hypercorn alone waited for as long as the client kept reading; what ended it was
    the kernel's TCP_USER_TIMEOUT, by chance, when the window stayed shut long
    enough: a reset, not a close."""
    s = await _small_window(node)
    count = 1000
    await s.send_all(HEALTH + b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path * count)
    got, ended = 0, ""
    async with s:
        with trio.fail_after(STALL * 3):  # (the node closes it in a few seconds)
            while not ended:
                await trio.sleep(0.5)
                try:
                    chunk = await s.receive_some(65536)
                except trio.BrokenResourceError:
                    ended = "reset"
                    break
                if not chunk:
                    ended = "closed"
                got += len(chunk)
    assert ended == "closed", (ended, got)
    assert got < count * 10_000, got


@pytest.mark.parametrize("path", [b"/healthz", b"/openapi.json"])
async def test_a_handed_over_connection_whose_reader_never_reads_is_closed(node, path):
    """A client pipelines hundreds of requests in one write and reads nothing: a write
    of the node gives up at ``http_send_timeout``, and the connection must end then.
    hypercorn took the broken write for one answer lost, went on to the next request
    and then waited for more bytes from the client, the connection held (with its task
    and its place under ``http_max_connections``) until ``http_idle_timeout``, or until
    the kernel's TCP_USER_TIMEOUT dropped it while the window stayed shut; a client
    that read a byte now and then held it for good by sending a request within each
    idle timeout. Here the client reads only after many send timeouts have passed,
    and then finds the connection closed (a FIN after what the node had queued), not
    open and idle."""
    s = await _small_window(node)
    await s.send_all(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path * 400)
    # long past the send timeout (however late a loaded node runs it), well before the
    # kernel's STALL: reading any earlier would let the node's write through
    await trio.sleep(STALL / 4)
    async with s:
        with trio.fail_after(STALL / 2):  # (the bug: open until IDLE, far later)
            raw = await read_until_closed(s, timeout=IDLE)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]


# -- Expect: 100-continue ---------------------------------------------------------

MAX_BODY = 65536  # the node's default max_body


def _expecting(method: bytes, path: bytes, length: int) -> bytes:
    return (b"%s %s HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (method, path, length))


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize(("method", "path", "status"), [
    (b"PUT", b"/users/a@b.c", 413), (b"PUT", b"/healthz", 405), (b"GET", b"/cluster", 413),
    (b"OPTIONS", b"/users/a@b.c", 200)], ids=["hot", "method_not_allowed", "quart",
                                             "options"])
async def test_a_body_declared_too_large_is_never_invited(node, later, method, path, status):
    """The client waits for the 100 before it sends its body: the node answers at once,
    without a 100 (hypercorn sent one for every such head, inviting a body it would
    refuse; a hot route's answer then waited for that body till http_body_timeout)."""
    s = await connect(node.url)
    await s.send_all((HEALTH if later else b"") + _expecting(method, path, MAX_BODY + 1))
    raw = await read_until_closed(s, timeout=10)
    assert b"HTTP/1.1 100 " not in raw, raw
    replies = parse_replies(raw)
    assert [r.status for r in replies] == [200] * later + [status], raw
    if status == 413:
        assert replies[-1].json()["error"] == "body_too_large", raw


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("path", [b"/users/a@b.c", b"/healthz"])
async def test_a_body_within_the_limit_is_invited(node, later, path):
    s = await connect(node.url)
    async with s:
        if later:
            await s.send_all(HEALTH)
            await read_replies(s, 1)
        await s.send_all(_expecting(b"PUT", path, 2))
        with trio.fail_after(5):
            head = b""
            while b"\r\n\r\n" not in head:
                head += await s.receive_some(65536)
        assert head.startswith(b"HTTP/1.1 100 "), head
        await s.send_all(b"{}")
        (reply,) = await read_replies(s, 1)
        assert 400 <= reply.status < 500, reply  # (an empty object is not a user)


# -- a malformed absolute-form target ------------------------------------------------

BAD_TARGETS = [b"http://[::1", b"http://[::1/users/a@b.c", b"http://", b"http:///healthz",
               b"http://h:x/healthz", b"http://u@h/healthz", b"http://h%4/healthz"]


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("target", BAD_TARGETS)
async def test_a_malformed_absolute_form_target_is_refused(node, later, target):
    """RFC 3986/9110: an authority with an IP literal left open, no host, a port that
    is not digits, a userinfo or a broken percent-escape is no authority: 400 with the
    front's JSON error (both parsers took it, and its path, ``/`` for the first, was
    served: the dashboard, or a user's record)."""
    s = await connect(node.url)
    await s.send_all((HEALTH if later else b"")
                     + b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % target)
    raw = await read_until_closed(s, timeout=10)
    replies = parse_replies(raw)
    assert [r.status for r in replies] == [200] * later + [400], raw
    assert replies[-1].json()["error"] == "bad_request", raw
    assert replies[-1].headers[b"connection"] == b"close", raw


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("target", [b"http://h/healthz", b"http://[::1]:8080/healthz",
                                    b"HTTP://H:/healthz?x=1", b"http://h%41/healthz"])
async def test_a_well_formed_absolute_form_target_is_served_as_its_path(node, later, target):
    s = await connect(node.url)
    async with s:
        await s.send_all((HEALTH if later else b"")
                         + b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % target)
        replies = await read_replies(s, 1 + later)
    assert [r.status for r in replies] == [200] * (1 + later), replies


# -- Host -------------------------------------------------------------------------

BAD_HOSTS = [b"", b"Host: [::1\r\n", b"Host: h:x\r\n", b"Host: u@h\r\n", b"Host: a/b\r\n",
             b"Host: \xff\xfe\r\n", b"Host: a\r\nHost: b\r\n"]


@pytest.mark.parametrize("later", [False, True], ids=["first", "handed_over"])
@pytest.mark.parametrize("path", [b"/users/a@b.c", b"/healthz"])
@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_a_bad_host_header_is_refused(node, later, path, host):
    """RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with more than one, or
    with a value that is no authority. The lean path served all three (a user route's
    answer), hypercorn refused the first two but served any one value."""
    s = await connect(node.url)
    await s.send_all((HEALTH if later else b"") + b"GET %s HTTP/1.1\r\n%s\r\n" % (path, host))
    raw = await read_until_closed(s, timeout=10)
    replies = parse_replies(raw)
    assert [r.status for r in replies] == [200] * later + [400], raw
    assert replies[-1].json()["error"] == "bad_request", raw


@pytest.mark.parametrize("host", [b"Host: \r\n", b"Host: h\r\n", b"Host: 127.0.0.1:80\r\n",
                                  b"Host: [::1]:8080\r\n", b"Host: my_host.example.\r\n"])
async def test_a_good_host_header_is_served(node, host):
    s = await connect(node.url)
    async with s:
        await s.send_all(b"GET /healthz HTTP/1.1\r\n%s\r\n" % host + USER.replace(
            b"Host: h\r\n", host))
        replies = await read_replies(s, 2)
    assert [r.status for r in replies] == [200, 404], replies
