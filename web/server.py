"""hypercorn.trio.serve wrapper: binds, reports the bound address, drains on shutdown."""

from __future__ import annotations

import logging
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


async def serve(app: Asgi | QuartTrio, listen: str, *,
                shutdown_trigger: Callable[[], Awaitable[None]],
                graceful_timeout: float = 5.0,
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until ``shutdown_trigger`` returns, then finish in-flight requests (up to
    ``graceful_timeout``). Reports "host:port" actually bound (port 0 -> a free one)."""
    config = Config()
    config.bind = [listen]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    # hypercorn's own lines go through our logging (one format, kv or json).
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    config.backlog = 1024

    class _Status:
        def started(self, binds: list[str] | None = None) -> None:
            addr = (binds or [f"http://{listen}"])[0].removeprefix("http://")
            task_status.started(addr)

    await hypercorn_serve(shield_sends(app), config, shutdown_trigger=shutdown_trigger,
                          task_status=_Status())
