"""Taking what an actor's inbox already holds, without a yield per message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import trio

M = TypeVar("M")


def ready(channel: trio.MemoryReceiveChannel[M]) -> Iterator[M]:
    """The messages ``channel`` holds now, in order, taken without a yield; nothing
    once it is closed and empty (the actor's ``async for`` then ends as usual).

    An actor woken for one message handles the ones queued behind it in the same
    turn: under load a yield per message was one more trip through the scheduler for
    each of them (docs/design.md, "Performance"), and no message waits longer for it.
    Senders blocked on a full channel are let in as room is made, so one turn takes
    at most the channel's size plus those senders."""
    while True:
        try:
            yield channel.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
