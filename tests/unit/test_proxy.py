"""Forwarding (web/proxy.py) over real sockets to an owner the test plays: what goes
out (path re-encoded, headers byte for byte, hop-by-hop and unsendable ones dropped,
hops and generation set, the client's credentials replaced by this node's signature),
what comes back (the owner's answer without the headers our own server sets), and
what a missing answer becomes: ``owner_not_reached`` (certainly not sent) or
``owner_no_answer`` (sent, ambiguous), a conditional write never sent twice, TLS."""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from urllib.parse import unquote

import pytest
import trio
import trustme

from kstate.core.outcomes import Unavailable
from kstate.core.wire import CLUSTER_AUTH_HEADER, GENERATION_HEADER, HOPS_HEADER
from tests.support.http1 import connect
from tools.procs import free_port
from web.auth import Credential, Signed, cluster_key, signer, verify
from web.http1 import Front, Request, Response, serve_front
from web.proxy import Incoming, PeerResponse, Proxy

ANSWER = b'{"name":"N","email":"a@b.c"}'


class Owner:
    """The owner, played by a lean front that records every request it got."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.delay = 0.0

    async def handle(self, req: Request) -> Response:
        self.requests.append(req)
        await trio.sleep(self.delay)
        return Response(201, [(b"content-type", b"application/json"), (b"etag", b'"3-7"'),
                              (b"server", b"owner"), (b"x-extra", b"kept")], ANSWER)


@asynccontextmanager
async def owner_at(ssl_context: ssl.SSLContext | None = None
                   ) -> AsyncIterator[tuple[Owner, str]]:
    owner = Owner()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(partial(serve_front, Front(handle=owner.handle,
                                                              ssl_context=ssl_context),
                                           "127.0.0.1:0", shutdown_trigger=stop.wait))
        yield owner, addr
        stop.set()


def incoming(method: str = "PUT", headers: list[tuple[bytes, bytes]] | None = None,
             body: bytes = b'{"name":"N"}') -> Incoming:
    return Incoming(method=method, path="/users/a%41?#b@c.d", query=b"x=1&y=%FF",
                    headers=headers or [], body=body, hops=1)


async def test_forwarded_request_and_answer_byte_for_byte():
    signed: list[tuple[str, str, str, str, list[tuple[str, str]], bytes]] = []

    def sign(target: str, method: str, path: str, query: str,
             headers: list[tuple[str, str]], body: bytes) -> str:
        signed.append((target, method, path, query, list(headers), body))
        return "v2 123 abc def"

    client_headers = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer secret-client-token"),
        (b"connection", b"keep-alive"), (b"keep-alive", b"5"), (b"te", b"trailers"),
        (b"host", b"client-chose-this"), (b"content-length", b"12"),
        (HOPS_HEADER.encode(), b"1"), (GENERATION_HEADER.encode(), b"99"),
        (CLUSTER_AUTH_HEADER.encode(), b"forged"), (b"if-match", b'"3-6"'),
        (b"x-note", b"caf\xc3\xa9 \xff raw"),  # obs-text travels as it came
        (b"x-tab", b"a\tb"),
        (b"x-bad", b"a\x01b"), (b"x-nul", b"a\x00b"), (b"x-crlf", b"a\r\nx-injected: 1"),
        (b"bad name", b"v"),  # neither parser lets these in; dropped if they ever come
    ]
    async with owner_at() as (owner, addr):
        proxy = Proxy(2.0, sign=sign)
        answer = await proxy.exchange(incoming(headers=client_headers), addr, 12)
        assert isinstance(answer, PeerResponse)
        got = owner.requests[0]
        assert (got.method, got.path, got.query) == (b"PUT", b"/users/a%2541%3F%23b@c.d",
                                                     b"x=1&y=%FF")
        assert got.body == b'{"name":"N"}'
        h = dict(got.headers)
        assert h[b"host"] == addr.encode()
        assert h[HOPS_HEADER.encode()] == b"2"
        assert h[GENERATION_HEADER.encode()] == b"12"
        assert h[CLUSTER_AUTH_HEADER.encode()] == b"v2 123 abc def"  # ours, not the client's
        ((target, method, path, query, out, signed_body),) = signed
        assert (target, method, path, query) == (addr, "PUT", "/users/a%41?#b@c.d",
                                                 "x=1&y=%FF")
        assert signed_body == got.body  # the bytes sent
        # every header sent but the ones the pool adds and the signature, in order
        sent = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in got.headers
                if k not in (b"host", b"content-length", CLUSTER_AUTH_HEADER.encode())]
        assert out == sent
        assert b"authorization" not in h  # this node vouches for the client instead
        for hop in (b"keep-alive", b"te", b"connection"):
            assert hop not in h
        assert h[b"content-length"] == b"12"  # the pool's own, for the body it sent
        assert h[b"if-match"] == b'"3-6"'
        assert h[b"x-note"] == b"caf\xc3\xa9 \xff raw"
        assert h[b"x-tab"] == b"a\tb"
        for name in (b"x-bad", b"x-nul", b"x-crlf", b"x-injected", b"bad name"):
            assert name not in h
        assert proxy.statistics().dropped_headers == 4
        assert answer.status == 201
        assert answer.body == ANSWER
        assert dict(answer.headers) == {b"content-type": b"application/json",
                                        b"etag": b'"3-7"', b"x-extra": b"kept"}
        assert proxy.statistics().forwarded == 1
        # Without a token nothing is signed and the client's Authorization travels.
        plain = Proxy(2.0)
        await plain.exchange(incoming(headers=client_headers), addr, 12)
        h = dict(owner.requests[1].headers)
        assert h[b"authorization"] == b"Bearer secret-client-token"
        assert CLUSTER_AUTH_HEADER.encode() not in h
        await proxy.aclose()
        await plain.aclose()


async def test_the_real_signature_verifies_on_what_the_owner_received():
    """web/auth.py's signer over the proxy's request; verified from the owner's side
    with nothing but the bytes it received. Reads are not signed."""
    key = cluster_key("a-token-of-sixteen-chars")
    async with owner_at() as (owner, addr):
        proxy = Proxy(2.0, sign=signer("a-token-of-sixteen-chars"))
        req = Incoming(method="PUT", path="/users/\u00fc%41@b.c", query=b"q=%FF",
                       headers=[(b"content-type", b"application/json"),
                                (b"if-match", b'"1-2"'), (b"if-match", b'"1-3"'),
                                (b"x-note", b"\xff")],
                       body=b'{"name":"\xc3\xbc"}', hops=0)
        await proxy.exchange(req, addr, 7)
        await proxy.exchange(Incoming("GET", "/users/a@b.c", b"", [], b"", 0), addr, 7)
        put, get = owner.requests
        received = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in put.headers]
        header = dict(received)[CLUSTER_AUTH_HEADER]
        s = Signed.of(addr, put.method.decode(), unquote(put.path.decode()),
                      put.query.decode(), received, put.body)
        assert isinstance(verify(key, header, s, time.time(), 30.0), Credential)
        # signed for this target only
        other = dataclasses.replace(s, target="127.0.0.1:1")
        assert verify(key, header, other, time.time(), 30.0) == "does not match the request"
        assert CLUSTER_AUTH_HEADER.encode() not in dict(get.headers)
        await proxy.aclose()


async def test_an_owner_nobody_listens_for_is_not_reached():
    proxy = Proxy(1.0)
    answer = await proxy.exchange(incoming(), f"127.0.0.1:{free_port()}", 1)
    assert isinstance(answer, Unavailable)
    assert answer.reason == "owner_not_reached"
    assert answer.retry_after >= 1
    stats = proxy.statistics()
    assert (stats.failures, stats.not_reached, stats.no_answer) == (1, 1, 0)
    await proxy.aclose()


async def test_an_owner_that_does_not_answer_in_time_is_ambiguous():
    async with owner_at() as (owner, addr):
        # the timeout leaves a loaded machine time to connect (a connect that misses
        # it is owner_not_reached, another test); the owner answers well after it
        owner.delay = 4.0
        proxy = Proxy(1.5)
        with trio.fail_after(6):
            answer = await proxy.exchange(incoming(), addr, 1)
        assert isinstance(answer, Unavailable)
        assert answer.reason == "owner_no_answer"
        assert len(owner.requests) == 1  # it got the write: it may apply it
        assert proxy.statistics().no_answer == 1
        await proxy.aclose()


async def close_on_second_request(stream: trio.SocketStream, seen: list[bytes]) -> None:
    """Answer a connection's first request; read the head of its next one and close
    unanswered (a peer's idle timer racing the next request)."""
    for n in range(2):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                await stream.aclose()
                return
            data += chunk
        seen.append(data.split(b"\r\n")[0])
        if n == 0:
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await stream.aclose()


@pytest.mark.parametrize(("if_match", "sent_times", "reason"), [
    (None, 2, None),  # unconditional: sent again on a new connection, answered
    (b'"1-2"', 1, "owner_no_answer"),  # conditional: never twice, ambiguous
])
async def test_a_write_on_a_connection_closed_unanswered(if_match, sent_times, reason):
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(
            trio.serve_tcp, partial(close_on_second_request, seen=seen), 0, host="127.0.0.1"))
        addr = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        proxy = Proxy(2.0)
        first = await proxy.exchange(incoming("GET", body=b""), addr, 1)
        assert isinstance(first, PeerResponse)
        headers = [] if if_match is None else [(b"if-match", if_match)]
        answer = await proxy.exchange(incoming("PUT", headers=headers), addr, 1)
        puts = [line for line in seen if line.startswith(b"PUT")]
        assert len(puts) == sent_times
        if reason is None:
            assert isinstance(answer, PeerResponse)
        else:
            assert isinstance(answer, Unavailable)
            assert answer.reason == reason
        await proxy.aclose()
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def cas() -> tuple[trustme.CA, trustme.CA]:
    return trustme.CA(), trustme.CA()


