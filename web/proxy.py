"""Forwarding a request to the owner of its key (web/peers.py: h11 on pooled
keep-alive trio streams).

Only urls from the current routing table are ever targets (the router picks them);
nothing a client sends chooses where a request goes. ``kstate-hops`` counts hops.
When an API token is set (web/auth.py sets :attr:`Proxy.sign`), a forwarded request
carries this node's signature in ``kstate-cluster-auth`` instead of the client's
``Authorization``; whatever the client sent in that header is never passed on.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from typing import Protocol

from quart import Response, g, has_request_context

from actors.messages import Refused
from web.peers import PeerError, PeerPool, PeerResponse

log = logging.getLogger(__name__)

HOPS_HEADER = "kstate-hops"
# The forwarding node's routing-table generation: a node whose own table is older
# waits for its next table instead of sending the request back (actors/router.py).
GENERATION_HEADER = "kstate-generation"
CLUSTER_AUTH_HEADER = "kstate-cluster-auth"
PATH_SAFE = "/@:!$&'()*+,;=-._~"  # RFC 3986 pchar (and '/'): kept as they are
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
})
# Set by our own server on every response: copying the owner's would send them twice.
SERVER_SET = frozenset({"date", "server"})


class _HasGet(Protocol):
    def get(self, key: str, default: str) -> str | None: ...


def hops_of(headers: _HasGet) -> int:
    raw = headers.get(HOPS_HEADER, "0")
    try:
        return max(0, int(raw or 0))
    except (TypeError, ValueError):
        return 0


def generation_of(headers: _HasGet) -> int | None:
    """The forwarding node's table generation, if this request was forwarded."""
    raw = headers.get(GENERATION_HEADER, "")
    try:
        return int(raw) if raw else None
    except (TypeError, ValueError):
        return None


class Proxy:
    def __init__(self, timeout: float) -> None:
        self._pool = PeerPool(timeout=timeout)
        self.forwarded = 0
        self.failures = 0
        # (method, path, query) -> kstate-cluster-auth value; set by web/auth.py.
        self.sign: Callable[[str, str, str], str] | None = None

    async def aclose(self) -> None:
        await self._pool.aclose()

    def statistics(self) -> dict[str, int]:
        return {"forwarded": self.forwarded, "failures": self.failures,
                "connections_opened": self._pool.opened,
                "connections_reused": self._pool.reused}

    async def exchange(self, *, method: str, url: str, path: str, query: bytes,
                       headers: list[tuple[str, str]], body: bytes, hops: int,
                       generation: int) -> PeerResponse | Refused:
        """Forward one request to ``url`` and return the owner's answer (headers
        minus hop-by-hop and the ones our server sets), or a 503 Refused."""
        dropped = {HOPS_HEADER, CLUSTER_AUTH_HEADER, GENERATION_HEADER}
        if self.sign is not None:
            dropped.add("authorization")  # this node vouches for the client instead
        out_headers = [(k, v) for k, v in headers
                       if k.lower() not in HOP_BY_HOP and k.lower() not in dropped]
        out_headers.append((HOPS_HEADER, str(hops + 1)))
        out_headers.append((GENERATION_HEADER, str(generation)))
        if self.sign is not None:
            out_headers.append((CLUSTER_AUTH_HEADER,
                                self.sign(method, path, query.decode("latin-1"))))
        # ``path`` is decoded: encode it again, or an email with '%41', '?' or '#' in a
        # /users/{email} path would reach the owner as another key (or another path).
        target = urllib.parse.quote(path, safe=PATH_SAFE)
        if query:
            target += "?" + query.decode("latin-1")
        try:
            resp = await self._pool.request(url, method, target, out_headers, body)
        except PeerError as exc:
            self.failures += 1
            log.warning("event=proxy_failed target=%s error=%r", url, exc)
            return Refused(503, "owner_unreachable", f"the owner {url} did not answer; retry",
                           1.0)
        self.forwarded += 1
        kept = [(k, v) for k, v in resp.headers
                if k.decode("latin-1").lower() not in HOP_BY_HOP
                and k.decode("latin-1").lower() not in SERVER_SET]
        if resp.status >= 200 and resp.status not in (204, 304):
            kept.append((b"content-length", str(len(resp.body)).encode()))
        return PeerResponse(resp.status, kept, resp.body)

    async def forward(self, *, method: str, url: str, path: str, query: bytes,
                      headers: list[tuple[str, str]], body: bytes, hops: int,
                      generation: int) -> Response | Refused:
        """:meth:`exchange` for a quart route: the answer as a quart Response."""
        if has_request_context():
            g.kstate_proxied = True  # web/metrics.py: latency kind="proxied"
        resp = await self.exchange(method=method, url=url, path=path, query=query,
                                   headers=headers, body=body, hops=hops,
                                   generation=generation)
        if isinstance(resp, Refused):
            return resp
        out = Response(resp.body, status=resp.status)
        out.headers.clear()
        for k, v in resp.headers:
            out.headers.add(k.decode("latin-1"), v.decode("latin-1"))
        return out
