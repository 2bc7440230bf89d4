"""The routing-aware client (kstate/client) and the nodes' API token, against a node the
test plays over a real socket (web/http1): the token goes on every attempt of a write,
retries included, never on a read or ``/groupinfo`` (open routes), and never appears in
what the client raises (tests/integration/test_client.py runs it against real nodes)."""

from __future__ import annotations

from functools import partial

import orjson
import pytest
import trio

from kstate.client import KstateClient, KstateError
from kstate.core.wire import GENERATION_HEADER, error_body
from web.http1 import Front, Request, Response, serve_front

TOKEN = "tok-client-0123456789abcdef"


class Node:
    """Owns every partition; refuses the first write 503 ``not_owner`` (certainly not
    applied: the client retries it), then accepts writes that carry the token."""

    def __init__(self) -> None:
        self.url = ""
        self.seen: list[tuple[bytes, bytes, bytes | None]] = []  # method, path, auth

    async def handle(self, req: Request) -> Response:
        auth = next((v for k, v in req.headers if k == b"authorization"), None)
        self.seen.append((req.method, req.path, auth))
        if req.path == b"/groupinfo":
            table = {f"t-{p}": self.url for p in range(10)}
            return Response(200, [(b"content-type", b"application/json"),
                                  (GENERATION_HEADER.encode(), b"1")], orjson.dumps(table))
        if req.method == b"GET":
            return Response(200, [(b"content-type", b"application/json"), (b"etag", b'"1-1"')],
                            orjson.dumps({"name": "A", "email": "a@b.c"}))
        if sum(1 for m, _, _ in self.seen if m != b"GET") == 1:
            return Response(503, [(b"content-type", b"application/json"),
                                  (b"retry-after", b"1")], error_body("not_owner", "moved"))
        if auth != b"Bearer " + TOKEN.encode():
            return Response(401, [(b"content-type", b"application/json"),
                                  (b"www-authenticate", b'Bearer realm="kstate"')],
                            error_body("unauthorized", "needs the token"))
        status = 201 if req.method == b"PUT" else 204
        return Response(status, [(b"etag", b'"1-2"')], b"")


async def test_every_write_attempt_carries_the_token_and_nothing_else_does():
    node = Node()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        node.url = await nursery.start(partial(serve_front, Front(handle=node.handle),
                                               "127.0.0.1:0", shutdown_trigger=stop.wait))
        async with KstateClient([node.url], token=TOKEN, retries=2,
                                max_retry_after=0.01) as kc:
            assert await kc.put("a@b.c", "A") == '"1-2"'  # the retry is accepted
            assert await kc.get("a@b.c") == {"name": "A", "email": "a@b.c"}
            assert await kc.delete("a@b.c", if_match='"1-2"') == '"1-2"'
        stop.set()
    writes = [auth for m, _, auth in node.seen if m != b"GET"]
    assert writes == [b"Bearer " + TOKEN.encode()] * 3  # PUT, its retry, DELETE
    assert all(auth is None for m, _, auth in node.seen if m == b"GET")
    assert any(p == b"/groupinfo" for _, p, _ in node.seen)


async def test_a_wrong_token_is_the_nodes_401_and_is_never_shown():
    node = Node()
    wrong = "tok-wrong-0123456789abcdef"
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        node.url = await nursery.start(partial(serve_front, Front(handle=node.handle),
                                               "127.0.0.1:0", shutdown_trigger=stop.wait))
        async with KstateClient([node.url], token=wrong, retries=2,
                                max_retry_after=0.01) as kc:
            with pytest.raises(KstateError) as info:
                await kc.put("a@b.c", "A")
            shown = f"{info.value} {info.value!r} {kc!r} {kc.statistics()}"
        stop.set()
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    assert wrong not in shown


@pytest.mark.parametrize("token", ["", "has space-0123456789", "new\nline-0123456789",
                                   "ünï-0123456789abcdef"])
def test_a_token_that_cannot_be_a_header_is_refused_without_quoting_it(token: str):
    with pytest.raises(ValueError, match=r"^token: ") as info:
        KstateClient(["127.0.0.1:1"], token=token)
    assert not token or token not in str(info.value)
