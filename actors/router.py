"""Router: key -> partition -> owner, and the reads this node can answer itself.

:meth:`RouterHandle.locate` says where a key is answered (here, another node, or
nowhere now). :meth:`RouterHandle.read` reads a key of a partition this node serves,
after its catch-up gate, or one it holds but does not serve (a rebalance is under way),
fenced; :meth:`RouterHandle.standby_read` answers from the standby copy, fenced.
Writes go to the writer. Forwarding is the HTTP layer's (web/decide.py, web/proxy.py):
the router only decides.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import trio

from actors.replies import ReplyBox, send_request
from actors.standby import StandbyHandle
from actors.state import NotServing, StateHandle
from kstate.core.messages import RouterIn, RoutingTable, Write, WriterIn
from kstate.core.outcomes import Found, Missing, ReadOutcome, Unavailable, WriteOutcome
from kstate.core.partitioner import partition_for
from kstate.core.wire import MAX_HOPS

log = logging.getLogger(__name__)

# How long a fenced read (see RouterHandle.read) waits for Kafka's end offset.
FENCE_TIMEOUT = 1.0
# How long a request waits for this node's next routing table when its own is behind
# (see RouterHandle.settle).
TABLE_WAIT = 2.0
# Keys whose partition is remembered (murmur2 in Python costs microseconds; a GET's
# whole local answer costs tens): at most this many, then the memo starts over.
PARTITION_MEMO = 50_000

# The end offset (high watermark) of a partition, asked of Kafka now.
EndOffset = Callable[[int], Awaitable[int]]
# Whether this node can still prove nobody else owns its partitions (kstate/bridge/lease.py).
LeaseValid = Callable[[], bool]
# (partition, key, end offset) -> (value, offset) | None, or NotServing: a fenced read.
FencedGet = Callable[[int, bytes, int], tuple[bytes, int] | None]


@dataclass(frozen=True, slots=True)
class Local:
    """Answered here: a partition this node serves (or holds, for a fenced read)."""
    partition: int


@dataclass(frozen=True, slots=True)
class Remote:
    """Answered by the owner at ``url``, per the table of ``generation``."""
    partition: int
    url: str
    generation: int


@dataclass(frozen=True, slots=True)
class Nowhere:
    """No node can answer now (no owner known, the owner is this node but it is
    moving, or too many hops): ``refusal`` says why."""

    partition: int
    refusal: Unavailable


Route = Local | Remote | Nowhere


@dataclass(slots=True)
class RouterCounters:
    """Tallies of the read/write decision (kstate_router_events_total): the router
    counts the reads and writes it performs, the HTTP decision (web/decide.py) the
    forwards and the requests it could not answer."""

    local_reads: int = 0
    fenced_reads: int = 0
    standby_reads: int = 0
    forwards: int = 0
    unavailable: int = 0
    writes: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


def _moving(partition: int) -> Unavailable:
    return Unavailable("rebalancing", f"partition {partition} is moving to a new owner", 1.0)


# A partition stopped at a batch this node cannot decode stays stopped until an operator
# acts (README, "Operating"): clients need not retry often.
UNDECODABLE_RETRY = 10.0


def _undecodable(partition: int, why: str) -> Unavailable:
    return Unavailable("partition_undecodable",
                       f"partition {partition} stopped at {why}: this node cannot decode "
                       "that batch, so it cannot answer for the partition (README, "
                       "Operating)", UNDECODABLE_RETRY)


class RouterHandle:
    """What the HTTP layer asks: where a key lives, read it, write it."""

    def __init__(self, url: str, num_partitions: int, state: StateHandle,
                 writes: trio.MemorySendChannel[WriterIn], catchup_timeout: float,
                 end_offset: EndOffset | None = None,
                 standby: StandbyHandle | None = None,
                 lease: LeaseValid | None = None) -> None:
        self.url = url
        self.num_partitions = num_partitions
        self.table = RoutingTable.empty()
        self.table_changed = trio.Event()
        self.counters = RouterCounters()
        self._state = state
        self._writes = writes
        self._catchup_timeout = catchup_timeout
        self._end_offset = end_offset
        self._standby = standby
        # No lease (unit tests, or the serve_isolated setting): memory is trusted.
        self._lease: LeaseValid = lease or (lambda: True)
        self._partition_of: dict[bytes, int] = {}

    @property
    def standby(self) -> StandbyHandle | None:
        return self._standby

    def partition(self, key: bytes) -> int:
        pid = self._partition_of.get(key)
        if pid is None:
            if len(self._partition_of) >= PARTITION_MEMO:
                self._partition_of.clear()
            pid = self._partition_of[key] = partition_for(key, self.num_partitions)
        return pid

    def owner(self, partition: int) -> str | None:
        return self.table.owners.get(partition)

    def locate(self, key: bytes, hops: int = 0, *, read: bool = False) -> Route:
        """Where ``key`` is answered. A ``read`` of a partition this node still holds
        while it does not serve it (a rebalance is under way) is Local too: the read
        is fenced (see :meth:`read`). Writes to it wait for the next owner."""
        pid = self.partition(key)
        owner = self.table.owners.get(pid)
        if owner == self.url:
            if self._state.is_serving(pid):
                return Local(pid)
            halted = self.halted(pid)
            if halted is not None:
                return Nowhere(pid, halted)
            if read and self._end_offset is not None and self._state.holds(pid):
                return Local(pid)
            return Nowhere(pid, _moving(pid))
        if owner is None:
            return Nowhere(pid, Unavailable("no_owner", f"no owner known for partition {pid}"))
        if hops >= MAX_HOPS:
            return Nowhere(pid, Unavailable(
                "too_many_hops", f"forwarded {hops} times; the cluster is rebalancing"))
        return Remote(pid, owner, self.table.generation)

    def settle_nowait(self, key: bytes, hops: int = 0, *, read: bool = False,
                      peer_generation: int | None = None) -> Route | None:
        """:meth:`settle` at once when it would not wait (the table knows the key's
        owner and is not behind the forwarding node's), else None: the hot path skips
        settle's cancel scope, which costs as much as the lookup itself."""
        if (self.partition(key) not in self.table.owners
                or (peer_generation is not None and peer_generation > self.table.generation)):
            return None
        return self.locate(key, hops, read=read)

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

    def halted(self, partition: int) -> Unavailable | None:
        """The refusal for a partition this node stopped at a batch it cannot decode."""
        why = self._state.halted(partition)
        return None if why is None else _undecodable(partition, why)

    def read_nowait(self, partition: int, key: bytes) -> ReadOutcome | None:
        """The answer of a caught-up, serving partition at once, or None when the read
        must wait or be fenced (:meth:`read`): the fast path's read."""
        if not self._state.is_caught_up(partition) or not self._lease():
            return None
        try:
            found = self._state.get_nowait(partition, key)
        except NotServing:
            return None
        self.counters.local_reads += 1
        return _result(partition, found)

    async def read(self, partition: int, key: bytes) -> ReadOutcome:
        """Read a key of a partition this node serves, after its catch-up gate; or of
        one it holds but does not serve (revoked by a rebalance), fenced."""
        try:
            with trio.move_on_after(self._catchup_timeout):
                await self._state.wait_caught_up(partition)
            if not self._state.is_caught_up(partition):
                got = await self.standby_read(partition, key)
                return got or Unavailable("catching_up",
                                          f"partition {partition} is catching up; retry")
            if not self._lease():
                return await self._isolated_read(partition, key)
            found = self._state.get_nowait(partition, key)
        except NotServing:
            return self.halted(partition) or await self._fenced_read(partition, key)
        self.counters.local_reads += 1
        return _result(partition, found)

    async def _isolated_read(self, partition: int, key: bytes) -> ReadOutcome:
        """A read of a partition this node serves while it cannot prove it still owns
        it (no heartbeat answered within the lease: cut off from Kafka, or paused
        past it): another node may own it and have acknowledged newer writes. It
        answers only behind a fresh fence (Kafka's end offset, asked now); a node
        that cannot reach Kafka refuses."""
        got = await self._fenced(self._state.get_fenced, partition, key)
        if got is not None:
            self.counters.fenced_reads += 1
            return got
        return await self.standby_read(partition, key) or Unavailable(
            "owner_isolated", f"this node cannot prove it still owns partition "
            f"{partition} (no answer from Kafka's group coordinator); retry")

    async def _fenced_read(self, partition: int, key: bytes) -> ReadOutcome:
        """A read of a held partition this node does not serve now. It answers only if
        Kafka's end offset, asked *after* the read arrived, is at most the position this
        node applied: then nothing was written that it has not applied. Every
        acknowledged write is below the end offset (acks=all: below the high
        watermark) before its ack, and every value any node answered was read below
        it, so the answer is as fresh as a caught-up owner's, even if another node
        owns the partition by now. Any doubt (Kafka slow or down, records past the
        position, the data dropped meanwhile) is the old answer: 503."""
        if self._state.holds(partition):
            got = await self._fenced(self._state.get_fenced, partition, key)
            if got is not None:
                self.counters.fenced_reads += 1
                return got
        return await self.standby_read(partition, key) or _moving(partition)

    async def standby_read(self, partition: int, key: bytes) -> Found | Missing | None:
        """The standby copy's answer, if there is one and the fence shows it has
        everything (see actors/standby.py); else None."""
        if self._standby is None:
            return None
        got = await self._fenced(self._standby.get_fenced, partition, key)
        if got is not None:
            self.counters.standby_reads += 1
        return got

    async def _fenced(self, get: FencedGet, partition: int, key: bytes
                      ) -> Found | Missing | None:
        """``get`` (held state or standby copy) behind the fence; None if the fence
        cannot be had or the copy lacks something below it."""
        end = await self._fence(partition)
        if end is None:
            return None
        try:
            return _result(partition, get(partition, key, end))
        except NotServing:
            return None

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

    async def write(self, partition: int, key: bytes, value: bytes | None,
                    if_match: str | None) -> WriteOutcome:
        box: ReplyBox[WriteOutcome] = ReplyBox()
        self.counters.writes += 1
        await send_request(self._writes, Write(partition, key, value, if_match, box))
        return await box.wait()


def _result(partition: int, found: tuple[bytes, int] | None) -> Found | Missing:
    if found is None:
        return Missing(partition)
    return Found(partition, found[0], found[1])


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
