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

import contextvars
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore

# httpcore's default backend (trio's under trio, anyio's under asyncio), not exported:
# the client wraps it rather than pick one itself (anyio's is slower under trio).
from httpcore._backends.auto import AutoBackend

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
    read; connecting, at most 2 s (a live node accepts at once). httpcore bounds each
    read and write alone: :class:`_Budget` bounds them together."""
    return {"connect": min(2.0, timeout), "read": timeout, "write": timeout,
            "pool": timeout}


class _Budget:
    """The time one request has, from its first byte sent to the last byte of its
    answer: ``total`` seconds in all. httpcore's read and write timeouts bound each
    operation alone, so a node that sends its answer a byte at a time would hold the
    request for as long as it likes. Each read and write of the request gets at most
    what is left (:class:`_Stream`); running out is httpcore's own ``ReadTimeout`` or
    ``WriteTimeout``, both after the request began to be sent (it may have arrived).
    Getting a connection before that is bounded already: the pool by its timeout,
    connecting and the TLS handshake each in all by theirs. The clock starts at the
    first byte, not at the call: a node's time to answer starts there, and time spent
    waiting for a pooled connection is not taken from it."""

    __slots__ = ("deadline", "total")

    def __init__(self, total: float) -> None:
        self.total = total
        self.deadline: float | None = None

    def left(self, timeout: float | None, *, sending: bool) -> float | None:
        if self.deadline is None:
            if not sending:
                return timeout
            self.deadline = time.monotonic() + self.total
        left = max(0.0, self.deadline - time.monotonic())
        return left if timeout is None else min(timeout, left)


# The budget of the request the current task is making (httpcore makes an HTTP/1.1
# request in the caller's task, on the connection the pool gave it).
_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "kstate_client_budget", default=None)


class _Stream(httpcore.AsyncNetworkStream):
    """A connection whose reads and writes draw on the current request's budget."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    # The signatures are httpcore's network interface, timeouts and all.
    async def read(self, max_bytes: int,
                   timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        budget = _BUDGET.get()
        if budget is not None:
            timeout = budget.left(timeout, sending=False)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes,
                    timeout: float | None = None) -> None:  # noqa: ASYNC109
        budget = _BUDGET.get()
        if budget is not None:
            timeout = budget.left(timeout, sending=True)
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None,  # noqa: ASYNC109
                        ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend (trio's or anyio's, whichever runs), its connections
    wrapped in :class:`_Stream`."""

    def __init__(self) -> None:
        self._inner = AutoBackend()

    async def connect_tcp(self, host: str, port: int,
                          timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address,
                                                     socket_options))

    async def connect_unix_socket(self, path: str,
                                  timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


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
                    max_keepalive_connections=self._max, keepalive_expiry=5.0,
                    network_backend=_Backend()))
            self._nodes[node] = found
        return found

    async def request(self, method: bytes, node: str, target: bytes,
                      headers: list[tuple[bytes, bytes]], body: bytes | None,
                      limits: dict[str, float]) -> Answer:
        """Send one request to ``node`` (``host:port``) and read its answer whole;
        raises one of ``TRANSPORT_ERRORS`` when no answer came. ``limits["read"]``
        seconds bound, in all, sending it and reading the answer (:class:`_Budget`)."""
        to = self._node(node)
        head = [(b"host", to.host_header), *headers]
        if body is not None:
            head.append((b"content-length", b"%d" % len(body)))
        url = httpcore.URL(scheme=self._scheme, host=to.host, port=to.port, target=target)
        budget = _BUDGET.set(_Budget(limits["read"]))
        to.busy += 1
        try:
            r = await to.pool.request(method, url, headers=head, content=body,
                                      extensions={"timeout": limits})
        finally:
            to.busy -= 1
            _BUDGET.reset(budget)
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
