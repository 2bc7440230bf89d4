"""Consumer: pulls batches from the Kafka bridge and hands them to the state owner.

It does not interpret values. One bridge crossing per batch.
"""

from __future__ import annotations

import trio

from kstate.bridge import KafkaBridge
from kstate.core.messages import StateIn


async def run(bridge: KafkaBridge, *, outbox: trio.MemorySendChannel[StateIn],
              poll_ms: int = 200,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Fetch forever (until cancelled). Owns and closes ``outbox``.

    A batch with no records is still sent when some position moved: compaction can
    leave a partition's end beyond its last record, and the catch-up gate needs the
    consumer's position, not the last offset seen. So is the first batch of a new
    epoch: an assignment may rebuild a partition from position 0 whose consumer
    position is where it was (a log that starts where it ends), and only a batch can
    tell the state owner so. A batch that halts a partition (one it cannot decode:
    Batch.halted) is always sent.
    """
    async with outbox:
        task_status.started()
        last: dict[int, int] = {}
        last_epoch = -1
        while True:
            batch = await bridge.fetch(poll_ms)
            if (batch.records or batch.halted or batch.positions != last
                    or batch.epoch != last_epoch):
                last, last_epoch = batch.positions, batch.epoch
                await outbox.send(batch)
