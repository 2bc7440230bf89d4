"""Writer: produces the records of PUT/DELETE for partitions this node owns, and answers
from what the one rule (kstate/core/records.py) did with each record when it was
applied: 200/201 (applied), 412 (its If-Match did not hold in log order), or 503.
A write is answered only once applied here (read-your-writes).

Owner epochs. After an assignment this node writes a marker of its own epoch into each
partition it owns (a :class:`Claim`; a static member's process that may be replacing a
live incarnation of itself waits for that incarnation's read lease to end first:
``claim_after``) and writes nothing else there until that marker is applied; every
record it writes carries that epoch. A record of an older epoch that lands after a
newer marker is fenced by every node, live and on replay: an old owner cut off from
Kafka, paused, or with a write stuck in its producer cannot overwrite what the new
owner acknowledged.

Key locks. Writes of one key are serialized (those that arrive together, from
concurrent requests, in no set order: HTTP gives them none). A key stays locked until
its record's fate is known: applied or fenced here, or, when Kafka did not confirm the
produce, until a marker of a new epoch is applied (then the record either landed
before it, and is in the state, or lands after it and is fenced). The client is
answered 503 at ``write_timeout`` meanwhile ("may or may not apply"). A write that
cannot get its key within ``write_timeout`` is refused without being produced
(``key_busy``).

The lease. A write is decided from this node's state (If-Match, a delete of a missing
key, created or not) only while its read lease holds (kstate/bridge/lease.py): a node
cut off from Kafka or paused past its session may have lost the partition to a node
that acknowledged newer versions, and a 412 or a "deleted" from its old state would be
a stale answer. Past the lease every write is refused unapplied (``owner_isolated``);
its records would be fenced by the new owner's epoch anyway.
A write is acknowledged only if the lease still holds once its record is applied
here. One decided under the lease can land much later (a slow broker, a producer stuck
past the session timeout); by then the group may have given the partition to another
node, whose catch-up target was read before the record landed: the record is before
that node's marker, so it applies everywhere, but the new owner answers reads without
it until its next fetch, and a 200 now would let a read after it see the old value.
Such a write is answered 503 ``write_unconfirmed``. Under the lease the group cannot
have moved the partition, so a later owner's target is read after the ack and holds it.

Too large. A record Kafka refused as larger than the topic takes (its
``max.message.bytes``) was not written: nothing to settle. The write is answered
:class:`TooLarge` (413) when the record alone is larger than that limit, else (it was
refused with the batch it shared) 503 ``write_refused``: not applied, retry.

Repairs. A fenced or failed record that becomes its key's latest record would let
compaction drop the key's real state; the owner restates the key (same value, same
version, carried in ``kstate-version``) so the latest record is right again.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from actors.inbox import ready
from actors.replies import ReplyBox, send_request
from actors.state import NotServing, StateHandle
from actors.write_deadlines import Deadlines, Once
from kstate.bridge import BrokerUnavailable, RecordTooLarge
from kstate.core.messages import Bump, Claim, Own, Record, StateIn, Write, WriterIn
from kstate.core.outcomes import Conflict, TooLarge, Unavailable, WriteOutcome, Written
from kstate.core.records import EPOCH_HEADER, EXPECT_EXISTS, EXPECT_HEADER, VERSION_HEADER, marker
from kstate.core.wire import etag, parse_etag

log = logging.getLogger(__name__)

Headers = tuple[tuple[str, bytes], ...]
# (partition, key, value, headers) -> offset once acknowledged; raises BrokerUnavailable.
Produce = Callable[[int, bytes, bytes | None, Headers], Awaitable[int]]
# Whether this node can still prove nobody else owns its partitions (kstate/bridge/lease.py).
LeaseValid = Callable[[], bool]

MARKER_RETRY = 0.5  # seconds between attempts to write a marker Kafka did not take
# seconds before a repair that did not apply is tried again; doubled each time, up to
# REPAIR_RETRY_MAX (one Kafka refuses as too large would otherwise be tried on and on)
REPAIR_RETRY = 1.0
REPAIR_RETRY_MAX = 60.0
BATCH_OVERHEAD = 61  # bytes of a record batch's header (Kafka's format v2)


def not_serving(partition: int) -> Unavailable:
    return Unavailable("not_owner", f"partition {partition} is moving; retry", 1.0)


def isolated(partition: int) -> Unavailable:
    return Unavailable("owner_isolated", f"this node cannot prove it still owns partition "
                       f"{partition} (no answer from Kafka's group coordinator); the write "
                       "was not applied; retry", 1.0)


def _varint_bytes(n: int) -> int:
    """Bytes of ``n`` as Kafka's zigzag varint."""
    z = (n << 1) ^ (n >> 63)
    size = 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def record_bytes(key: bytes, value: bytes | None, headers: Headers) -> int:
    """The size of the batch that holds only this record, uncompressed (Kafka's record
    format v2: the batch header, then the record with its varint lengths; timestamp
    and offset deltas 0)."""
    body = 1 + 1 + 1  # attributes, timestamp delta, offset delta
    body += _varint_bytes(len(key)) + len(key)
    body += (_varint_bytes(-1) if value is None
             else _varint_bytes(len(value)) + len(value))
    body += _varint_bytes(len(headers))
    for name, v in headers:
        raw = name.encode()
        body += _varint_bytes(len(raw)) + len(raw) + _varint_bytes(len(v)) + len(v)
    return BATCH_OVERHEAD + _varint_bytes(body) + body


