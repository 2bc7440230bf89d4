"""Forwarding (web/proxy.py) over real sockets to an owner the test plays: what goes
out (path re-encoded, hop-by-hop headers dropped, hops and generation set, the client's
credentials replaced by this node's signature) and what comes back (the owner's answer
without the headers our own server sets)."""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import unquote

import h11
import trio

from kstate.core.outcomes import Unavailable
from kstate.core.wire import CLUSTER_AUTH_HEADER, GENERATION_HEADER, HOPS_HEADER
from tools.procs import free_port
from web.auth import Credential, Signed, cluster_key, signer, verify
from web.proxy import Incoming, Proxy


class Owner:
    """One-request-per-connection HTTP server that records what it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[h11.Request, bytes]] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        req: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                req = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        assert req is not None
        self.requests.append((req, body))
        answer = b'{"name":"N","email":"a@b.c"}'
        out = conn.send(h11.Response(status_code=201, headers=[
            ("content-type", "application/json"), ("etag", '"3-7"'), ("date", "then"),
            ("server", "owner"), ("x-extra", "kept"), ("content-length", str(len(answer))),
            ("connection", "keep-alive")]))
        out += conn.send(h11.Data(data=answer)) + conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        await trio.sleep(0.05)
        await stream.aclose()


def headers_of(req: h11.Request) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in req.headers}


async def test_forwarded_request_and_answer():
    owner = Owner()
    port = free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, owner.handle, port)
        signed: list[tuple[str, str, str, str, list[tuple[str, str]], bytes]] = []

        def sign(target: str, method: str, path: str, query: str,
                 headers: list[tuple[str, str]], body: bytes) -> str:
            signed.append((target, method, path, query, list(headers), body))
            return "v2 123 abc def"

        proxy = Proxy(2.0, sign=sign)
        req = Incoming(method="PUT", path="/users/a%41?#b@c.d", query=b"x=1",
                       headers=[("Content-Type", "application/json"),
                                ("Authorization", "Bearer secret-client-token"),
                                ("Connection", "keep-alive"), ("Keep-Alive", "5"),
                                ("TE", "trailers"), ("Host", "client-chose-this"),
                                (HOPS_HEADER, "1"), (GENERATION_HEADER, "99"),
                                (CLUSTER_AUTH_HEADER, "forged"), ("If-Match", '"3-6"'),
                                ("X-Note", "hello")],
                       body=b'{"name":"N"}', hops=1)
        answer = await proxy.exchange(req, f"127.0.0.1:{port}", 12)
        assert not isinstance(answer, Unavailable)
        got, body = owner.requests[0]
        assert (got.method, got.target) == (b"PUT", b"/users/a%2541%3F%23b@c.d?x=1")
        assert body == b'{"name":"N"}'
        h = headers_of(got)
        assert h["host"] == f"127.0.0.1:{port}"
        assert h[HOPS_HEADER] == "2"
        assert h[GENERATION_HEADER] == "12"
        assert h[CLUSTER_AUTH_HEADER] == "v2 123 abc def"  # ours, not the client's
        ((target, method, path, query, out, signed_body),) = signed
        assert (target, method, path, query) == (f"127.0.0.1:{port}", "PUT",
                                                 "/users/a%41?#b@c.d", "x=1")
        assert signed_body == body  # the bytes sent
        # every header sent but the two the connection adds, in order
        sent = [(k.decode(), v.decode()) for k, v in got.headers
                if k not in (b"host", b"content-length", CLUSTER_AUTH_HEADER.encode())]
        assert [(k.lower(), v) for k, v in out] == sent
        assert "authorization" not in h  # this node vouches for the client instead
        for hop in ("keep-alive", "te"):
            assert hop not in h
        assert h["if-match"] == '"3-6"'
        assert h["x-note"] == "hello"
        assert answer.status == 201
        assert answer.body == b'{"name":"N","email":"a@b.c"}'
        kept = {k.decode(): v.decode() for k, v in answer.headers}
        assert kept == {"content-type": "application/json", "etag": '"3-7"',
                        "x-extra": "kept"}
        assert proxy.statistics().forwarded == 1
        # Without a token nothing is signed and the client's Authorization travels.
        plain = Proxy(2.0)
        await plain.exchange(req, f"127.0.0.1:{port}", 12)
        h = headers_of(owner.requests[1][0])
        assert h["authorization"] == "Bearer secret-client-token"
        assert CLUSTER_AUTH_HEADER not in h
        await proxy.aclose()
        await plain.aclose()
        nursery.cancel_scope.cancel()


async def test_the_real_signature_verifies_on_what_the_owner_received():
    """web/auth.py's signer over the proxy's request; verified from the owner's side
    with nothing but the bytes it received. Reads are not signed."""
    owner = Owner()
    port = free_port()
    key = cluster_key("a-token-of-sixteen-chars")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, owner.handle, port)
        proxy = Proxy(2.0, sign=signer("a-token-of-sixteen-chars"))
        req = Incoming(method="PUT", path="/users/ü%41@b.c", query=b"q=%FF",
                       headers=[("Content-Type", "application/json"), ("If-Match", '"1-2"'),
                                ("if-match", '"1-3"')],
                       body=b'{"name":"\xc3\xbc"}', hops=0)
        await proxy.exchange(req, f"127.0.0.1:{port}", 7)
        await proxy.exchange(Incoming("GET", "/users/a@b.c", b"", [], b"", 0),
                             f"127.0.0.1:{port}", 7)
        (put, body), (get, _) = owner.requests
        received = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in put.headers]
        header = dict(received)[CLUSTER_AUTH_HEADER]
        s = Signed.of(f"127.0.0.1:{port}", put.method.decode(),
                      unquote(put.target.decode().partition("?")[0]),
                      put.target.decode().partition("?")[2], received, body)
        assert isinstance(verify(key, header, s, time.time(), 30.0), Credential)
        # signed for this target only
        other = dataclasses.replace(s, target="127.0.0.1:1")
        assert verify(key, header, other, time.time(), 30.0) == "does not match the request"
        assert CLUSTER_AUTH_HEADER.encode() not in dict(get.headers)
        await proxy.aclose()
        nursery.cancel_scope.cancel()


async def test_unreachable_owner_is_unavailable():
    proxy = Proxy(1.0)
    req = Incoming("GET", "/users/a@b.c", b"", [], b"", 0)
    answer = await proxy.exchange(req, f"127.0.0.1:{free_port()}", 1)
    assert isinstance(answer, Unavailable)
    assert answer.reason == "owner_unreachable"
    assert proxy.statistics().failures == 1
    await proxy.aclose()