def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_forwarding_over_tls_verifies_the_owner(cas):
    good, other = cas
    async with owner_at(server_ctx(good)) as (owner, addr):
        proxy = Proxy(2.0, ssl_context=client_ctx(good))
        answer = await proxy.exchange(incoming(), addr, 1)
        assert isinstance(answer, PeerResponse)
        assert answer.status == 201
        # An owner whose certificate the CA did not sign is never sent the request.
        wary = Proxy(2.0, ssl_context=client_ctx(other))
        answer = await wary.exchange(incoming(), addr, 1)
        assert isinstance(answer, Unavailable)
        assert answer.reason == "owner_not_reached"
        assert len(owner.requests) == 1
        # A plain-text owner is not reached by a TLS proxy either (and vice versa).
        await proxy.aclose()
        await wary.aclose()
    async with owner_at() as (owner, addr):
        tls_proxy = Proxy(2.0, ssl_context=client_ctx(good))
        answer = await tls_proxy.exchange(incoming(), addr, 1)
        assert isinstance(answer, Unavailable)
        assert answer.reason == "owner_not_reached"
        assert owner.requests == []
        await tls_proxy.aclose()


async def test_the_owner_sees_one_request_per_exchange_on_a_kept_connection():
    async with owner_at() as (owner, addr):
        proxy = Proxy(2.0)
        for _ in range(5):
            assert isinstance(await proxy.exchange(incoming("GET", body=b""), addr, 1),
                              PeerResponse)
        assert len(owner.requests) == 5
        stream = await connect(addr)  # the owner still takes other connections
        await stream.aclose()
        await proxy.aclose()