def _too_large(size: int, limit: int | None) -> TooLarge | Unavailable:
    if limit is not None and size > limit:
        return TooLarge(f"the record takes {size} bytes; the topic takes at most "
                        f"{limit} (max.message.bytes); it was not written")
    return Unavailable("write_refused", "Kafka refused the batch this write was in as too "
                       "large; the write was not applied; retry", 1.0)


def unconfirmed(why: str) -> Unavailable:
    """A write that may have been produced and whose fate is not known here."""
    return Unavailable("write_unconfirmed", f"{why}; the write may or may not apply", 2.0)


@dataclass(frozen=True, slots=True)
class WriterStats:
    """The writer's numbers (/readyz, /metrics)."""
    inflight: int
    produced: int
    failed: int
    locked_keys: int
    repairs: int
    markers: int


class WriterHandle:
    """The writer's counters and in-flight bookkeeping (what a revoke waits on)."""

    def __init__(self) -> None:
        self.inflight: defaultdict[int, int] = defaultdict(int)
        self._idle = trio.Event()
        self.locks: dict[bytes, trio.Lock] = {}
        self.produced = 0
        self.failed = 0
        self.repairs = 0
        self.markers = 0

    def count_failed(self) -> None:
        self.failed += 1

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
                           failed=self.failed, locked_keys=len(self.locks),
                           repairs=self.repairs, markers=self.markers)


