"""hypercorn.trio.serve wrapper: binds, reports the bound address, drains on shutdown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio


async def serve(app: QuartTrio, listen: str, *, shutdown_trigger: Callable[[], Awaitable[None]],
                graceful_timeout: float = 5.0,
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until ``shutdown_trigger`` returns, then finish in-flight requests (up to
    ``graceful_timeout``). Reports "host:port" actually bound (port 0 -> a free one)."""
    config = Config()
    config.bind = [listen]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = "-"
    config.keep_alive_timeout = 75
    config.backlog = 1024

    class _Status:
        def started(self, binds: list[str] | None = None) -> None:
            addr = (binds or [f"http://{listen}"])[0].removeprefix("http://")
            task_status.started(addr)

    await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger,
                          task_status=_Status())
