"""A node speaks HTTP/1.1 only, so every bound of one connection (README, "Resources")
bounds one request at a time: the HTTP/2 preface is answered 400
``http2_not_supported`` and the connection closed, plain or over TLS (whatever ALPN
chose), and ``Upgrade: h2c`` is ignored (answered in HTTP/1.1, the connection going
on in HTTP/1.1), on the first request and on later ones of a connection handed over
to hypercorn, whose own HTTP/1.1 handler would switch to h2 on either. The node is
offline (tests/support/offline.py) on loopback."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from tests.support.http1 import Reply, connect, h2_preface, parse_replies, read_until_closed
from tests.support.offline import offline_services
from web.app import create_app
from web.http1 import serve_front
from web.server import FrontSettings, build_front
from web.tls import server_context

H2C = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: h\r\n%s\r\n"
USER = b"GET /users/a@b.c HTTP/1.1\r\nHost: h\r\n%s\r\n"


@asynccontextmanager
async def node(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    s = offline_services()
    front = build_front(s, create_app(s), FrontSettings(), ssl_context)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        yield await nursery.start(partial(serve_front, front, "127.0.0.1:0",
                                          shutdown_trigger=stop.wait))
        stop.set()
        await s.proxy.aclose()


def refused_in_http1(data: bytes) -> None:
    assert data.startswith(b"HTTP/1.1 400 "), data[:40]  # not an h2 SETTINGS frame
    [reply] = parse_replies(data)
    assert reply.headers[b"connection"] == b"close"
    assert reply.json() == {"error": "http2_not_supported",
                            "message": "this server speaks HTTP/1.1 only"}


async def next_reply(stream: trio.abc.Stream) -> tuple[bytes, Reply]:
    """The raw bytes of the next complete answer, and the answer."""
    data = b""
    with trio.fail_after(5):
        while not parse_replies(data):
            chunk = await stream.receive_some(65536)
            assert chunk, data
            data += chunk
    [reply] = parse_replies(data)
    return data, reply


async def test_the_http2_preface_is_refused_in_http1_on_a_plain_connection():
    async with node() as addr:
        s = await connect(addr)
        await s.send_all(h2_preface())
        refused_in_http1(await read_until_closed(s))


@pytest.mark.parametrize("alpn", [["http/1.1"], ["h2", "http/1.1"], ["h2"], None])
async def test_the_http2_preface_is_refused_in_http1_over_tls(tmp_path: Path, alpn):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    if alpn is not None:
        client.set_alpn_protocols(alpn)
    async with node(server_context(str(tmp_path / "cert.pem"),
                                   str(tmp_path / "key.pem"))) as addr:
        tls = trio.SSLStream(await connect(addr), client, server_hostname="127.0.0.1")
        await tls.do_handshake()
        assert tls.selected_alpn_protocol() == ("http/1.1" if alpn and "http/1.1" in alpn
                                                else None)
        await tls.send_all(h2_preface())
        refused_in_http1(await read_until_closed(tls))


def http1_answers(data: bytes) -> list[Reply]:
    """The HTTP/1.1 answers that are all of ``data`` (no 101, no h2 frame anywhere)."""
    replies = parse_replies(data)
    assert data.startswith(b"HTTP/1.1 "), data[:40]
    # (a status line's count: the refusal's message says "HTTP/1.1" too)
    assert len(re.findall(rb"HTTP/1\.1 [0-9]{3} ", data)) == len(replies), data
    assert 101 not in [r.status for r in replies]
    return replies


# Each upgrade request is followed at once by an h2 client's preface: a server that
# switched (answered 101) then has what it needs to answer in h2, as it waits for it
# otherwise; one that did not reads it as one more HTTP/1.1 request, refused as on a
# connection's first request.


def preface_refused(replies: list[Reply]) -> None:
    """``replies`` end with the preface's refusal, right after the first answer."""
    assert len(replies) == 2, replies
    assert replies[1].status == 400
    assert replies[1].json()["error"] == "http2_not_supported"


@pytest.mark.parametrize("first", [HEALTHZ, USER], ids=["handed-over", "hot"])
async def test_an_h2c_upgrade_is_answered_in_http1(first):
    async with node() as addr, await connect(addr) as s:
        await s.send_all(first % H2C + h2_preface())
        replies = http1_answers(await read_until_closed(s))
        # /healthz is ok; the offline node's partitions have no owner yet
        assert replies[0].status == (200 if first is HEALTHZ else 503)
        preface_refused(replies)


async def test_a_handed_over_connection_never_turns_http2():
    """hypercorn parses the later requests of a connection it was given: neither an
    h2c upgrade nor the preface there makes it speak h2."""
    async with node() as addr, await connect(addr) as s:
        await s.send_all(HEALTHZ % b"")  # not hot: hypercorn serves the connection
        _, reply = await next_reply(s)
        assert reply.status == 200
        await s.send_all(HEALTHZ % H2C + h2_preface())
        replies = http1_answers(await read_until_closed(s))
        assert replies[0].status == 200  # the upgrade ignored: answered, and in HTTP/1.1
        preface_refused(replies)
