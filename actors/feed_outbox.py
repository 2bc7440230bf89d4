"""A feed subscriber's outbound queue: what it has not taken yet, and when it is
cut off for taking nothing.

The websocket's ``send`` returns only once the bytes are in the socket, and the HTTP
server shields that write from cancellation: a client that stops reading blocks it,
once the kernel's buffers are full, for as long as the connection lives. So nothing
that holds a resource (a Kafka reader, a broadcaster queue) waits on ``send`` itself:
a pump task sends from a small bounded queue, and whoever puts into the queue waits
at most ``stall_timeout`` seconds for room, then gets :class:`Stalled` and lets go of
what it holds (its reader is closed, its subscription ends). The connection itself
ends when the client reads again or its TCP connection is dropped (web/server.py
bounds how long the kernel keeps sending into a window that stays shut).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

OUTBOX = 64  # messages queued per subscriber beyond what the socket holds

Send = Callable[[str], Awaitable[None]]


class Stalled(Exception):
    """The subscriber took nothing for ``stall_timeout`` seconds while its queue was
    full."""


@contextlib.asynccontextmanager
async def open_outbox(send: Send, *, stall_timeout: float, size: int = OUTBOX
                      ) -> AsyncIterator[Send]:
    """A ``send`` that queues for ``send`` (sent in order by a pump task) and raises
    Stalled after waiting ``stall_timeout`` seconds for room; catch it inside the
    ``async with`` (past it, as out of any nursery, exceptions come wrapped in an
    ExceptionGroup). On exit, what is still queued is dropped (the subscription is
    over) and the pump stops."""
    queue_send, queue_recv = trio.open_memory_channel[str](size)

    async def pump() -> None:
        async with queue_recv:
            async for text in queue_recv:
                await send(text)

    async def put(text: str) -> None:
        try:
            queue_send.send_nowait(text)
            return
        except trio.WouldBlock:
            pass
        with trio.move_on_after(stall_timeout):
            await queue_send.send(text)
            return
        raise Stalled(f"no room for {stall_timeout}s")

    # The queue is closed without a checkpoint (``with``, not ``async with``): inside
    # the cancelled nursery a checkpoint raises Cancelled, which would take the place of
    # an error the body raised, and the nursery absorbs its own Cancelled: the error
    # would be lost and the subscription end as a normal close.
    async with trio.open_nursery() as nursery:
        with queue_send:
            nursery.start_soon(pump)
            try:
                yield put
            finally:
                nursery.cancel_scope.cancel()
