"""The crossing between trio and the asyncio loop aiokafka runs on.

aiokafka runs only on asyncio; the bridge runs it on its own event loop in a worker
thread (``anyio.from_thread.start_blocking_portal("asyncio")``). The trio side submits
a coroutine with ``portal.start_task_soon`` and awaits the ``concurrent.futures.Future``
without blocking trio: the future's done-callback wakes trio through
``TrioToken.run_sync_soon``. The asyncio side hands a message to trio with
``run_sync_soon`` into a channel with room for it, and awaits trio's answer as an
asyncio future. Neither loop ever blocks on the other (docs/design.md, "Kafka bridge").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio.from_thread
import trio

T = TypeVar("T")
M = TypeVar("M")


class FutureReply:
    """A ``kstate.core.messages.Reply`` that resolves an asyncio future from trio."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> None:
        self._loop = loop
        self._fut = fut

    def send(self, value: Any) -> None:
        def _set() -> None:
            if not self._fut.done():
                self._fut.set_result(value)

        self._loop.call_soon_threadsafe(_set)


async def ask_trio(token: trio.lowlevel.TrioToken, channel: trio.MemorySendChannel[M],
                   make: Callable[[FutureReply], M]) -> Any:
    """(asyncio side) Send ``make(reply)`` into a trio channel and await the answer
    trio sends through ``reply``. The channel must have room: its one reader answers
    each message before the next can be sent."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    msg = make(FutureReply(loop, fut))
    try:
        token.run_sync_soon(channel.send_nowait, msg)
    except trio.RunFinishedError:
        fut.cancel()
    return await fut


class Portal:
    """(trio side) Runs coroutine functions on the asyncio loop, one crossing each."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal,
                 token: trio.lowlevel.TrioToken) -> None:
        self._portal = portal
        self.token = token

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on the asyncio loop; positional arguments only (use
        ``functools.partial`` for keywords). Cancelling the trio side cancels it."""
        fut: concurrent.futures.Future[T] = self._portal.start_task_soon(fn, *args)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def _wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        fut.add_done_callback(_wake)
        try:
            await done.wait()
        finally:
            if not fut.done():
                fut.cancel()
        return fut.result()


@contextlib.asynccontextmanager
async def open_portal() -> AsyncIterator[Portal]:
    """Start the asyncio thread; stop it on exit. The caller stops every aiokafka
    object first: leaving with a task still running on the loop would hang."""
    cm = anyio.from_thread.start_blocking_portal("asyncio")
    portal = await trio.to_thread.run_sync(cm.__enter__)
    try:
        yield Portal(portal, trio.lowlevel.current_trio_token())
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(cm.__exit__, None, None, None)