async def test_forwarded_gets_take_a_pipelined_link_and_carry_the_same_request():
    """With :meth:`Proxy.run` running, GETs go on a link (web/http1/pipeline.py): the
    owner receives exactly what a GET through the pool carries, the client gets the
    same answer; once the owner is gone, a GET is owner_not_reached as before."""
    headers = [(b"authorization", b"Bearer t"), (b"connection", b"keep-alive"),
               (b"x-note", b"caf\xc3\xa9 \xff"), (b"x-bad", b"a\x01b"),
               (HOPS_HEADER.encode(), b"1"), (b"if-none-match", b'"1-2"')]
    proxy = Proxy(2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        async with owner_at() as (owner, addr):
            first = await proxy.exchange(incoming("GET", headers=headers, body=b""), addr, 5)
            with trio.fail_after(5):
                while proxy.statistics().pipelined == 0:
                    await trio.sleep(0.01)
                    later = await proxy.exchange(incoming("GET", headers=headers, body=b""),
                                                 addr, 5)
            assert isinstance(first, PeerResponse)
            assert later == first
            through_pool, on_link = owner.requests[0], owner.requests[-1]
            assert (on_link.method, on_link.path, on_link.query, on_link.headers,
                    on_link.body) == (through_pool.method, through_pool.path,
                                      through_pool.query, through_pool.headers, b"")
            assert (b"authorization", b"Bearer t") in on_link.headers
            assert (HOPS_HEADER.encode(), b"2") in on_link.headers
        answer = await proxy.exchange(incoming("GET", body=b""), addr, 5)
        assert isinstance(answer, Unavailable)
        assert answer.reason == "owner_not_reached"
        nursery.cancel_scope.cancel()
    await proxy.aclose()
