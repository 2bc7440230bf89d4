"""The writer (actors/writer.py), driven through its inbox with a real state owner and a
log the test controls (no Kafka): it claims a partition with a marker before writing
it, answers from what the rule did with its record (applied at once when it is the
next record), decides If-Match in log order, keeps a key locked until its record's fate
is known, fences what it could not confirm, and repairs keys a fenced record shadows."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from actors import state, writer
from actors.replies import ReplyBox
from kstate.bridge import BrokerUnavailable, RecordTooLarge
from kstate.core.messages import Assign, Batch, Bump, Claim, Record, Revoke, Write
from kstate.core.outcomes import Conflict, TooLarge, Unavailable, Written
from kstate.core.records import (
    EPOCH_HEADER,
    EPOCH_STRIDE,
    EXPECT_HEADER,
    MARKER_PREFIX,
    VERSION_HEADER,
    marker,
)
from kstate.core.wire import etag

WRITE_TIMEOUT = 2.0
GEN = 3
EPOCH = GEN * EPOCH_STRIDE


def user(email: str, name: str) -> bytes:
    return f'{{"name":"{name}","email":"{email}"}}'.encode()


class Log:
    """Partition 0 of a topic the test owns. ``produce`` appends (unless told to hang
    or fail) and returns the offset; ``deliver`` hands what is not delivered yet to the
    state owner, as a fetch would; ``append`` writes as another producer would."""

    def __init__(self, state_send: trio.MemorySendChannel) -> None:
        self.records: list[Record] = []
        self.delivered = 0
        self.state_send = state_send
        self.gate: trio.Event | None = None  # set: produce waits for it
        self.fail = False
        self.too_large = False  # set: Kafka refuses the next produce as too large
        self.refuse = 0  # Kafka refuses this many of the next produces as too large

    def append(self, key: bytes, value: bytes | None, headers=()) -> int:
        self.records.append(Record(len(self.records), key, value, tuple(headers)))
        return len(self.records) - 1

    async def produce(self, partition: int, key: bytes, value: bytes | None, headers) -> int:
        assert partition == 0
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise BrokerUnavailable("broker gone")
        if self.too_large or self.refuse:
            self.refuse = max(0, self.refuse - 1)
            raise RecordTooLarge("MessageSizeTooLargeError()")
        return self.append(key, value, headers)

    async def deliver(self) -> None:
        new = self.records[self.delivered:]
        self.delivered = len(self.records)
        await self.state_send.send(Batch(0, {0: new}, {0: self.delivered}))

    def epoch_of(self, offset: int) -> int:
        return int(dict(self.records[offset].headers)[EPOCH_HEADER])


async def start(nursery: trio.Nursery, *, claim: bool = True, lease=None,
                max_record_bytes: int | None = None):
    state_send, state_recv = trio.open_memory_channel(0)
    handle = await nursery.start(partial(state.run, inbox=state_recv, num_partitions=1))
    box: ReplyBox[dict] = ReplyBox()
    await state_send.send(Assign(0, frozenset({0}), {0: 0}, box, GEN))
    await box.wait()
    log = Log(state_send)
    writes_send, writes_recv = trio.open_memory_channel(8)
    wh = await nursery.start(partial(writer.run, log.produce, handle, inbox=writes_recv,
                                     own=state_send.clone(), write_timeout=WRITE_TIMEOUT,
                                     catchup_timeout=1.0, lease=lease,
                                     max_record_bytes=max_record_bytes))
    if claim:
        await writes_send.send(Claim(frozenset({0})))
        with trio.fail_after(1):
            await handle.wait_writable(0)
    return log, writes_send, wh, handle


async def write(send, key: bytes, value: bytes | None, if_match: str | None = None):
    box: ReplyBox = ReplyBox()
    await send.send(Write(0, key, value, if_match, box))
    return box


async def test_claims_before_writing_and_answers_from_the_apply(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, wh, st = await start(nursery, claim=False)
        box = await write(send, b"a@x", user("a@x", "one"))
        got = await box.wait()  # no marker of ours yet: nothing is written
        assert isinstance(got, Unavailable)
        assert got.reason == "claiming"
        assert log.records == []
        await send.send(Claim(frozenset({0})))
        with trio.fail_after(1):
            await st.wait_writable(0)
        assert (log.records[0].key, log.records[0].value) == marker(0, EPOCH)[:2]
        # The next record of the partition: applied at once, no fetch needed.
        box = await write(send, b"a@x", user("a@x", "one"))
        assert await box.wait() == Written(0, 1, created=True)
        assert log.epoch_of(1) == EPOCH
        assert st.get_nowait(0, b"a@x") == (user("a@x", "one"), 1)
        # Another producer wrote in between: ours is not the next record, so it waits
        # for the fetch, which brings both.
        log.append(b"z@x", user("z@x", "foreign"))
        box = await write(send, b"a@x", user("a@x", "two"))
        await trio.testing.wait_all_tasks_blocked()
        assert not box._event.is_set()
        await log.deliver()
        assert await box.wait() == Written(0, 3, created=False)
        assert wh.statistics().markers == 1
        nursery.cancel_scope.cancel()


async def test_if_match_is_decided_in_log_order(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, _, st = await start(nursery)
        assert await (await write(send, b"a@x", user("a@x", "v1"))).wait() == \
            Written(0, 1, created=True)
        # Wrong version, or "*" on an absent key: refused before anything is written.
        got = await (await write(send, b"a@x", user("a@x", "no"), if_match=etag(0, 0))).wait()
        assert isinstance(got, Conflict)
        got = await (await write(send, b"b@x", user("b@x", "no"), if_match="*")).wait()
        assert isinstance(got, Conflict)
        assert len(log.records) == 2
        # The right version when checked, but another producer's record lands first:
        # the record carries the version it expects, and the apply refuses it.
        log.gate = trio.Event()
        box = await write(send, b"a@x", user("a@x", "v2"), if_match=etag(0, 1))
        await trio.testing.wait_all_tasks_blocked()
        log.append(b"a@x", user("a@x", "foreign"))
        log.gate.set()
        log.gate = None
        await trio.testing.wait_all_tasks_blocked()
        assert dict(log.records[3].headers)[EXPECT_HEADER] == b"1"
        await log.deliver()
        assert isinstance(await box.wait(), Conflict)
        assert st.get_nowait(0, b"a@x") == (user("a@x", "foreign"), 2)
        # Deleting what does not exist: a success with nothing written.
        assert await (await write(send, b"nobody@x", None)).wait() == Written(0, -1, False)
        nursery.cancel_scope.cancel()


async def test_a_timed_out_write_keeps_its_key_until_its_fate_is_known(autojump_clock):
    """The lost-update rule: a write answered 503 at write_timeout whose record is still
    in the producer keeps its key; a later If-Match write is checked against a state
    that has that record."""
    async with trio.open_nursery() as nursery:
        log, send, wh, st = await start(nursery)
        assert await (await write(send, b"a@x", user("a@x", "v0"))).wait() == \
            Written(0, 1, created=True)
        log.gate = trio.Event()  # the broker stops answering
        slow = await write(send, b"a@x", user("a@x", "slow"))
        answer = await slow.wait()
        assert isinstance(answer, Unavailable)
        assert answer.reason == "write_timeout"
        assert wh.statistics().locked_keys == 1
        cond = await write(send, b"a@x", user("a@x", "cond"), if_match=etag(0, 1))
        await trio.sleep(0.5)
        log.gate.set()  # the slow record lands (offset 2) and is applied
        log.gate = None
        got = await cond.wait()
        assert isinstance(got, Conflict), got  # checked against offset 2, not 1
        assert st.get_nowait(0, b"a@x") == (user("a@x", "slow"), 2)
        assert wh.statistics().locked_keys == 0
        nursery.cancel_scope.cancel()


async def test_an_unconfirmed_write_is_fenced_by_a_new_epoch(autojump_clock):
    """Kafka did not confirm a produce: the writer raises its epoch with a marker
    before it lets the key go, so the record, if it lands later, is fenced."""
    async with trio.open_nursery() as nursery:
        log, send, wh, st = await start(nursery)
        assert await (await write(send, b"a@x", user("a@x", "kept"))).wait() == \
            Written(0, 1, created=True)
        log.fail = True
        box = await write(send, b"a@x", user("a@x", "lost"))
        await trio.sleep(0.1)
        log.fail = False  # Kafka is back: the marker of epoch + 1 goes in
        got = await box.wait()
        assert isinstance(got, Unavailable)
        assert got.reason == "broker_unavailable"
        with trio.fail_after(3):
            while st.own_epoch(0) == EPOCH or not st.is_writable(0):
                await st.wait_changed(0)
        # (a marker Kafka did not take either is retried under the next epoch)
        assert log.records[-1].key == marker(0, st.own_epoch(0))[0]
        # The unconfirmed record arrives now (a proxy held it): fenced, state unchanged.
        log.append(b"a@x", user("a@x", "lost"), [(EPOCH_HEADER, str(EPOCH).encode())])
        await log.deliver()
        await trio.testing.wait_all_tasks_blocked()
        assert st.get_nowait(0, b"a@x") == (user("a@x", "kept"), 1)
        # ...and it shadowed the key: the writer restates it, same value, same version.
        with trio.fail_after(3):
            while st.shadowed(0):
                await st.wait_changed(0)
        repair = log.records[-1]
        assert (repair.key, repair.value) == (b"a@x", user("a@x", "kept"))
        assert dict(repair.headers)[VERSION_HEADER] == b"1"
        assert st.get_nowait(0, b"a@x") == (user("a@x", "kept"), 1)
        assert wh.statistics().repairs == 1
        nursery.cancel_scope.cancel()


async def test_a_newer_owner_supersedes_this_node(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, _, st = await start(nursery)
        log.gate = trio.Event()
        box = await write(send, b"a@x", user("a@x", "zombie"))
        await trio.testing.wait_all_tasks_blocked()
        # A newer owner (generation GEN + 1) claims the partition before ours lands.
        key, value, headers = marker(0, EPOCH + EPOCH_STRIDE)
        log.append(key, value, headers)
        log.gate.set()
        log.gate = None
        await trio.testing.wait_all_tasks_blocked()
        await log.deliver()
        got = await box.wait()
        assert isinstance(got, Unavailable)
        assert got.reason in {"superseded", "write_unconfirmed"}
        assert not st.is_serving(0)  # taken over: this node no longer serves it
        assert st.table.partitions[0].counts.get("fenced") == 1
        got = await (await write(send, b"b@x", user("b@x", "late"))).wait()
        assert isinstance(got, Unavailable)
        assert got.reason == "not_owner"
        nursery.cancel_scope.cancel()


async def test_a_write_that_cannot_get_its_key_is_refused_unapplied(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, _, _ = await start(nursery)
        log.gate = trio.Event()
        first = await write(send, b"a@x", user("a@x", "first"))
        await trio.testing.wait_all_tasks_blocked()  # the first holds the key, in produce
        second = await write(send, b"a@x", user("a@x", "second"))
        got = await second.wait()
        assert isinstance(got, Unavailable)
        assert got.reason == "key_busy"
        assert isinstance(await first.wait(), Unavailable)  # write_timeout
        assert len(log.records) == 1  # the marker only: the second was never produced
        nursery.cancel_scope.cancel()


async def test_wait_idle_sees_writes_in_flight(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, wh, _ = await start(nursery)
        with trio.move_on_after(1.0) as scope:
            await wh.wait_idle(frozenset({0}))
        assert not scope.cancelled_caught
        log.gate = trio.Event()
        await write(send, b"k@x", user("k@x", "n"))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(1.0) as scope:
            await wh.wait_idle(frozenset({0}))
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()


async def test_a_group_that_starts_over_claims_above_the_old_markers(autojump_clock):
    # A topic written under an older group (or a group Kafka forgot: its generations
    # start over at 1) holds markers of a high epoch. A node assigned in generation GEN
    # claims above them once caught up, instead of being superseded by them forever.
    async with trio.open_nursery() as nursery:
        state_send, state_recv = trio.open_memory_channel(0)
        handle = await nursery.start(partial(state.run, inbox=state_recv, num_partitions=1))
        log = Log(state_send)
        old = 40 * EPOCH_STRIDE + 3
        log.append(*marker(0, old))
        log.append(b"a@x", user("a@x", "old"), [(EPOCH_HEADER, str(old).encode())])
        box: ReplyBox[dict] = ReplyBox()
        await state_send.send(Assign(0, frozenset({0}), {0: len(log.records)}, box, GEN))
        await box.wait()
        writes_send, writes_recv = trio.open_memory_channel(8)
        await nursery.start(partial(writer.run, log.produce, handle, inbox=writes_recv,
                                    own=state_send.clone(), write_timeout=WRITE_TIMEOUT,
                                    catchup_timeout=1.0))
        await writes_send.send(Claim(frozenset({0})))
        await trio.testing.wait_all_tasks_blocked()
        assert len(log.records) == 2  # no claim before the node has seen the partition
        await log.deliver()
        with trio.fail_after(1):
            await handle.wait_writable(0)
        assert (log.records[2].key, log.records[2].value) == \
            marker(0, (40 + GEN) * EPOCH_STRIDE)[:2]
        got = await (await write(writes_send, b"a@x", user("a@x", "new"))).wait()
        assert got == Written(0, 3, created=False)
        assert handle.get_nowait(0, b"a@x") == (user("a@x", "new"), 3)
        nursery.cancel_scope.cancel()


async def test_past_its_lease_a_write_is_refused_not_decided_from_old_state(autojump_clock):
    # A chaos run (3 brokers, a node cut off from Kafka for 10 s) caught an isolated
    # owner answering 412 to an If-Match naming the version the new owner had just
    # acknowledged: it compared with its own old state. Past the lease nothing is
    # decided from memory: no 412, no "deleted" for a key it thinks missing, no write.
    lease = {"valid": True}
    async with trio.open_nursery() as nursery:
        log, send, _, _ = await start(nursery, lease=lambda: lease["valid"])
        assert await (await write(send, b"a@x", user("a@x", "v1"))).wait() == \
            Written(0, 1, created=True)
        lease["valid"] = False
        for key, value, if_match in [(b"a@x", user("a@x", "v2"), etag(0, 7)),  # was 412
                                     (b"a@x", user("a@x", "v2"), etag(0, 1)),
                                     (b"a@x", user("a@x", "v2"), None),
                                     (b"nobody@x", None, None),  # was "deleted", unwritten
                                     (b"a@x", None, None)]:
            got = await (await write(send, key, value, if_match)).wait()
            assert isinstance(got, Unavailable), got
            assert got.reason == "owner_isolated"
        assert len(log.records) == 2  # nothing produced
        lease["valid"] = True  # renewed: decided as before
        got = await (await write(send, b"a@x", user("a@x", "v2"), if_match=etag(0, 7))).wait()
        assert isinstance(got, Conflict)
        assert await (await write(send, b"a@x", user("a@x", "v2"), if_match=etag(0, 1))
                      ).wait() == Written(0, 2, created=False)
        nursery.cancel_scope.cancel()


async def test_a_write_applied_after_its_lease_ran_out_is_not_acknowledged(autojump_clock):
    # Decided under the lease, but its record lands late (a slow broker, a producer
    # stuck past the session timeout): by then the group may have given the partition
    # to another node, which read its catch-up target before the record landed and
    # answers reads from memory without it until its next fetch. The record is still
    # before that node's marker, so it applies here and there; a 200 now would promise
    # a read-your-write that a read at the new owner can break. Not acknowledged: 503
    # "may or may not apply", as for any write whose fate reached us too late.
    lease = {"valid": True}
    async with trio.open_nursery() as nursery:
        log, send, _, st = await start(nursery, lease=lambda: lease["valid"])
        log.gate = trio.Event()  # the produce is in flight ...
        box = await write(send, b"a@x", user("a@x", "late"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(log.records) == 1  # only our marker: the write's produce waits
        lease["valid"] = False  # ... while the lease runs out
        log.gate.set()
        got = await box.wait()
        assert isinstance(got, Unavailable), got
        assert got.reason == "write_unconfirmed"
        # It did land and apply here (in log order): it is not lost, only unconfirmed.
        assert st.get_nowait(0, b"a@x") == (user("a@x", "late"), 1)
        lease["valid"] = True  # renewed: a write applied under it is acknowledged
        got = await (await write(send, b"a@x", user("a@x", "next"))).wait()
        assert got == Written(0, 2, created=False)
        nursery.cancel_scope.cancel()


async def test_a_record_kafka_refuses_as_too_large_is_answered_not_settled(autojump_clock):
    """Kafka refused the record as larger than the topic takes: it was not written, so
    there is nothing to settle (no new epoch); 413 when the record alone is over the
    topic's limit, else (refused with the batch it shared) a 503 that says retry."""
    async with trio.open_nursery() as nursery:
        log, send, _, st = await start(nursery, max_record_bytes=300)
        log.too_large = True
        got = await (await write(send, b"a@x", user("a@x", "x" * 400))).wait()
        assert isinstance(got, TooLarge), got
        assert "300" in got.message
        got = await (await write(send, b"b@x", user("b@x", "small"))).wait()
        assert isinstance(got, Unavailable)
        assert got.reason == "write_refused"
        log.too_large = False
        assert st.own_epoch(0) == EPOCH  # nothing to settle
        assert len(log.records) == 1  # the claim's marker only
        assert await (await write(send, b"a@x", user("a@x", "fits"))).wait() == \
            Written(0, 1, created=True)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("reassigned_first", [False, True])
