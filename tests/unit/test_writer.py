"""The writer (actors/writer.py), driven through its inbox with a real state owner and a
produce function the test controls (no Kafka): it answers only once its record is
applied, checks If-Match against the caught-up state, and keeps a key locked until the
fate of its record is known (the lost-update rule)."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from actors import state, writer
from actors.replies import ReplyBox
from kstate.bridge import BrokerUnavailable
from kstate.core.messages import Assign, Batch, Record, Revoke, Write
from kstate.core.outcomes import Conflict, Unavailable, Written
from kstate.core.wire import etag

WRITE_TIMEOUT = 2.0


def user(email: str, name: str) -> bytes:
    return f'{{"name":"{name}","email":"{email}"}}'.encode()


class Log:
    """A partition-0 log the test owns: ``produce`` appends (when allowed) and returns
    the offset; ``deliver`` hands what was produced to the state owner, as a fetch."""

    def __init__(self, state_send: trio.MemorySendChannel) -> None:
        self.records: list[Record] = []
        self.delivered = 0
        self.state_send = state_send
        self.gate: trio.Event | None = None  # set: produce waits for it
        self.fail = False

    async def produce(self, partition: int, key: bytes, value: bytes | None) -> int:
        assert partition == 0
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise BrokerUnavailable("broker gone")
        self.records.append(Record(len(self.records), key, value))
        return len(self.records) - 1

    async def deliver(self) -> None:
        new = self.records[self.delivered:]
        self.delivered = len(self.records)
        await self.state_send.send(Batch(0, {0: new}, {0: self.delivered}))


async def start(nursery: trio.Nursery):
    state_send, state_recv = trio.open_memory_channel(0)
    handle = await nursery.start(partial(state.run, inbox=state_recv))
    box: ReplyBox[dict] = ReplyBox()
    await state_send.send(Assign(0, frozenset({0}), {0: 0}, box))
    await box.wait()
    log = Log(state_send)
    writes_send, writes_recv = trio.open_memory_channel(8)
    wh = await nursery.start(partial(writer.run, log.produce, handle, inbox=writes_recv,
                                     write_timeout=WRITE_TIMEOUT, catchup_timeout=1.0))
    return log, writes_send, wh, state_send


async def write(send, key: bytes, value: bytes | None, if_match: str | None = None):
    box: ReplyBox = ReplyBox()
    await send.send(Write(0, key, value, if_match, box))
    return box


async def test_answers_only_once_applied_and_checks_if_match(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, wh, _state_send = await start(nursery)
        box = await write(send, b"a@x", user("a@x", "one"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(log.records) == 1
        assert not box._event.is_set()
        await log.deliver()
        assert await box.wait() == Written(0, 0, created=True)
        # If-Match on the current version: written; on an old one or absent: 412.
        box = await write(send, b"a@x", user("a@x", "two"), if_match=etag(0, 0))
        await trio.testing.wait_all_tasks_blocked()
        await log.deliver()
        assert await box.wait() == Written(0, 1, created=False)
        box = await write(send, b"a@x", user("a@x", "three"), if_match=etag(0, 0))
        assert isinstance(await box.wait(), Conflict)
        box = await write(send, b"b@x", user("b@x", "b"), if_match="*")
        assert isinstance(await box.wait(), Conflict)
        assert len(log.records) == 2  # refused writes produce nothing
        # Deleting a key that does not exist: a success with nothing written.
        box = await write(send, b"nobody@x", None)
        assert await box.wait() == Written(0, -1, created=False)
        assert len(log.records) == 2
        assert wh.statistics().produced == 2
        nursery.cancel_scope.cancel()


async def test_a_timed_out_write_keeps_its_key_until_its_fate_is_known(autojump_clock):
    """The lost-update rule: the first write is answered 503 at write_timeout while its
    record is still in the producer; a later If-Match write of the same key must be
    checked against a state that has that record, not before it."""
    async with trio.open_nursery() as nursery:
        log, send, wh, _state_send = await start(nursery)
        box = await write(send, b"a@x", user("a@x", "v0"))
        await trio.testing.wait_all_tasks_blocked()
        await log.deliver()
        assert await box.wait() == Written(0, 0, created=True)

        log.gate = trio.Event()  # the broker stops answering
        slow = await write(send, b"a@x", user("a@x", "slow"))
        answer = await slow.wait()
        assert isinstance(answer, Unavailable)
        assert answer.reason == "write_timeout"
        assert wh.statistics().locked_keys == 1  # the key is still held

        started = trio.current_time()
        cond = await write(send, b"a@x", user("a@x", "cond"), if_match=etag(0, 0))
        await trio.sleep(0.5)
        log.gate.set()  # the slow record lands at offset 1...
        log.gate = None
        await trio.testing.wait_all_tasks_blocked()
        await log.deliver()  # ...and is applied: only now is the key free
        got = await cond.wait()
        assert isinstance(got, Conflict), got  # checked against offset 1, not 0
        assert trio.current_time() - started >= 0.5
        assert wh.statistics().locked_keys == 0
        nursery.cancel_scope.cancel()


async def test_a_write_that_cannot_get_its_key_is_refused_unapplied(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, _, _ = await start(nursery)
        log.gate = trio.Event()
        first = await write(send, b"a@x", user("a@x", "first"))
        second = await write(send, b"a@x", user("a@x", "second"))
        got = await second.wait()
        assert isinstance(got, Unavailable)
        assert got.reason == "key_busy"
        assert isinstance(await first.wait(), Unavailable)  # write_timeout
        assert log.records == []  # the second was never produced
        nursery.cancel_scope.cancel()


async def test_broker_errors_and_revokes(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, wh, state_send = await start(nursery)
        log.fail = True
        box = await write(send, b"a@x", user("a@x", "x"))
        got = await box.wait()
        assert isinstance(got, Unavailable)
        assert got.reason == "broker_unavailable"
        assert wh.statistics().failed == 1
        log.fail = False
        # Produced (acks=all), then the partition is revoked before it was applied:
        # acknowledged, since every next owner catches up past it.
        box = await write(send, b"a@x", user("a@x", "y"))
        await trio.testing.wait_all_tasks_blocked()
        rbox: ReplyBox[None] = ReplyBox()
        await state_send.send(Revoke(1, frozenset({0}), rbox))
        await rbox.wait()
        assert await box.wait() == Written(0, 0, created=True)
        # A write to a partition this node no longer serves: refused, not produced.
        box = await write(send, b"b@x", user("b@x", "z"))
        got = await box.wait()
        assert isinstance(got, Unavailable)
        assert got.reason == "not_owner"
        assert len(log.records) == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("inflight", [0, 1])
async def test_wait_idle_sees_writes_in_flight(autojump_clock, inflight):
    async with trio.open_nursery() as nursery:
        log, send, wh, _ = await start(nursery)
        log.gate = trio.Event()
        for i in range(inflight):
            await write(send, f"k{i}@x".encode(), user(f"k{i}@x", "n"))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(1.0) as scope:
            await wh.wait_idle(frozenset({0}))
        assert scope.cancelled_caught == bool(inflight)
        nursery.cancel_scope.cancel()
