"""actors/inbox.py: an actor woken for one message handles the ones already queued
behind it in the same scheduler step (the state owner up to a fetched batch, which
ends its step), instead of one step per message."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
import trio.testing

from actors import state, writer
from actors.inbox import ready
from actors.replies import ReplyBox
from kstate.core.messages import Batch, Own, Record, Write
from tests.support.steps import TaskSteps


async def test_ready_takes_what_is_queued_in_order_and_stops_when_empty_or_closed() -> None:
    send, recv = trio.open_memory_channel[int](8)
    for i in range(3):
        send.send_nowait(i)
    assert list(ready(recv)) == [0, 1, 2]
    assert list(ready(recv)) == []  # empty, still open
    send.send_nowait(3)
    await send.aclose()
    assert list(ready(recv)) == [3]
    assert list(ready(recv)) == []  # closed and empty: ends, no EndOfChannel


async def test_ready_lets_blocked_senders_in_as_it_makes_room() -> None:
    send, recv = trio.open_memory_channel[int](1)
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(send.send, i)
            await trio.testing.wait_all_tasks_blocked()
        assert sorted(ready(recv)) == [0, 1, 2]


def _own(partition: int) -> tuple[Own, ReplyBox[bool]]:
    box: ReplyBox[bool] = ReplyBox()
    return Own(partition, [Record(0, b"k", b"v")], box), box


async def test_the_state_owner_applies_queued_messages_in_one_step_up_to_a_batch() -> None:
    send, recv = trio.open_memory_channel[Any](16)
    steps = TaskSteps.running(state.run)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(state.run, inbox=recv, num_partitions=1))
        await trio.testing.wait_all_tasks_blocked()
        queued = [_own(0) for _ in range(3)]
        after = _own(0)
        trio.lowlevel.add_instrument(steps)
        try:
            for msg, _ in queued:
                send.send_nowait(msg)
            send.send_nowait(Batch(0, {}, {}))  # ends the step it is applied in
            send.send_nowait(after[0])
            with trio.fail_after(5):
                for _, box in [*queued, after]:
                    assert await box.wait() is False  # (partition 0 is not held)
                await trio.testing.wait_all_tasks_blocked()
        finally:
            trio.lowlevel.remove_instrument(steps)
        # one step: the three Owns and the batch; one more: the Own after the batch
        # (one step per message would be five; no stop at the batch, one)
        assert steps.steps == 2
        await send.aclose()


async def test_the_writer_takes_every_queued_write_in_one_step() -> None:
    state_send, state_recv = trio.open_memory_channel[Any](16)
    writes_send, writes_recv = trio.open_memory_channel[Any](16)

    async def produce(*_: Any) -> int:
        raise AssertionError("nothing is writable: nothing is produced")

    steps = TaskSteps.running(writer.run)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(state.run, inbox=state_recv, num_partitions=1))
        await nursery.start(partial(writer.run, produce, handle, inbox=writes_recv,
                                    own=state_send, write_timeout=1.0, catchup_timeout=1.0))
        await trio.testing.wait_all_tasks_blocked()
        boxes: list[ReplyBox[Any]] = [ReplyBox() for _ in range(3)]
        trio.lowlevel.add_instrument(steps)
        try:
            for i, box in enumerate(boxes):
                writes_send.send_nowait(Write(0, b"k%d" % i, b"v", None, box))
            await trio.testing.wait_all_tasks_blocked()
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.steps == 1  # one step per write would be three
        with trio.fail_after(5):
            for box in boxes:  # partition 0 is not held: each is refused, none lost
                assert (await box.wait()).reason == "not_owner"
        await writes_send.aclose()