async def test_one_claim_per_assignment_when_a_claim_outlives_its_assignment(
        autojump_clock, reassigned_first):
    # A claim's Bump reaches the state owner just after a revoke (or after the revoke
    # and the next, sticky, assignment of the same partition). The next assignment
    # starts a claim of its own: the two must not both write the marker, whose key
    # (the epoch) they would compute alike: every marker key is written once.
    async with trio.open_nursery() as nursery:
        state_send, state_recv = trio.open_memory_channel(16)
        st = await nursery.start(partial(state.run, inbox=state_recv, num_partitions=1))
        log = Log(state_send)
        log.append(b"z@x", user("z@x", "foreign"))
        box: ReplyBox[dict] = ReplyBox()
        await state_send.send(Assign(0, frozenset({0}), {0: 1}, box, GEN))
        await box.wait()
        own_send, own_recv = trio.open_memory_channel(16)  # the test passes each on
        writes_send, writes_recv = trio.open_memory_channel(8)
        await nursery.start(partial(writer.run, log.produce, st, inbox=writes_recv,
                                    own=own_send, write_timeout=WRITE_TIMEOUT,
                                    catchup_timeout=1.0))
        await writes_send.send(Claim(frozenset({0})))  # the first assignment's claim
        await trio.testing.wait_all_tasks_blocked()
        await log.deliver()  # replayed: the claim bumps
        bump = await own_recv.receive()
        assert isinstance(bump, Bump)
        assert bump.claim
        revoked: ReplyBox[None] = ReplyBox()
        await state_send.send(Revoke(1, frozenset({0}), revoked))
        await revoked.wait()
        again: ReplyBox[dict] = ReplyBox()
        if reassigned_first:
            await state_send.send(Assign(1, frozenset({0}), {0: 1}, again, GEN + 1))
            await again.wait()
        await state_send.send(bump)
        await trio.testing.wait_all_tasks_blocked()
        if not reassigned_first:
            await state_send.send(Assign(1, frozenset({0}), {0: 1}, again, GEN + 1))
            await again.wait()
        await writes_send.send(Claim(frozenset({0})))  # the second assignment's claim

        claims_asked = 0

        async def forward() -> None:
            nonlocal claims_asked
            async for msg in own_recv:
                claims_asked += isinstance(msg, Bump) and msg.claim
                await state_send.send(msg)

        nursery.start_soon(forward)
        for _ in range(5):
            await trio.testing.wait_all_tasks_blocked()
            if log.delivered < len(log.records):
                await log.deliver()
        await trio.sleep(10)
        markers = [r.key for r in log.records if r.key.startswith(MARKER_PREFIX)]
        assert markers == [marker(0, (GEN + 1) * EPOCH_STRIDE)[0]]
        assert st.is_writable(0)
        got = await (await write(writes_send, b"a@x", user("a@x", "n"))).wait()
        assert isinstance(got, Written)
        # One claim asked for the second assignment: no task lingers, asking again at
        # every change of the partition.
        for i in range(3):
            log.append(f"o{i}@x".encode(), user(f"o{i}@x", "other"))
            await log.deliver()
            await trio.testing.wait_all_tasks_blocked()
        assert claims_asked == 1
        nursery.cancel_scope.cancel()


