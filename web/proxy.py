"""Forwarding a request to the owner of its key (httpx on trio, pooled keep-alive).

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

import httpx
from quart import Response, g, has_request_context

from actors.messages import Refused

log = logging.getLogger(__name__)

HOPS_HEADER = "kstate-hops"
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


class Proxy:
    def __init__(self, timeout: float) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(2.0, timeout)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            follow_redirects=False, trust_env=False)
        self.forwarded = 0
        self.failures = 0
        # (method, path, query) -> kstate-cluster-auth value; set by web/auth.py.
        self.sign: Callable[[str, str, str], str] | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def forward(self, *, method: str, url: str, path: str, query: bytes,
                      headers: list[tuple[str, str]], body: bytes, hops: int
                      ) -> Response | Refused:
        dropped = {HOPS_HEADER, CLUSTER_AUTH_HEADER}
        if self.sign is not None:
            dropped.add("authorization")  # this node vouches for the client instead
        out_headers = [(k, v) for k, v in headers
                       if k.lower() not in HOP_BY_HOP and k.lower() not in dropped]
        out_headers.append((HOPS_HEADER, str(hops + 1)))
        if self.sign is not None:
            out_headers.append((CLUSTER_AUTH_HEADER,
                                self.sign(method, path, query.decode("latin-1"))))
        # ``path`` is decoded: encode it again, or an email with '%41', '?' or '#' in a
        # /users/{email} path would reach the owner as another key (or another path).
        target = f"http://{url}{urllib.parse.quote(path, safe=PATH_SAFE)}"
        if query:
            target += "?" + query.decode("latin-1")
        if has_request_context():
            g.kstate_proxied = True  # web/metrics.py: latency kind="proxied"
        try:
            resp = await self._client.request(method, target, headers=out_headers,
                                              content=body)
        except httpx.HTTPError as exc:
            self.failures += 1
            log.warning("event=proxy_failed target=%s error=%r", url, exc)
            return Refused(503, "owner_unreachable", f"the owner {url} did not answer; retry",
                           1.0)
        self.forwarded += 1
        kept = [(k, v) for k, v in resp.headers.multi_items()
                if k.lower() not in HOP_BY_HOP and k.lower() not in SERVER_SET]
        out = Response(resp.content, status=resp.status_code)
        out.headers.clear()
        for k, v in kept:
            out.headers.add(k, v)
        if resp.status_code >= 200 and resp.status_code not in (204, 304):
            out.headers["Content-Length"] = str(len(resp.content))
        return out
