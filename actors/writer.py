"""Writer: produces PUT/DELETE records for partitions this node owns, and answers only
once the state owner has applied them (read-your-writes).

Writes to one key are serialized (If-Match is checked against the caught-up state under
the key's lock). In-flight writes are counted per partition so a revoke can wait for
them (:meth:`WriterHandle.wait_idle`).

A write not confirmed within ``write_timeout`` is answered 503 ("may or may not
apply"), but its record may still be in the producer (the idempotent producer retries
until Kafka answers): the key's lock and the in-flight count stay held until its fate
is known and, if written, applied. Otherwise the next write of the key would be
checked against a state without it, and ``If-Match`` would pass on a version that is
no longer the newest (a lost update; found by the chaos harness). A write that cannot
get its key within ``write_timeout`` is refused without being produced.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from actors.state import NotServing, StateHandle
from kstate.bridge import BrokerUnavailable
from kstate.core.messages import Reply, Write, WriterIn
from kstate.core.outcomes import Conflict, Unavailable, WriteOutcome, Written
from kstate.core.wire import etag

log = logging.getLogger(__name__)

# (partition, key, value) -> offset once acknowledged; raises BrokerUnavailable.
Produce = Callable[[int, bytes, bytes | None], Awaitable[int]]


def not_serving(partition: int) -> Unavailable:
    return Unavailable("not_owner", f"partition {partition} is moving; retry", 1.0)


@dataclass(frozen=True, slots=True)
class WriterStats:
    """The writer's numbers (/readyz, /metrics)."""
    inflight: int
    produced: int
    failed: int
    locked_keys: int


class WriterHandle:
    """The writer's counters and in-flight bookkeeping (what a revoke waits on)."""

    def __init__(self) -> None:
        self.inflight: defaultdict[int, int] = defaultdict(int)
        self._idle = trio.Event()
        self.locks: dict[bytes, trio.Lock] = {}
        self.produced = 0
        self.failed = 0

    def _done(self, partition: int) -> None:
        self.inflight[partition] -= 1
        if self.inflight[partition] == 0:
            self._idle.set()
            self._idle = trio.Event()

    async def wait_idle(self, partitions: frozenset[int]) -> None:
        """Return when no write to ``partitions`` is in flight."""
        while any(self.inflight[p] for p in partitions):
            await self._idle.wait()

    def statistics(self) -> WriterStats:
        return WriterStats(inflight=sum(self.inflight.values()), produced=self.produced,
                           failed=self.failed, locked_keys=len(self.locks))


class _Once:
    """Answers a write once: the first answer (in time, or the 503 at the deadline) wins."""

    def __init__(self, reply: Reply[WriteOutcome]) -> None:
        self._reply = reply
        self.sent = False

    def send(self, value: WriteOutcome) -> None:
        if not self.sent:
            self.sent = True
            self._reply.send(value)


class _Writer:
    def __init__(self, produce: Produce, state: StateHandle, handle: WriterHandle,
                 write_timeout: float, catchup_timeout: float) -> None:
        self.produce = produce
        self.state = state
        self.h = handle
        self.write_timeout = write_timeout
        self.catchup_timeout = catchup_timeout

    async def handle(self, w: Write) -> None:
        lock = self.h.locks.setdefault(w.key, trio.Lock())
        reply = _Once(w.reply)
        try:
            got = False
            with trio.move_on_after(self.write_timeout):
                await lock.acquire()
                got = True
            if not got:
                reply.send(Unavailable("key_busy", "an earlier write of this key is not "
                                       "settled yet; this one was not applied; retry", 2.0))
                return
            try:
                reply.send(await self._write(w, reply))
            finally:
                lock.release()
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self.h.locks.pop(w.key, None)

    async def _write(self, w: Write, reply: _Once) -> WriteOutcome:
        p = w.partition
        try:
            with trio.move_on_after(self.catchup_timeout):
                await self.state.wait_caught_up(p)
            if not self.state.is_caught_up(p):
                return Unavailable("catching_up", f"partition {p} is catching up; retry", 1.0)
            current = self.state.get_nowait(p, w.key)
        except NotServing:
            return not_serving(p)
        if w.if_match is not None:
            have = None if current is None else etag(p, current[1])
            if have is None or (w.if_match != "*" and w.if_match != have):
                return Conflict(f"If-Match {w.if_match} does not match {have or 'no version'}")
        if w.value is None and current is None:
            # Deleting what does not exist: idempotent, nothing to produce.
            return Written(p, -1, created=False)
        # No await between this check and the count: a revoke either sees the write
        # in flight or the write sees the partition revoked.
        if not self.state.is_serving(p):
            return not_serving(p)
        self.h.inflight[p] += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._answer_at_deadline, reply)
                result = await self._produce_and_wait(w, created=current is None)
                nursery.cancel_scope.cancel()
            return result
        finally:
            self.h._done(p)

    async def _answer_at_deadline(self, reply: _Once) -> None:
        await trio.sleep(self.write_timeout)
        self.h.failed += 1
        reply.send(Unavailable("write_timeout",
                               "the write was not confirmed in time; it may or may not apply",
                               2.0))

    async def _produce_and_wait(self, w: Write, *, created: bool) -> WriteOutcome:
        """Produce, then wait until applied; returns only once the record's fate is
        known (never cut short by ``write_timeout``: see the module docstring)."""
        p = w.partition
        try:
            offset = await self.produce(p, w.key, w.value)
        except BrokerUnavailable as exc:
            self.h.failed += 1
            log.warning("event=produce_failed partition=%d error=%s", p, exc)
            return Unavailable("broker_unavailable", "Kafka is not available; retry", 2.0)
        self.h.produced += 1
        try:
            await self.state.wait_applied(p, offset)
        except NotServing:
            # Committed (acks=all) before the revoke completed: every next owner
            # catches up past it before it serves, so acknowledging is safe.
            pass
        return Written(p, offset, created=created)


async def run(produce: Produce, state: StateHandle, *,
              inbox: trio.MemoryReceiveChannel[WriterIn],
              write_timeout: float, catchup_timeout: float,
              task_status: trio.TaskStatus[WriterHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Owns ``inbox``; returns when it closes and every write it took has answered."""
    handle = WriterHandle()
    writer = _Writer(produce, state, handle, write_timeout, catchup_timeout)
    async with inbox, trio.open_nursery() as nursery:
        task_status.started(handle)
        async for w in inbox:
            nursery.start_soon(writer.handle, w)
