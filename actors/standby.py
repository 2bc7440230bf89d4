"""Standby: this node's copy of *every* partition, kept by a group-less reader.

It exists for one thing: answering a read that the owner cannot answer now. After a
kill -9 the dead node's partitions have no owner until the group notices (the session
timeout) and the new owner has caught up; without a standby those keys answer 503 for
that long. With one (setting ``standby``), the node answers from its copy, but only
*fenced*, as for a held partition during a rebalance (actors/router.py): Kafka's end
offset, asked after the read arrived, must be at most the copy's position. Nothing the
copy lacks can then have been acknowledged, so the answer is as fresh as an owner's.

The copy costs memory: every node holds all users (an owner's partitions twice). It
never serves writes and never decides anything; the state owner stays the only
authority for its partitions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from actors.replies import ReplyBox
from kstate.bridge import (
    EACH_FROM_BEGINNING,
    BrokerUnavailable,
    KafkaBridge,
    OffsetPastEnd,
    Reader,
)
from kstate.core.messages import Assign, Batch, Targets
from kstate.core.table import StateTable

log = logging.getLogger(__name__)

FETCH_MS = 500
READER_RETRY = 5.0  # seconds between a failed reader and the next one
TARGETS_RETRY = 1.0  # seconds between two asks for end offsets Kafka could not say


@dataclass(frozen=True, slots=True)
class StandbyStats:
    """The standby copy's numbers (/readyz)."""
    keys: int
    replayed: int
    invalid: int
    caught_up: bool  # every partition but the halted ones
    halted: dict[int, str]  # partitions stopped at a batch this node cannot decode


class StandbyHandle:
    """Read-only view of the standby copy."""

    def __init__(self, table: StateTable) -> None:
        self._table = table
        self.caught_up_at: float | None = None
        self.assigned = False  # its reader has opened once: the copy has every partition

    def get_fenced(self, partition: int, key: bytes, end_offset: int
                   ) -> tuple[bytes, int] | None:
        """``key``'s value and offset if the copy has applied everything below
        ``end_offset``; else NotServing."""
        return self._table.get_fenced(partition, key, end_offset)

    def statistics(self) -> StandbyStats:
        parts = self._table.partitions.values()
        return StandbyStats(keys=sum(len(p.data) for p in parts),
                            replayed=sum(p.replayed for p in parts),
                            invalid=sum(p.invalid for p in parts),
                            caught_up=self.assigned and _caught_up(self._table),
                            halted={pid: p.halted for pid, p in self._table.partitions.items()
                                    if p.halted is not None})


def _caught_up(table: StateTable) -> bool:
    """Every partition caught up, but those halted at a batch this node cannot decode:
    they never will be (reads of them are refused: kstate/core/table.py get_fenced)."""
    return all(p.caught_up for p in table.partitions.values() if p.halted is None)


async def run(bridge: KafkaBridge, *, num_partitions: int,
              task_status: trio.TaskStatus[StandbyHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Read every partition from the beginning and follow it, forever (until cancelled).

    The reader opens asking no offset (EACH_FROM_BEGINNING) and each partition's end
    offset (for ``caught_up``) is asked on its own: a partition without a leader (its
    broker down) has none as long as that lasts, and neither the node nor the copy of
    the other partitions waits for it (before, the copy held nothing until every
    partition had a leader). A reader that fails (any Kafka error) is opened again
    after READER_RETRY, from where the copy stands: the copy only ever answers behind
    the fence, so it never needs to stop the node."""
    table = StateTable(num_partitions, quiet=True)
    handle = StandbyHandle(table)
    started = time.monotonic()
    task_status.started(handle)
    while True:
        start: dict[int, int | None] | str = (
            {pid: p.position for pid, p in table.partitions.items()} if handle.assigned
            else EACH_FROM_BEGINNING)
        try:
            await _follow(bridge, table, handle, start, started)
        except (BrokerUnavailable, OffsetPastEnd) as exc:
            log.error("event=standby_reader_failed error=%r retry_s=%.1f", exc, READER_RETRY)
        await trio.sleep(READER_RETRY)


async def _follow(bridge: KafkaBridge, table: StateTable, handle: StandbyHandle,
                  start: dict[int, int | None] | str, started: float) -> None:
    async with bridge.open_reader(start) as (reader, positions), trio.open_nursery() as n:
        # every target unknown until _targets has it (no caught_up before)
        table.assign(Assign(0, frozenset(positions), {}, ReplyBox()))
        table.apply(Batch(0, {}, positions))  # an empty or compacted head: its start
        handle.assigned = True
        n.start_soon(_targets, reader, table)
        while True:
            batch = await reader.fetch_batch(FETCH_MS)
            table.apply(batch)
            for pid, (offset, why) in batch.halted.items():
                log.error("event=standby_partition_halted partition=%d offset=%d reason=%r",
                          pid, offset, why)
            if handle.caught_up_at is None and _caught_up(table):
                handle.caught_up_at = time.monotonic()
                log.info("event=standby_caught_up keys=%d seconds=%.3f",
                         handle.statistics().keys, handle.caught_up_at - started)


async def _targets(reader: Reader, table: StateTable) -> None:
    """Set each partition's catch-up target once Kafka says its end offset (each asked
    on its own: one without a leader does not hold up the others)."""
    while True:
        missing = sorted(pid for pid, p in table.partitions.items() if p.target < 0)
        if not missing:
            return
        found = await reader.end_offsets_each(missing)
        if found:
            table.targets(Targets(table.epoch, found, ReplyBox()))
        if len(found) < len(missing):
            await trio.sleep(TARGETS_RETRY)
