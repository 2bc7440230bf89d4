"""The client's HTTP/1.1 exchanges with the nodes, on httpcore's keep-alive pools.

httpcore rather than httpx's ``AsyncClient`` on top of it: the client builds each
request from parts it already has (the node's ``host:port``, the percent-encoded path)
and reads three headers of the answer, so httpx's URL parsing, header and cookie
merging, cookie jar, auth and redirect flows, and response models were most of the
client's own CPU per request. What stays is what the client relies on: the pools and
their limits, the timeouts, TLS, and httpcore's errors, which tell a request that never
left (``NOT_SENT``) from one that may have arrived. One pool per node also keeps each
pool small: httpcore looks through all of a pool's connections for every request.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore

from kstate.client._table import split_url

# No HTTP answer came (the node is down, stalled, or the connection broke).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
    httpcore.UnsupportedProtocol)
# ... and the request certainly did not reach the node: no connection was made.
NOT_SENT: tuple[type[Exception], ...] = (
    httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout)


@dataclass(frozen=True, slots=True)
class Answer:
    """A node's answer, read whole: ``headers`` by lower-case name."""

    status: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass(slots=True)
class _Node:
    """One node's address and keep-alive pool, and the requests under way there."""

    host_header: bytes
    host: bytes
    port: int
    pool: httpcore.AsyncConnectionPool
    busy: int = 0


def timeouts(timeout: float) -> dict[str, float]:
    """httpcore's timeouts for one request: ``timeout`` for the pool, writing and each
    read; connecting, at most 2 s (a live node accepts at once). They bound each
    operation, not the request: :meth:`Http.request` bounds the whole of it by
    ``timeout`` too."""
    return {"connect": min(2.0, timeout), "read": timeout, "write": timeout,
            "pool": timeout}


class _Progress:
    """How far one request got (httpcore's ``trace`` extension): whether a connection
    was being made and whether the request began to be sent, so that a request cut off
    by its deadline is told apart like httpcore's own errors tell it (``NOT_SENT``).
    Once it is being sent, the answer gets the whole ``total`` again: a node's time to
    answer starts there, not while the request waited for a pooled connection."""

    __slots__ = ("connecting", "scope", "sent", "total")

    def __init__(self, scope: anyio.CancelScope, total: float) -> None:
        self.scope = scope
        self.total = total
        self.connecting = False
        self.sent = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if not self.sent:
            if event.endswith("send_request_headers.started"):
                self.sent = True
                self.scope.deadline = anyio.current_time() + self.total
            elif event.endswith("connect_tcp.started"):
                self.connecting = True


class Http:
    """Keep-alive connections, a pool per node of at most ``max_connections``: a node
    that stops answering holds its own connections until the request timeout, never
    the ones the other nodes' requests need."""

    def __init__(self, *, tls: ssl.SSLContext | None, max_connections: int) -> None:
        self._tls = tls
        self._scheme = b"http" if tls is None else b"https"
        self._max = max_connections
        self._nodes: dict[str, _Node] = {}
        self._closed = False

    def _node(self, node: str) -> _Node:
        found = self._nodes.get(node)
        if found is None:
            if self._closed:  # a new pool now would never be closed
                raise RuntimeError("the client is closed")
            host, port = split_url(node)
            if port is None:
                port = 80 if self._scheme == b"http" else 443
            bracketed = f"[{host}]" if ":" in host else host
            found = _Node(
                f"{bracketed}:{port}".encode("idna"), host.encode("idna"), port,
                httpcore.AsyncConnectionPool(
                    ssl_context=self._tls, max_connections=self._max,
                    max_keepalive_connections=self._max, keepalive_expiry=5.0))
            self._nodes[node] = found
        return found

    async def request(self, method: bytes, node: str, target: bytes,
                      headers: list[tuple[bytes, bytes]], body: bytes | None,
                      limits: dict[str, float]) -> Answer:
        """Send one request to ``node`` (``host:port``) and read its answer whole;
        raises one of ``TRANSPORT_ERRORS`` when no answer came. ``limits["read"]``
        seconds bound, each in all, getting a connection (waiting for the pool,
        connecting) and, from the moment the request is sent, the answer to its last
        byte. httpcore's timeouts bound each read and write alone: a node that sends its
        answer a byte at a time would hold the request for as long as it likes. Cut off
        by that deadline, the request raises ``ReadTimeout`` when it may have reached the
        node, else ``ConnectTimeout`` or ``PoolTimeout`` (not sent)."""
        to = self._node(node)
        head = [(b"host", to.host_header), *headers]
        if body is not None:
            head.append((b"content-length", b"%d" % len(body)))
        url = httpcore.URL(scheme=self._scheme, host=to.host, port=to.port, target=target)
        total = limits["read"]
        scope = anyio.CancelScope(deadline=anyio.current_time() + total)
        progress = _Progress(scope, total)
        to.busy += 1
        try:
            with scope:
                r = await to.pool.request(method, url, headers=head, content=body,
                                          extensions={"timeout": limits,
                                                      "trace": progress})
        finally:
            to.busy -= 1
        if scope.cancelled_caught:
            why = f"no answer from {node} within {total} s"
            if progress.sent:
                raise httpcore.ReadTimeout(why)
            raise (httpcore.ConnectTimeout if progress.connecting
                   else httpcore.PoolTimeout)(why)
        return Answer(r.status,
                      {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in r.headers},
                      r.content)

    async def keep_only(self, nodes: set[str]) -> None:
        """Close the pools of nodes no longer known (left the cluster) once nothing is
        under way there: the pools stay as many as the nodes known."""
        for name, gone in list(self._nodes.items()):
            if name not in nodes and gone.busy == 0:
                del self._nodes[name]
                await gone.pool.aclose()

    async def aclose(self) -> None:
        self._closed = True
        pools = [n.pool for n in self._nodes.values()]
        self._nodes.clear()
        for pool in pools:
            await pool.aclose()
