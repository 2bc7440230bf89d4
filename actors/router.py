"""Router: key -> partition -> owner. Local keys pass the catch-up gate and are read
from the state owner; writes go to the writer; anything else is forwarded to the
owner's url (by web/proxy.py: the router only decides).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from actors.kafka import partition_for
from actors.messages import Refused, ReplyBox, RouterIn, RoutingTable, Write, WriteResult, WriterIn
from actors.standby import StandbyHandle
from actors.state import NotServing, StateHandle

log = logging.getLogger(__name__)

MAX_HOPS = 3
# How long a fenced read (see RouterHandle.read) waits for Kafka's end offset.
FENCE_TIMEOUT = 1.0
# How long a request waits for this node's next routing table when its own is behind
# (see RouterHandle.settle).
TABLE_WAIT = 2.0

# The end offset (high watermark) of a partition, asked of Kafka now.
EndOffset = Callable[[int], Awaitable[int]]
# (partition, key, end offset) -> (value, offset) | None, or NotServing: a fenced read.
FencedGet = Callable[[int, bytes, int], tuple[bytes, int] | None]


@dataclass(frozen=True, slots=True)
class Local:
    partition: int


@dataclass(frozen=True, slots=True)
class Remote:
    partition: int
    url: str
    generation: int


@dataclass(frozen=True, slots=True)
class Found:
    partition: int
    value: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class Missing:
    partition: int


Route = Local | Remote | Refused
ReadResult = Found | Missing | Refused


class RouterHandle:
    """What the web layer asks: where a key lives, read it, write it."""

    def __init__(self, url: str, num_partitions: int, state: StateHandle,
                 writes: trio.MemorySendChannel[WriterIn], catchup_timeout: float,
                 end_offset: EndOffset | None = None,
                 standby: StandbyHandle | None = None) -> None:
        self.url = url
        self.num_partitions = num_partitions
        self.table = RoutingTable.empty()
        self.table_changed = trio.Event()
        self._state = state
        self._writes = writes
        self._catchup_timeout = catchup_timeout
        self._end_offset = end_offset
        self._standby = standby
        self.counters = {"local_reads": 0, "fenced_reads": 0, "standby_reads": 0,
                         "forwards": 0, "unavailable": 0, "writes": 0}

    @property
    def has_standby(self) -> bool:
        return self._standby is not None

    def standby_statistics(self) -> dict[str, int] | None:
        return None if self._standby is None else self._standby.statistics()

    def partition(self, key: bytes) -> int:
        return partition_for(key, self.num_partitions)

    def locate(self, key: bytes, hops: int = 0, *, read: bool = False) -> Route:
        """Where ``key`` is answered. A ``read`` of a partition this node still holds
        while it does not serve it (a rebalance is under way) is Local too: the read
        is fenced (see :meth:`read`). Writes to it wait for the next owner."""
        pid = self.partition(key)
        owner = self.table.owners.get(pid)
        if owner == self.url:
            if self._state.is_serving(pid):
                return Local(pid)
            if read and self._end_offset is not None and self._state.holds(pid):
                return Local(pid)
            return self._refuse(Refused(503, "rebalancing",
                                        f"partition {pid} is moving to a new owner", 1.0),
                                read=read)
        if owner is None:
            return self._refuse(Refused(503, "no_owner", f"no owner known for partition {pid}",
                                        1.0), read=read)
        if hops >= MAX_HOPS:
            return self._refuse(Refused(503, "too_many_hops",
                                        f"forwarded {hops} times; the cluster is rebalancing",
                                        1.0), read=read)
        self.counters["forwards"] += 1
        return Remote(pid, owner, self.table.generation)

    async def settle(self, key: bytes, hops: int = 0, *, read: bool = False,
                     peer_generation: int | None = None) -> Route:
        """:meth:`locate`, after waiting (at most TABLE_WAIT) while this node's table
        is behind: it knows no owner for the key yet (a node that just joined), or the
        node that forwarded the request has a newer generation (it got its assignment
        first; routing by the older table would send the request back to it)."""
        pid = self.partition(key)
        with trio.move_on_after(TABLE_WAIT):
            while (pid not in self.table.owners
                   or (peer_generation is not None
                       and peer_generation > self.table.generation)):
                await self.table_changed.wait()
        return self.locate(key, hops, read=read)

    def _refuse(self, r: Refused, *, read: bool = False) -> Refused:
        if not (read and self._standby is not None):  # else standby_read counts it
            self.counters["unavailable"] += 1
        return r

    async def read(self, partition: int, key: bytes) -> ReadResult:
        """Read a key of a partition this node serves, after its catch-up gate; or of
        one it holds but does not serve (revoked by a rebalance), fenced."""
        try:
            with trio.move_on_after(self._catchup_timeout):
                await self._state.wait_caught_up(partition)
            if not self._state.is_caught_up(partition):
                return await self.standby_read(partition, key, Refused(
                    503, "catching_up", f"partition {partition} is catching up; retry", 1.0))
            found = self._state.get_nowait(partition, key)
        except NotServing:
            return await self._fenced_read(partition, key)
        self.counters["local_reads"] += 1
        return self._result(partition, found)

    async def _fenced_read(self, partition: int, key: bytes) -> ReadResult:
        """A read of a held partition this node does not serve now. It answers only if
        Kafka's end offset, asked *after* the read arrived, is at most the position this
        node applied: then nothing was written that it has not applied. Every
        acknowledged write is below the end offset (acks=all: below the high
        watermark) before its ack, and every value any node answered was read below
        it, so the answer is as fresh as a caught-up owner's, even if another node
        owns the partition by now. Any doubt (Kafka slow or down, records past the
        position, the data dropped meanwhile) is the old answer: 503."""
        moving = Refused(503, "rebalancing",
                         f"partition {partition} is moving to a new owner", 1.0)
        if self._state.holds(partition):
            got = await self._fenced(self._state.get_fenced, partition, key, "fenced_reads")
            if got is not None:
                return got
        return await self.standby_read(partition, key, moving)

    async def standby_read(self, partition: int, key: bytes, refusal: Refused, *,
                           count: bool = True) -> ReadResult:
        """A read that would be answered ``refusal`` (no owner, owner unreachable,
        moving, catching up): answered from the standby copy if there is one and the
        fence shows it has everything (see actors/standby.py), else ``refusal``
        (counted as ``unavailable`` if ``count``)."""
        if self._standby is not None:
            got = await self._fenced(self._standby.get_fenced, partition, key,
                                     "standby_reads")
            if got is not None:
                return got
        if count:
            self.counters["unavailable"] += 1
        return refusal

    async def _fenced(self, get: FencedGet, partition: int, key: bytes, counter: str
                      ) -> ReadResult | None:
        """``get`` (held state or standby copy) behind the fence; None if the fence
        cannot be had or the copy lacks something below it."""
        end = await self._fence(partition)
        if end is None:
            return None
        try:
            found = get(partition, key, end)
        except NotServing:
            return None
        self.counters[counter] += 1
        return self._result(partition, found)

    async def _fence(self, partition: int) -> int | None:
        """Kafka's end offset of ``partition``, asked now; None when it cannot say."""
        if self._end_offset is None:
            return None
        with trio.move_on_after(FENCE_TIMEOUT):
            try:
                return await self._end_offset(partition)
            except Exception as exc:  # no proof of freshness: refuse, never guess
                log.debug("event=fence_failed partition=%d error=%r", partition, exc)
        return None

    @staticmethod
    def _result(partition: int, found: tuple[bytes, int] | None) -> ReadResult:
        if found is None:
            return Missing(partition)
        return Found(partition, found[0], found[1])

    async def write(self, partition: int, key: bytes, value: bytes | None,
                    if_match: str | None) -> WriteResult:
        box: ReplyBox[WriteResult] = ReplyBox()
        self.counters["writes"] += 1
        await self._writes.send(Write(partition, key, value, if_match, box))
        return await box.wait()


async def run(handle: RouterHandle, *, inbox: trio.MemoryReceiveChannel[RouterIn],
              task_status: trio.TaskStatus[RouterHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Keeps ``handle.table`` current. Owns ``inbox`` (returns when it closes)."""
    async with inbox:
        task_status.started(handle)
        async for table in inbox:
            handle.table = table
            handle.table_changed.set()
            handle.table_changed = trio.Event()
            mine = sorted(p for p, url in table.owners.items() if url == handle.url)
            log.info("event=routing_table generation=%d members=%d mine=%s",
                     table.generation, len(table.members), mine)