def fenced_write(log: Log, key: bytes, value: bytes | None, epoch: int) -> int:
    """A zombie owner's record of ``epoch``: it lands after a newer marker."""
    return log.append(key, value, [(EPOCH_HEADER, str(epoch).encode())])


async def wait_repaired(st, key: bytes) -> None:
    with trio.fail_after(30):
        while key in st.shadowed(0):
            await st.wait_changed(0)
    await trio.testing.wait_all_tasks_blocked()  # the repair's writer has counted it


async def test_a_key_shadowed_before_this_node_may_write_is_repaired_once_it_may(
        autojump_clock):
    """A new owner replays a key a zombie's late write shadowed (it landed after the
    previous owner's marker): nothing shadows a key after that, yet once this node's
    claim is applied it restates the key."""
    async with trio.open_nursery() as nursery:
        log, send, wh, st = await start(nursery, claim=False)
        old, new = EPOCH_STRIDE, 2 * EPOCH_STRIDE
        log.append(*marker(0, old))
        log.append(b"a@x", user("a@x", "acked"), [(EPOCH_HEADER, str(old).encode())])
        log.append(*marker(0, new))
        fenced_write(log, b"a@x", user("a@x", "zombie"), old)
        await log.deliver()
        await trio.testing.wait_all_tasks_blocked()
        assert b"a@x" in st.shadowed(0)
        assert not st.is_writable(0)
        await send.send(Claim(frozenset({0})))
        with trio.fail_after(1):
            await st.wait_writable(0)
        await wait_repaired(st, b"a@x")
        repair = log.records[-1]
        assert (repair.key, repair.value) == (b"a@x", user("a@x", "acked"))
        assert dict(repair.headers)[VERSION_HEADER] == b"1"
        assert wh.statistics().repairs == 1
        nursery.cancel_scope.cancel()


