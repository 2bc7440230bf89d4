"""Writer: produces PUT/DELETE records for partitions this node owns, and answers only
once the state owner has applied them (read-your-writes).

Writes to one key are serialized (If-Match is checked against the caught-up state under
the key's lock). In-flight writes are counted per partition so a revoke can wait for
them (:meth:`WriterHandle.wait_idle`).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import trio

from actors.kafka import BrokerUnavailable, KafkaBridge
from actors.messages import Refused, Write, WriteResult, WriterIn, Written
from actors.state import NotServing, StateHandle

log = logging.getLogger(__name__)


def etag(partition: int, offset: int) -> str:
    return f'"{partition}-{offset}"'


def not_serving(partition: int) -> Refused:
    return Refused(503, "not_owner", f"partition {partition} is moving; retry", 1.0)


class WriterHandle:
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

    def statistics(self) -> dict[str, int]:
        return {"inflight": sum(self.inflight.values()), "produced": self.produced,
                "failed": self.failed, "locked_keys": len(self.locks)}


class _Writer:
    def __init__(self, bridge: KafkaBridge, state: StateHandle, handle: WriterHandle,
                 write_timeout: float, catchup_timeout: float) -> None:
        self.bridge = bridge
        self.state = state
        self.h = handle
        self.write_timeout = write_timeout
        self.catchup_timeout = catchup_timeout

    async def handle(self, w: Write) -> None:
        lock = self.h.locks.setdefault(w.key, trio.Lock())
        try:
            async with lock:
                w.reply.send(await self._write(w))
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self.h.locks.pop(w.key, None)

    async def _write(self, w: Write) -> WriteResult:
        p = w.partition
        try:
            with trio.move_on_after(self.catchup_timeout):
                await self.state.wait_caught_up(p)
            if not self.state.is_caught_up(p):
                return Refused(503, "catching_up",
                               f"partition {p} is catching up; retry", 1.0)
            current = self.state.get_nowait(p, w.key)
        except NotServing:
            return not_serving(p)
        if w.if_match is not None:
            have = None if current is None else etag(p, current[1])
            if have is None or (w.if_match != "*" and w.if_match != have):
                return Refused(412, "precondition_failed",
                               f"If-Match {w.if_match} does not match {have or 'no version'}")
        if w.value is None and current is None:
            # Deleting what does not exist: idempotent, nothing to produce.
            return Written(p, -1, created=False)
        # No await between this check and the count: a revoke either sees the write
        # in flight or the write sees the partition revoked.
        if not self.state.is_serving(p):
            return not_serving(p)
        self.h.inflight[p] += 1
        try:
            return await self._produce_and_wait(w, created=current is None)
        finally:
            self.h._done(p)

    async def _produce_and_wait(self, w: Write, *, created: bool) -> WriteResult:
        p = w.partition
        with trio.move_on_after(self.write_timeout):
            try:
                offset = await self.bridge.produce(p, w.key, w.value)
            except BrokerUnavailable as exc:
                self.h.failed += 1
                log.warning("event=produce_failed partition=%d error=%s", p, exc)
                return Refused(503, "broker_unavailable", "Kafka is not available; retry", 2.0)
            self.h.produced += 1
            try:
                await self.state.wait_applied(p, offset)
            except NotServing:
                # Committed (acks=all) before the revoke completed: every next owner
                # catches up past it before it serves, so acknowledging is safe.
                pass
            return Written(p, offset, created=created)
        self.h.failed += 1
        return Refused(503, "write_timeout",
                       "the write was not confirmed in time; it may or may not apply", 2.0)


async def run(bridge: KafkaBridge, state: StateHandle, *,
              inbox: trio.MemoryReceiveChannel[WriterIn],
              write_timeout: float, catchup_timeout: float,
              task_status: trio.TaskStatus[WriterHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Owns ``inbox``; returns when it closes and every write it took has answered."""
    handle = WriterHandle()
    writer = _Writer(bridge, state, handle, write_timeout, catchup_timeout)
    async with inbox, trio.open_nursery() as nursery:
        task_status.started(handle)
        async for w in inbox:
            nursery.start_soon(writer.handle, w)
