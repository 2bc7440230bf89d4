"""actors/replies.py send_request: a request sent without the send's yield when the
channel has room, and otherwise exactly as ``send`` (cancelled first, wait when full)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.replies import send_request
from tests.support.steps import TaskSteps


async def test_a_request_with_room_is_sent_without_yielding() -> None:
    send, recv = trio.open_memory_channel[str](2)
    steps = TaskSteps.of(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    try:
        await send_request(send, "hello")
        assert steps.steps == 0  # no trip through the scheduler
        await send.send("again")  # what send_request saves: ``send`` yields once
        assert steps.steps == 1
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert recv.receive_nowait() == "hello"


async def test_a_cancelled_caller_sends_nothing() -> None:
    send, recv = trio.open_memory_channel[str](1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await send_request(send, "late")
    assert scope.cancelled_caught
    with pytest.raises(trio.WouldBlock):
        recv.receive_nowait()


async def test_a_full_channel_waits_for_room() -> None:
    send, recv = trio.open_memory_channel[str](1)
    send.send_nowait("first")
    sent = trio.Event()

    async def _second() -> None:
        await send_request(send, "second")
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_second)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()
        assert await recv.receive() == "first"
        await sent.wait()
        assert recv.receive_nowait() == "second"


async def test_a_closed_channel_raises_as_send_does() -> None:
    send, recv = trio.open_memory_channel[str](1)
    await recv.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await send_request(send, "nobody")