class _Writer:
    def __init__(self, produce: Produce, state: StateHandle,
                 own: trio.MemorySendChannel[StateIn], handle: WriterHandle,
                 write_timeout: float, catchup_timeout: float,
                 lease: LeaseValid | None, max_record_bytes: int | None = None) -> None:
        self.produce = produce
        self.max_record_bytes = max_record_bytes  # the topic's max.message.bytes, if known
        # No lease (unit tests, or the serve_isolated setting): memory is trusted.
        self.lease: LeaseValid = lease or (lambda: True)
        self.state = state
        self.own = own
        self.h = handle
        self.write_timeout = write_timeout
        self.deadlines = Deadlines(write_timeout, handle.count_failed)
        self.catchup_timeout = catchup_timeout
        self.stopped = trio.Event()  # the writer is stopping: repairs are not retried

    # -- markers ----------------------------------------------------------------
    async def claim(self, partition: int) -> None:
        """Claim ``partition`` after an assignment: once replayed to its target (the
        claim's epoch is above every epoch the partition has seen:
        records.claim_epoch) and past its ``claim_after`` (a static member's process
        may be replacing a live incarnation of itself, whose read lease must end
        first), write this node's marker. Returns early if the node stops serving it
        first, or if the partition is claimed already: at most one claim per
        assignment (kstate/core/table.py bump). A task whose bump found the partition
        revoked must not wait for the next assignment, which starts a claim of its
        own: both would write the same marker key."""
        held = False
        while True:
            try:
                await self.state.wait_replayed(partition)
            except NotServing:
                return
            hold = self.state.claim_after(partition) - time.monotonic()
            if hold > 0:
                if not held:
                    held = True
                    log.info("event=claim_held partition=%d seconds=%.3f", partition, hold)
                with trio.move_on_after(hold):
                    await self.state.wait_changed(partition)
                continue
            epoch = await self._bump(partition, claim=True)
            if epoch is not None:
                break
            if not self.state.is_serving(partition) or self.state.own_epoch(partition) >= 0:
                return  # revoked or taken over, or claimed (by another task) meanwhile
            await self.state.wait_changed(partition)
        log.info("event=partition_claimed partition=%d epoch=%d", partition, epoch)
        await self._marker(partition, epoch)

    async def _settle(self, partition: int) -> None:
        """A record of ``partition`` may or may not have been written: raise this
        node's epoch and write its marker, so that record is applied before it or
        fenced after it. Returns once that holds (or the partition is no longer ours:
        then the next owner's marker does the same)."""
        epoch = await self._bump(partition)
        if epoch is not None:
            log.info("event=epoch_bumped partition=%d epoch=%d", partition, epoch)
            await self._marker(partition, epoch)

    async def _bump(self, partition: int, claim: bool = False) -> int | None:
        box: ReplyBox[int | None] = ReplyBox()
        await send_request(self.own, Bump(partition, box, claim))
        return await box.wait()

    async def _marker(self, partition: int, epoch: int | None) -> None:
        """Write the marker of ``epoch`` and wait until it is applied here. A marker
        Kafka did not confirm may still land: the next attempt uses the next epoch, so
        every marker's key is unique and compaction never merges two of them."""
        while epoch is not None and self.state.is_serving(partition):
            key, value, headers = marker(partition, epoch)
            try:
                offset = await self.produce(partition, key, value, headers)
            except BrokerUnavailable as exc:
                log.warning("event=marker_failed partition=%d epoch=%d error=%r",
                            partition, epoch, str(exc))
                await trio.sleep(MARKER_RETRY)
                epoch = await self._bump(partition)
                continue
            self.h.markers += 1
            await self._apply_own(partition, Record(offset, key, value, headers))
            try:
                await self.state.wait_applied(partition, offset)
            except NotServing:
                pass
            return

    async def _apply_own(self, partition: int, record: Record) -> None:
        """Apply our own record now if it is the partition's next one (else the fetch
        brings it: order is kept either way)."""
        box: ReplyBox[bool] = ReplyBox()
        await send_request(self.own, Own(partition, [record], box))
        await box.wait()

    # -- writes -----------------------------------------------------------------
    async def handle(self, w: Write) -> None:
        lock = self.h.locks.setdefault(w.key, trio.Lock())
        reply = Once(w.reply)
        try:
            got = not lock.locked() and lock.statistics().tasks_waiting == 0
            if got:
                lock.acquire_nowait()  # the common case, without a cancel scope
            else:
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

    async def _write(self, w: Write, reply: Once) -> WriteOutcome:
        p = w.partition
        try:
            if not self.state.is_writable(p):
                with trio.move_on_after(min(self.catchup_timeout, self.write_timeout)):
                    await self.state.wait_writable(p)
            if not self.state.is_caught_up(p):
                return Unavailable("catching_up", f"partition {p} is catching up; retry", 1.0)
            if not self.state.is_writable(p):
                # caught up, but this node's newest marker is not written yet (Kafka
                # did not take it, e.g. while it is down)
                return Unavailable("claiming", f"this node's claim of partition {p} is not "
                                   "written yet; the write was not applied; retry", 1.0)
            current = self.state.get_nowait(p, w.key)
        except NotServing:
            return not_serving(p)
        if not self.lease():
            return isolated(p)  # `current` may be stale (module docstring)
        headers: list[tuple[str, bytes]] = [
            (EPOCH_HEADER, str(self.state.own_epoch(p)).encode())]
        if w.if_match is not None:
            version = None if current is None else current[1]
            if w.if_match == "*":
                holds, expect = version is not None, EXPECT_EXISTS
            else:
                wanted = parse_etag(w.if_match)
                holds = wanted is not None and version is not None and wanted == (p, version)
                expect = str(version)
            if not holds:
                have = "no version" if version is None else etag(p, version)
                return Conflict(f"If-Match {w.if_match} does not match {have}")
            headers.append((EXPECT_HEADER, expect.encode()))
        if w.value is None and current is None:
            # Deleting what does not exist: idempotent, nothing to produce.
            return Written(p, -1, created=False)
        # No await between this check and the count: a revoke either sees the write
        # in flight or the write sees the partition revoked.
        if not self.state.is_writable(p):
            return not_serving(p)
        self.h.inflight[p] += 1
        try:
            self.deadlines.add(reply)
            answer = await self._produce_and_wait(p, w.key, w.value, tuple(headers))
        finally:
            self.h._done(p)
        if isinstance(answer, Written) and not self.lease():
            # Applied here, but only now: past the lease the group may have moved the
            # partition, and its new owner may have read its catch-up target before
            # this record landed (module docstring, "The lease").
            return unconfirmed("this node's read lease ran out before the write was "
                               "applied here (another node may own the partition now)")
        return answer

    async def _produce_and_wait(self, p: int, key: bytes, value: bytes | None,
                                headers: Headers) -> WriteOutcome:
        """Produce, then wait until the rule decided the record here; returns only once
        the record's fate is known (never cut short by ``write_timeout``)."""
        try:
            offset = await self.produce(p, key, value, headers)
        except RecordTooLarge as exc:  # not written: nothing to settle
            self.h.failed += 1
            log.warning("event=produce_refused partition=%d error=%r", p, str(exc))
            return _too_large(record_bytes(key, value, headers), self.max_record_bytes)
        except BrokerUnavailable as exc:
            self.h.failed += 1
            log.warning("event=produce_failed partition=%d error=%r", p, str(exc))
            await self._settle(p)
            return Unavailable("broker_unavailable",
                               "Kafka did not confirm the write; it may or may not apply", 2.0)
        self.h.produced += 1
        await self._apply_own(p, Record(offset, key, value, headers))
        try:
            await self.state.wait_applied(p, offset)
        except NotServing:
            # Revoked or taken over before this node saw the record applied: the next
            # owner's marker may precede it (then it is fenced) or not.
            return unconfirmed("the partition moved before the write was applied here")
        outcome = self.state.outcome(p, offset)
        if outcome is None:
            return unconfirmed("the write's outcome is not known here")
        if outcome.applied:
            return Written(p, offset, created=outcome.created)
        if outcome.reason == "expect_failed":
            return Conflict("If-Match no longer matched when the write was applied")
        return Unavailable("superseded", f"a newer owner took partition {p} over; "
                           "the write was not applied", 1.0)

    # -- repairs ----------------------------------------------------------------
    async def repair(self, p: int, key: bytes) -> None:
        """Restate ``key`` while it is shadowed and this node may write ``p`` (see the
        module docstring). A restatement that did not apply (Kafka did not confirm or
        refused it) is tried again after a pause; returns once the key is no longer
        shadowed, or this node may not write ``p`` (the repair loop starts it again
        once it may), or the writer stops."""
        delay = REPAIR_RETRY
        while True:
            outcome = await self._restate(p, key)
            if outcome is None:
                return
            if isinstance(outcome, Written):
                self.h.repairs += 1
                delay = REPAIR_RETRY
                continue  # a record that landed after it may shadow the key again
            with trio.move_on_after(delay):
                await self.stopped.wait()
            if self.stopped.is_set():
                return
            delay = min(delay * 2, REPAIR_RETRY_MAX)

    async def _restate(self, p: int, key: bytes) -> WriteOutcome | None:
        """One restatement of ``key``; None when there is none to write now. A write of
        the key under way goes first: if it applies it restates the key itself, and
        if it does not (refused, unconfirmed, fenced) the key is still shadowed."""
        lock = self.h.locks.setdefault(key, trio.Lock())
        try:
            async with lock:
                if not self.state.is_shadowed(p, key) or not self.state.is_writable(p):
                    return None
                current = self.state.get_nowait(p, key)
                headers: list[tuple[str, bytes]] = [
                    (EPOCH_HEADER, str(self.state.own_epoch(p)).encode())]
                value = None
                if current is not None:
                    value = current[0]
                    headers.append((VERSION_HEADER, str(current[1]).encode()))
                self.h.inflight[p] += 1
                try:
                    return await self._produce_and_wait(p, key, value, tuple(headers))
                finally:
                    self.h._done(p)
        except NotServing:
            return None
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self.h.locks.pop(key, None)