async def test_a_key_shadowed_while_this_node_reclaims_is_repaired_after(autojump_clock):
    """The owner is raising its epoch (a produce Kafka did not confirm) when a zombie's
    write of another key is applied: the key is repaired once the new marker is."""
    async with trio.open_nursery() as nursery:
        log, send, wh, st = await start(nursery)
        assert isinstance(await (await write(send, b"a@x", user("a@x", "kept"))).wait(),
                          Written)
        log.fail = True
        box = await write(send, b"b@x", user("b@x", "lost"))
        await trio.sleep(0.1)
        assert not st.is_writable(0)  # the marker of its next epoch is not written yet
        fenced_write(log, b"a@x", user("a@x", "zombie"), EPOCH - 1)
        await log.deliver()
        await trio.testing.wait_all_tasks_blocked()
        assert b"a@x" in st.shadowed(0)
        log.fail = False
        assert isinstance(await box.wait(), Unavailable)
        await wait_repaired(st, b"a@x")
        assert (log.records[-1].key, log.records[-1].value) == (b"a@x", user("a@x", "kept"))
        assert wh.statistics().repairs == 1
        nursery.cancel_scope.cancel()


async def test_a_repair_kafka_did_not_confirm_is_tried_again(autojump_clock):
    async with trio.open_nursery() as nursery:
        log, send, wh, st = await start(nursery)
        assert isinstance(await (await write(send, b"a@x", user("a@x", "kept"))).wait(),
                          Written)
        log.fail = True
        fenced_write(log, b"a@x", user("a@x", "zombie"), EPOCH - 1)
        await log.deliver()
        await trio.sleep(2)  # the repair's produce failed; so do the markers after it
        assert b"a@x" in st.shadowed(0)
        assert wh.statistics().repairs == 0  # none written yet
        log.fail = False
        await wait_repaired(st, b"a@x")
        assert (log.records[-1].key, log.records[-1].value) == (b"a@x", user("a@x", "kept"))
        assert wh.statistics().repairs == 1
        nursery.cancel_scope.cancel()


async def test_a_repair_waits_for_a_write_of_its_key_that_then_fails(autojump_clock):
    """A write holds the key when the key is shadowed; it is then refused unwritten
    (too large): the key is still shadowed and the repair goes in after it."""
    async with trio.open_nursery() as nursery:
        log, send, wh, st = await start(nursery)
        assert isinstance(await (await write(send, b"a@x", user("a@x", "kept"))).wait(),
                          Written)
        log.gate = trio.Event()
        box = await write(send, b"a@x", user("a@x", "x" * 100))
        await trio.testing.wait_all_tasks_blocked()  # it holds the key, in produce
        fenced_write(log, b"a@x", user("a@x", "zombie"), EPOCH - 1)
        await log.deliver()
        await trio.testing.wait_all_tasks_blocked()
        assert b"a@x" in st.shadowed(0)
        log.refuse = 1
        log.gate.set()
        log.gate = None
        assert isinstance(await box.wait(), Unavailable)
        await wait_repaired(st, b"a@x")
        assert (log.records[-1].key, log.records[-1].value) == (b"a@x", user("a@x", "kept"))
        assert wh.statistics().repairs == 1
        nursery.cancel_scope.cancel()
