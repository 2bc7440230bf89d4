"""What a client sees on one connection to a live node when the lean front refuses a
request or hands the connection over to hypercorn part way: answers already computed
for the requests before a refused one are still sent, in order, before the refusal; a
hot request on a handed-over connection is held to the body deadline; a blank line
before a handed-over request is skipped, as the lean path skips it.

Raw bytes over real sockets (tests/support/http1.py reads them back)."""

from __future__ import annotations

import random

import trio

from kstate.core.partitioner import partition_for
from tests.support.http1 import connect, parse_replies, read_replies, read_until_closed
from tests.support.workload import Workload, load_users
from tools.procs import wait_ready, wait_stable

PARTITIONS = 10
BODY_TIMEOUT = 1.0
# A deadline fires up to a tick (at most 0.5 s) after it; the rest is a loaded 2-core
# machine's scheduling slack.
MARGIN = 5.0
MAX_HEAD = 4096


async def _stored(client, node, email: str) -> bytes:
    r = await client.put(f"{node.base}/users/{email}", json={"name": "Pipe"})
    assert r.status_code in (200, 201), r.text
    return r.content


async def test_answers_before_a_refused_request_are_sent_first(make_node, client):
    node = make_node(KSTATE_HTTP_BODY_TIMEOUT=str(BODY_TIMEOUT))
    await wait_ready(client, node)
    want = await _stored(client, node, "a@b.c")
    get = b"GET /users/a%40b.c HTTP/1.1\r\nHost: x\r\n\r\n"

    # a malformed request behind a good one: the good one's answer, then the 400
    s = await connect(node.url)
    await s.send_all(get + b"GET /users/\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
    first, refused = parse_replies(await read_until_closed(s))
    assert (first.status, first.body) == (200, want)
    assert refused.status == 400
    assert refused.json()["error"] == "bad_request"

    # a head too large behind a good one: the answer, then the 431
    s = await connect(node.url)
    await s.send_all(get + b"GET /users/a%40b.c HTTP/1.1\r\nX-Pad: "
                     + b"p" * 20_000 + b"\r\n\r\n")
    first, refused = parse_replies(await read_until_closed(s))
    assert (first.status, first.body) == (200, want)
    assert refused.status == 431


async def test_an_answer_is_not_held_behind_a_body_that_never_completes(make_node, client):
    """The GET's answer comes at once, not when the PUT behind it is given up on (the
    408, at the body timeout)."""
    body_timeout = 3 * MARGIN
    node = make_node(KSTATE_HTTP_BODY_TIMEOUT=str(body_timeout))
    await wait_ready(client, node)
    want = await _stored(client, node, "a@b.c")
    s = await connect(node.url)
    await s.send_all(b"GET /users/a%40b.c HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"PUT /users/a%40b.c HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 5\r\n\r\nab")
    sent = trio.current_time()
    [first] = await read_replies(s, 1, timeout=MARGIN)
    assert (first.status, first.body) == (200, want)
    assert trio.current_time() - sent < body_timeout / 2
    [refused] = parse_replies(await read_until_closed(s, body_timeout + MARGIN))
    assert refused.status == 408
    assert refused.json()["error"] == "request_timeout"
    assert trio.current_time() - sent >= body_timeout - 0.5


async def test_a_refusal_of_a_head_request_has_no_body(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    s = await connect(node.url)
    await s.send_all(b"HEAD /users/\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await read_until_closed(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data
    assert b"content-length: " in head
    assert body == b"", data


async def test_a_hot_body_on_a_handed_over_connection_has_the_body_deadline(
        make_node, client):
    node = make_node(KSTATE_HTTP_BODY_TIMEOUT=str(BODY_TIMEOUT))
    await wait_ready(client, node)
    s = await connect(node.url)
    await s.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"PUT /users/a@b.com HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n")
    started = trio.current_time()
    replies = parse_replies(await read_until_closed(s, BODY_TIMEOUT + MARGIN))
    assert [r.status for r in replies] == [200, 408], replies
    assert replies[1].json()["error"] == "request_timeout"
    assert trio.current_time() - started >= BODY_TIMEOUT - 0.05
    r = await client.get(f"{node.base}/users/a@b.com")
    assert r.status_code == 404, r.text  # the incomplete write was never applied


async def test_a_blank_line_before_a_handed_over_request_is_skipped(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    s = await connect(node.url)
    await s.send_all(b"PUT /users/a%40b.c HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                     b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    put, healthz = parse_replies(await read_until_closed(s))
    assert put.status < 500, put
    assert (healthz.status, healthz.json()) == (200, {"status": "ok"}), healthz


async def test_a_head_too_large_on_the_owner_is_answered_to_its_own_client(
        make_node, client):
    """Forwarded GETs share one pipelined link to the owner: a head that is just under
    the limit on the forwarding node and over it once forwarded (the node adds its own
    headers) is refused 431 by the owner, and that 431 must reach only its client."""
    a = make_node(KSTATE_HTTP_MAX_HEAD_BYTES=str(MAX_HEAD))
    b = make_node(KSTATE_HTTP_MAX_HEAD_BYTES=str(MAX_HEAD))
    for n in (a, b):
        await wait_ready(client, n)
    table = await wait_stable(client, [a, b], PARTITIONS)
    topic = next(iter(table)).rsplit("-", 1)[0]
    emails = [f"p{i}@pipe.example" for i in range(40)]
    wl = Workload(client, rng=random.Random(3))
    await load_users(wl, [a.base], emails)
    remote = [e for e in emails
              if table[f"{topic}-{partition_for(e.encode(), PARTITIONS)}"] == b.url]
    assert remote

    start = f"GET /users/{remote[0]} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode()
    padded = start + b"p" * (MAX_HEAD - 8 - len(start)) + b"\r\n\r\n"
    assert len(padded) == MAX_HEAD - 4
    statuses: list[int] = []
    padded_statuses: list[int] = []

    async def normal(i: int) -> None:
        for j in range(40):
            email = remote[(i + j) % len(remote)]
            r = await client.get(f"{a.base}/users/{email}")
            statuses.append(r.status_code)
            assert (r.status_code, r.content) == (200, wl.known[email].value), r.text

    async def oversized() -> None:
        for _ in range(20):
            s = await connect(a.url)
            async with s:
                await s.send_all(padded)
                [reply] = await read_replies(s, 1, timeout=15)
            padded_statuses.append(reply.status)
            await trio.sleep(0.01)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for i in range(32):
                nursery.start_soon(normal, i)
            nursery.start_soon(oversized)
    assert len(statuses) == 32 * 40
    assert set(padded_statuses) == {431}, padded_statuses


def _heads(data: bytes, bodies: list[bool]) -> list[dict[bytes, bytes]]:
    """The header blocks of answers read as raw bytes; ``bodies[i]``: whether answer i
    carries its body (not a HEAD's), skipped by its Content-Length."""
    out: list[dict[bytes, bytes]] = []
    for has_body in bodies:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, data
        lines = head.split(b"\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(b":") for line in lines[1:])}
        fields[b":status"] = lines[0].split(b" ")[1]
        out.append(fields)
        if has_body:
            data = data[int(fields[b"content-length"]):]
    assert data == b"", data  # nothing after a HEAD's header block
    return out


async def test_a_forwarded_head_has_the_length_of_the_get(make_node, client):
    """Whichever node answers, on the lean path or on a connection handed over to
    hypercorn: the same status, Content-Length and ETag as the owner's GET, no body."""
    a, b = make_node(), make_node()
    for n in (a, b):
        await wait_ready(client, n)
    table = await wait_stable(client, [a, b], PARTITIONS)
    topic = next(iter(table)).rsplit("-", 1)[0]
    emails = [f"h{i}@head.example" for i in range(20)]
    on_b = next(e for e in emails
                if table[f"{topic}-{partition_for(e.encode(), PARTITIONS)}"] == b.url)
    put = await client.put(f"{a.base}/users/{on_b}", json={"name": "Head " * 9})
    assert put.status_code == 201, put.text
    got = await client.get(f"{b.base}/users/{on_b}")
    want = (b"200", str(len(got.content)).encode(), got.headers["etag"].encode())
    head = f"HEAD /users/{on_b} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    for node in (a, b):  # a forwards, b owns
        s = await connect(node.url)
        await s.send_all(head)
        [h] = _heads(await read_until_closed(s), [False])
        assert (h[b":status"], h[b"content-length"], h[b"etag"]) == want, (node.url, h)
        s = await connect(node.url)
        await s.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + head)
        healthz, h = _heads(await read_until_closed(s), [True, False])
        assert healthz[b":status"] == b"200"
        assert (h[b":status"], h[b"content-length"], h[b"etag"]) == want, (node.url, h)
