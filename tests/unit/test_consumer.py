"""The consumer actor (actors/consumer.py) with a scripted bridge: which batches reach
the state owner."""

from __future__ import annotations

from typing import cast

import trio
import trio.testing

from actors import consumer
from kstate.bridge import KafkaBridge
from kstate.core.messages import Batch, Record, StateIn


class ScriptedBridge:
    """Returns the given batches, then waits forever."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    async def fetch(self, timeout_ms: int) -> Batch:
        if not self.batches:
            await trio.sleep_forever()
        return self.batches.pop(0)


async def sent(batches: list[Batch]) -> list[Batch]:
    send, recv = trio.open_memory_channel[StateIn](100)
    bridge = cast(KafkaBridge, ScriptedBridge(batches))
    out: list[Batch] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: consumer.run(
            bridge, outbox=send, task_status=task_status))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    async with recv:
        while True:
            try:
                msg = recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return out
            assert isinstance(msg, Batch)
            out.append(msg)


async def test_empty_batches_go_only_when_something_moved():
    rec = Record(5, b"a@b.c", b"{}")
    batches = [Batch(1, {}, {0: 5}), Batch(1, {}, {0: 5}), Batch(1, {0: [rec]}, {0: 6}),
               Batch(1, {}, {0: 6}), Batch(1, {}, {0: 6, 1: 0}),
               Batch(1, {}, {0: 6, 1: 0}, halted={1: (0, "why")})]
    got = await sent(list(batches))
    assert got == [batches[0], batches[2], batches[4], batches[5]]


async def test_the_first_batch_of_a_new_epoch_goes_even_with_the_same_positions():
    """A partition dropped and assigned again is rebuilt from position 0 (table.assign);
    when its log starts where it ends, the consumer's position is the same as before
    and only this batch moves the rebuilt partition to it (else: catching up for ever)."""
    batches = [Batch(1, {}, {0: 5}), Batch(2, {}, {0: 5}), Batch(2, {}, {0: 5})]
    got = await sent(list(batches))
    assert got == batches[:2]
