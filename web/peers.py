"""A small HTTP/1.1 client for node-to-node forwarding: h11 over pooled keep-alive trio
TCP streams, one pool per peer url.

Forwarding is the hottest client path of the cluster and httpx cost about 40% of a
forwarding node's CPU (py-spy, wrk -c10 on a proxied GET); this does only what a hop
needs: one request, a complete response, the connection back into the pool.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import h11
import trio

log = logging.getLogger(__name__)

READ_SIZE = 65_536


class PeerError(Exception):
    """The peer could not be reached or did not answer completely in time."""


@dataclass(frozen=True, slots=True)
class PeerResponse:
    """A peer's complete answer."""
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Conn:
    __slots__ = ("h11", "stream", "used")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.used = 0


class _Stale(Exception):
    """A pooled connection the peer had closed before it read our request."""


class PeerPool:
    """Pooled keep-alive connections to peers, one pool per url."""
    def __init__(self, *, timeout: float, connect_timeout: float = 2.0,
                 max_idle: int = 32) -> None:
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._max_idle = max_idle
        self._idle: dict[str, list[_Conn]] = {}
        self.opened = 0
        self.reused = 0

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                await _close(conn)
        self._idle.clear()

    async def request(self, url: str, method: str, target: str,
                      headers: list[tuple[str, str]], body: bytes) -> PeerResponse:
        """Send one request to ``url`` (host:port); raise PeerError on failure or when
        ``timeout`` passes. A pooled connection found closed by the peer before it
        read the request (the request never reached it) is replaced once, by a new
        connection."""
        with trio.move_on_after(self._timeout) as scope:
            for _ in range(2):
                conn = await self._acquire(url)
                try:
                    resp = await self._exchange(conn, url, method, target, headers, body)
                except _Stale:
                    # The peer closed it: most likely it restarted, and every other
                    # idle connection to it is as dead. Drop them all; retry fresh.
                    await _close(conn)
                    for idle in self._idle.pop(url, []):
                        await _close(idle)
                    continue
                except BaseException:
                    await _close(conn)
                    raise
                self._release(url, conn)
                return resp
            raise PeerError(f"{url}: connection closed twice before the request was read")
        assert scope.cancelled_caught
        raise PeerError(f"{url}: no complete answer within {self._timeout}s")

    async def _acquire(self, url: str) -> _Conn:
        pool = self._idle.get(url)
        if pool:
            self.reused += 1
            return pool.pop()
        host, _, port = url.rpartition(":")
        try:
            with trio.fail_after(self._connect_timeout):
                stream = await trio.open_tcp_stream(host, int(port))
        except (OSError, trio.TooSlowError, ValueError) as exc:
            raise PeerError(f"{url}: cannot connect: {exc!r}") from None
        self.opened += 1
        return _Conn(stream)

    def _release(self, url: str, conn: _Conn) -> None:
        c = conn.h11
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
            pool = self._idle.setdefault(url, [])
            if len(pool) < self._max_idle:
                pool.append(conn)
                return
        conn.stream.socket.close()  # not awaited: a plain close of a finished socket

    async def _exchange(self, conn: _Conn, url: str, method: str, target: str,
                        headers: list[tuple[str, str]], body: bytes) -> PeerResponse:
        c = conn.h11
        reused = conn.used > 0
        conn.used += 1
        out = [("host", url), ("content-length", str(len(body))), *headers]
        try:
            data = c.send(h11.Request(method=method, target=target, headers=out))
            if body:
                data += c.send(h11.Data(data=body))
            data += c.send(h11.EndOfMessage())
            await conn.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if reused:
                raise _Stale() from None
            raise PeerError(f"{url}: send failed: {exc!r}") from None
        status = 0
        resp_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        got_any = False
        while True:
            try:
                event = c.next_event()
            except h11.RemoteProtocolError as exc:
                raise PeerError(f"{url}: bad response: {exc}") from None
            if event is h11.NEED_DATA:
                try:
                    data = await conn.stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    if reused and not got_any:
                        raise _Stale() from None
                    raise PeerError(f"{url}: receive failed: {exc!r}") from None
                if not data and reused and not got_any:
                    raise _Stale()
                got_any = got_any or bool(data)
                c.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = list(event.headers)
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return PeerResponse(status, resp_headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise PeerError(f"{url}: closed before the response ended")
            # InformationalResponse (1xx): keep reading


async def _close(conn: _Conn) -> None:
    with trio.CancelScope(shield=True), contextlib.suppress(OSError, trio.TrioInternalError):
        await conn.stream.aclose()