async def _repairs(writer: _Writer, state: StateHandle, nursery: trio.Nursery) -> None:
    """Repair the shadowed keys of the partitions this node can write: as keys become
    shadowed, and as a partition with shadowed keys becomes writable here (a key a
    zombie's late write shadowed while this node caught up or claimed, or that a new
    owner replayed: nothing else would bring them up again). One task per key."""
    running: set[tuple[int, bytes]] = set()

    async def one(p: int, key: bytes) -> None:
        try:
            await writer.repair(p, key)
        finally:
            running.discard((p, key))

    while True:
        for p in sorted(state.held()):
            if state.is_writable(p):
                for key in state.shadowed(p):
                    if (p, key) not in running:
                        running.add((p, key))
                        nursery.start_soon(one, p, key)
        await state.wait_repairs_due()


async def run(produce: Produce, state: StateHandle, *,
              inbox: trio.MemoryReceiveChannel[WriterIn], own: trio.MemorySendChannel[StateIn],
              write_timeout: float, catchup_timeout: float, lease: LeaseValid | None = None,
              max_record_bytes: int | None = None,
              task_status: trio.TaskStatus[WriterHandle] = trio.TASK_STATUS_IGNORED) -> None:
    """Owns ``inbox`` and ``own`` (records it applies itself, epoch bumps: the state
    owner's inbox); returns when ``inbox`` closes and every write it took has answered."""
    handle = WriterHandle()
    writer = _Writer(produce, state, own, handle, write_timeout, catchup_timeout, lease,
                     max_record_bytes)
    async with own, inbox, trio.open_nursery() as nursery:
        repairs = trio.CancelScope()

        async def _repair_loop() -> None:
            with repairs:
                await _repairs(writer, state, nursery)

        nursery.start_soon(_repair_loop)
        deadlines = trio.CancelScope()

        async def _deadline_loop() -> None:
            with deadlines:
                await writer.deadlines.run()

        nursery.start_soon(_deadline_loop)
        task_status.started(handle)
        async with trio.open_nursery() as writes:
            async for first in inbox:
                for msg in (first, *ready(inbox)):  # the queued ones in the same turn
                    if isinstance(msg, Claim):
                        for p in sorted(msg.partitions):
                            nursery.start_soon(writer.claim, p)
                    else:
                        writes.start_soon(writer.handle, msg)
            repairs.cancel()
            writer.stopped.set()
        deadlines.cancel()  # every write taken has answered
