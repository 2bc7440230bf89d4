"""The HTTP server: a listening socket bound before anything else (so the node knows its
address when it builds its actors), and hypercorn serving the app on it until shutdown,
then draining in-flight requests."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart_trio import QuartTrio

Asgi = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


def shield_sends(app: Asgi) -> Asgi:
    """Shield each HTTP ``send`` of ``app``. quart-trio cancels the request's task as
    soon as hypercorn reports the stream closed, which hypercorn does *inside* the
    final ``send``, in the middle of closing a ``Connection: close`` socket or of
    re-arming the keep-alive idle timer: the socket then stays open (a client that
    reads to EOF hangs, an idle connection never times out and delays shutdown).
    hypercorn already shields the socket write itself, so this adds no new wait."""

    async def asgi(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def shielded(message: ASGISendEvent) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await app(scope, receive, shielded)

    return asgi


BACKLOG = 1024
KEEP_ALIVE = 75  # seconds an idle keep-alive connection stays open
# Seconds the kernel keeps sending to a peer that acknowledges nothing, or keeps its
# receive window shut, before it drops the connection (TCP_USER_TIMEOUT, inherited by
# every accepted socket; Linux). hypercorn shields its socket writes from
# cancellation, so without this a client that stops reading holds its connection and
# the task writing to it forever (actors/feed_outbox.py lets go of everything else).
SEND_STALL_TIMEOUT = 20
# Largest websocket message a client may send. The feed reads nothing from clients;
# hypercorn's default (16 MiB, times its queue of 10 per connection) would let each
# connection park 160 MiB here.
WEBSOCKET_MAX_MESSAGE = 4096


def bind(listen: str) -> socket.socket:
    """A TCP socket listening on ``listen`` (host:port; port 0 = any free port)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            SEND_STALL_TIMEOUT * 1000)
        sock.bind(addr)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def bound_address(sock: socket.socket, listen: str) -> str:
    """host:port of ``sock`` as ``listen`` named the host (with the real port)."""
    host = listen.rpartition(":")[0]
    return f"{host}:{sock.getsockname()[1]}"


async def serve(app: Asgi | QuartTrio, sock: socket.socket, *,
                shutdown_trigger: Callable[[], Awaitable[None]],
                graceful_timeout: float = 5.0,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve on ``sock`` until ``shutdown_trigger`` returns, then finish in-flight
    requests (up to ``graceful_timeout``). Takes ``sock`` over: hypercorn closes it."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    # hypercorn's own lines go through our logging (one format, kv or json).
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = KEEP_ALIVE
    config.backlog = BACKLOG
    config.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE

    class _Status:
        def started(self, binds: list[str] | None = None) -> None:
            task_status.started()

    await hypercorn_serve(shield_sends(app), config, shutdown_trigger=shutdown_trigger,
                          task_status=_Status())
