"""The client's HTTP/1.1 exchanges with the nodes, on httpcore's keep-alive pool.

httpcore rather than httpx's ``AsyncClient`` on top of it: the client builds each
request from parts it already has (the node's ``host:port``, the percent-encoded path)
and reads three headers of the answer, so httpx's URL parsing, header and cookie
merging, cookie jar, auth and redirect flows, and response models were most of the
client's own CPU per request (docs/design.md, "Performance"). What stays is what the
client relies on: the pool and its limits, the timeouts, TLS, and httpcore's errors,
which tell a request that never left (``NOT_SENT``) from one that may have arrived.
"""

from __future__ import annotations

import ssl
import urllib.parse
from dataclasses import dataclass

import httpcore

# No HTTP answer came (the node is down, stalled, or the connection broke).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
    httpcore.UnsupportedProtocol)
# ... and the request certainly did not reach the node: no connection was made.
NOT_SENT: tuple[type[Exception], ...] = (
    httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout)

_MAX_ORIGINS = 1024  # parsed node addresses kept (a cluster has far fewer)


@dataclass(frozen=True, slots=True)
class Answer:
    """A node's answer, read whole: ``headers`` by lower-case name."""

    status: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class _Origin:
    host_header: bytes
    host: bytes
    port: int


def timeouts(timeout: float) -> dict[str, float]:
    """httpcore's timeouts for one request: ``timeout`` for the pool, writing and each
    read; connecting, at most 2 s (a live node accepts at once)."""
    return {"connect": min(2.0, timeout), "read": timeout, "write": timeout,
            "pool": timeout}


class Http:
    """Keep-alive connections to the nodes, at most ``max_connections`` in all."""

    def __init__(self, *, tls: ssl.SSLContext | None, max_connections: int) -> None:
        self._scheme = b"http" if tls is None else b"https"
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls, max_connections=max_connections,
            max_keepalive_connections=max_connections, keepalive_expiry=5.0)
        self._origins: dict[str, _Origin] = {}

    def _origin(self, node: str) -> _Origin:
        origin = self._origins.get(node)
        if origin is None:
            parts = urllib.parse.urlsplit(f"//{node}")
            default = 80 if self._scheme == b"http" else 443
            origin = _Origin(node.encode("idna"), (parts.hostname or "").encode("idna"),
                             parts.port or default)
            if len(self._origins) >= _MAX_ORIGINS:
                self._origins.clear()
            self._origins[node] = origin
        return origin

    async def request(self, method: bytes, node: str, target: bytes,
                      headers: list[tuple[bytes, bytes]], body: bytes | None,
                      limits: dict[str, float]) -> Answer:
        """Send one request to ``node`` (``host:port``) and read its answer whole;
        raises one of ``TRANSPORT_ERRORS`` when no answer came."""
        origin = self._origin(node)
        head = [(b"host", origin.host_header), *headers]
        if body is not None:
            head.append((b"content-length", b"%d" % len(body)))
        url = httpcore.URL(scheme=self._scheme, host=origin.host, port=origin.port,
                           target=target)
        r = await self._pool.request(method, url, headers=head, content=body,
                                     extensions={"timeout": limits})
        return Answer(r.status,
                      {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in r.headers},
                      r.content)

    async def aclose(self) -> None:
        await self._pool.aclose()
