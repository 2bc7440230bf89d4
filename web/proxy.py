"""Forwarding a request to the owner of its key (web/peers.py: h11 on pooled
keep-alive trio streams).

Only urls from the current routing table are ever targets (the router picks them);
nothing a client sends chooses where a request goes. ``kstate-hops`` counts hops and
``kstate-generation`` carries this node's table generation. When an API token is set,
a forwarded write carries this node's signature in ``kstate-cluster-auth``
(web/auth.py) instead of the client's ``Authorization``; whatever the client sent in
those headers is never passed on. The signature is made last, over the target, the
headers and the body exactly as they are sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from kstate.core.outcomes import Unavailable
from kstate.core.wire import CLUSTER_AUTH_HEADER, GENERATION_HEADER, HOPS_HEADER, quote_path
from web.peers import PeerError, PeerPool, PeerResponse

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
})
# Set by our own server on every response: copying the owner's would send them twice.
SERVER_SET = frozenset({"date", "server"})
# (target url, method, path, query, headers, body) -> the kstate-cluster-auth value
# (web/auth.py), or None when this request needs none.
Signer = Callable[[str, str, str, str, list[tuple[str, str]], bytes], str | None]


@dataclass(frozen=True, slots=True)
class Incoming:
    """The request to forward, as this node received it (``path`` decoded)."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes
    hops: int


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """The proxy's numbers (/metrics, /cluster)."""
    forwarded: int
    failures: int


class Proxy:
    """Forwards requests to their owner; counts what it forwarded and what failed."""

    def __init__(self, timeout: float, sign: Signer | None = None) -> None:
        self._pool = PeerPool(timeout=timeout)
        self._sign = sign
        self.forwarded = 0
        self.failures = 0

    async def aclose(self) -> None:
        await self._pool.aclose()

    def statistics(self) -> ProxyStats:
        return ProxyStats(forwarded=self.forwarded, failures=self.failures)

    async def exchange(self, req: Incoming, url: str, generation: int
                       ) -> PeerResponse | Unavailable:
        """Forward ``req`` to ``url`` and return the owner's answer (headers minus
        hop-by-hop and the ones our server sets), or Unavailable."""
        dropped = {HOPS_HEADER, CLUSTER_AUTH_HEADER, GENERATION_HEADER}
        if self._sign is not None:
            dropped.add("authorization")  # this node vouches for the client instead
        out_headers = [(k, v) for k, v in req.headers
                       if k.lower() not in HOP_BY_HOP and k.lower() not in dropped]
        out_headers.append((HOPS_HEADER, str(req.hops + 1)))
        out_headers.append((GENERATION_HEADER, str(generation)))
        if self._sign is not None:
            signature = self._sign(url, req.method, req.path, req.query.decode("latin-1"),
                                   out_headers, req.body)
            if signature is not None:
                out_headers.append((CLUSTER_AUTH_HEADER, signature))
        target = quote_path(req.path)
        if req.query:
            target += "?" + req.query.decode("latin-1")
        try:
            resp = await self._pool.request(url, req.method, target, out_headers, req.body)
        except PeerError as exc:
            self.failures += 1
            log.warning("event=proxy_failed target=%s error=%r", url, exc)
            return Unavailable("owner_unreachable", f"the owner {url} did not answer; retry")
        self.forwarded += 1
        # Content-Length is hop-by-hop here: whoever sends the answer on sets its own.
        kept = [(k, v) for k, v in resp.headers
                if k.decode("latin-1").lower() not in HOP_BY_HOP
                and k.decode("latin-1").lower() not in SERVER_SET]
        return PeerResponse(resp.status, kept, resp.body)
