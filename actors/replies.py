"""A trio-side reply box: the 1-slot answer a request message carries."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class ReplyBox(Generic[T]):
    """A ``kstate.core.messages.Reply``: one value, awaited with :meth:`wait`."""

    __slots__ = ("_event", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None

    def send(self, value: T) -> None:
        self._value = value
        self._event.set()

    async def wait(self) -> T:
        await self._event.wait()
        return self._value  # type: ignore[return-value]
