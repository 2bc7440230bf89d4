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
import collections
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
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
    """(trio side) Runs coroutine functions on the asyncio loop.

    A crossing through anyio's portal costs a few hundred microseconds of CPU (a
    concurrent future, a task group task, two thread wake-ups), and the bridge makes one
    per write, fetch and fence. So calls go through two mailboxes instead: the trio side
    appends to a deque and wakes the loop only if it is not already due to drain it; the
    loop runs each call as a plain task, and its results come back the same way, many
    per wake-up of trio when calls are busy. anyio's portal still owns the thread and
    the loop."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal,
                 token: trio.lowlevel.TrioToken, loop: asyncio.AbstractEventLoop) -> None:
        self._portal = portal
        self.token = token
        self._loop = loop
        self._calls: collections.deque[_Call] = collections.deque()  # trio -> asyncio
        self._calls_due = False  # a drain of _calls is scheduled on the loop
        self._results: collections.deque[_Call] = collections.deque()  # asyncio -> trio
        self._results_due = False  # a drain of _results is scheduled in trio

    async def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """``await fn(*args)`` on the asyncio loop; positional arguments only (use
        ``functools.partial`` for keywords). Cancelling the trio side cancels it."""
        c = _Call(fn, args)
        self._calls.append(c)
        if not self._calls_due:
            self._calls_due = True
            self._loop.call_soon_threadsafe(self._drain_calls)
        try:
            await c.done.wait()
        except BaseException:
            if not c.done.is_set():
                self._loop.call_soon_threadsafe(c.cancel)
            raise
        if c.error is not None:
            raise c.error
        return c.result  # type: ignore[no-any-return]

    # -- asyncio side -------------------------------------------------------------
    def _drain_calls(self) -> None:
        self._calls_due = False  # first: a call appended from now on schedules anew
        calls = self._calls
        while calls:
            c = calls.popleft()
            if c.cancelled:
                continue
            c.task = self._loop.create_task(c.fn(*c.args))
            c.task.add_done_callback(functools.partial(self._finished, c))

    def _finished(self, c: _Call, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            c.error = _CancelledOnLoop()
        elif (exc := task.exception()) is not None:
            c.error = exc
        else:
            c.result = task.result()
        self._results.append(c)
        if not self._results_due:
            self._results_due = True
            try:
                self.token.run_sync_soon(self._drain_results)
            except trio.RunFinishedError:
                pass

    # -- trio side ----------------------------------------------------------------
    def _drain_results(self) -> None:
        self._results_due = False
        results = self._results
        while results:
            results.popleft().done.set()


class _CancelledOnLoop(Exception):
    """The call's task was cancelled on the asyncio loop (the loop is stopping)."""


class _Call:
    __slots__ = ("args", "cancelled", "done", "error", "fn", "result", "task")

    def __init__(self, fn: Callable[..., Coroutine[Any, Any, Any]],
                 args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """(asyncio side) The trio caller gave up: stop the task, or never start it."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


@contextlib.asynccontextmanager
async def open_portal() -> AsyncIterator[Portal]:
    """Start the asyncio thread; stop it on exit. The caller stops every aiokafka
    object first: leaving with a task still running on the loop would hang."""
    cm = anyio.from_thread.start_blocking_portal("asyncio")
    portal = await trio.to_thread.run_sync(cm.__enter__)
    try:
        loop = await trio.to_thread.run_sync(portal.call, _running_loop)
        yield Portal(portal, trio.lowlevel.current_trio_token(), loop)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(cm.__exit__, None, None, None)


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
