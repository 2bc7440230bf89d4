"""The state owner's rules, driven through its inbox (trio channels, no Kafka)."""

from __future__ import annotations

import time
from functools import partial

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from actors import state
from actors.replies import ReplyBox
from kstate.core import partition as partition_mod
from kstate.core.messages import Assign, Batch, Record, Revoke, Targets
from kstate.core.records import marker
from kstate.core.table import NotServing, StateTable
from kstate.core.users import validate_record


def user(email: str, name: str = "N") -> bytes:
    return f'{{"name":"{name}","email":"{email}"}}'.encode()


async def assign(send, epoch: int, parts: set[int], ends: dict[int, int]) -> dict:
    box: ReplyBox[dict] = ReplyBox()
    await send.send(Assign(epoch, frozenset(parts), ends, box))
    return await box.wait()


async def revoke(send, epoch: int, parts: set[int]) -> None:
    box: ReplyBox[None] = ReplyBox()
    await send.send(Revoke(epoch, frozenset(parts), box))
    await box.wait()


async def test_gate_opens_only_at_the_target_position():
    send, recv = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(state.run, inbox=recv, num_partitions=1))
        async with send:
            assert await assign(send, 0, {0, 1}, {0: 3, 1: 0}) == {0: None, 1: None}
            assert handle.is_caught_up(1)  # empty partition: caught up at once
            assert not handle.is_caught_up(0)
            with pytest.raises(NotServing):
                await handle.wait_caught_up(5)
            await send.send(Batch(0, {0: [Record(0, b"a@x", user("a@x")),
                                         Record(1, b"b@x", user("b@x"))]}, {0: 2}))
            await trio.testing.wait_all_tasks_blocked()
            assert not handle.is_caught_up(0)
            # Offset 2 was compacted away: only the consumer's position says we are there.
            await send.send(Batch(0, {}, {0: 3}))
            with trio.fail_after(1):
                await handle.wait_caught_up(0)
            assert handle.get_nowait(0, b"a@x") == (user("a@x"), 0)
    # inbox closed -> run() returned, nursery exits


async def test_a_partition_without_a_target_waits_for_its_own():
    # An assignment Kafka could not give every end offset for (a partition without a
    # leader): that partition's gate stays shut, even at position 0 (an empty
    # target would have opened it: a 404 for every key), until its Targets comes;
    # the others open as usual. A Targets of an assignment a revoke ended is dropped.
    send, recv = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(state.run, inbox=recv, num_partitions=2))
        async with send:
            await assign(send, 1, {0, 1}, {1: 0})
            assert handle.is_caught_up(1)
            assert not handle.is_caught_up(0)
            assert handle.statistics()[0].target == -1
            await send.send(Batch(1, {0: [Record(0, b"a@x", user("a@x"))]}, {0: 1}))
            await trio.testing.wait_all_tasks_blocked()
            assert not handle.is_caught_up(0)  # records applied, still no target
            box: ReplyBox[None] = ReplyBox()
            await send.send(Targets(0, {0: 1}, box))  # an older assignment's: dropped
            await box.wait()
            assert not handle.is_caught_up(0)
            box = ReplyBox()
            await send.send(Targets(1, {0: 2}, box))
            await box.wait()
            assert not handle.is_caught_up(0)  # replayed to 1 of 2
            await send.send(Batch(1, {0: [Record(1, b"b@x", user("b@x"))]}, {0: 2}))
            with trio.fail_after(1):
                await handle.wait_caught_up(0)
            box = ReplyBox()
            await send.send(Targets(1, {0: 9}, box))  # read once: a later one changes nothing
            await box.wait()
            assert handle.is_caught_up(0)
            await revoke(send, 2, {0, 1})
            await assign(send, 2, {0}, {})
            box = ReplyBox()
            await send.send(Targets(1, {0: 2}, box))  # the revoked assignment's
            await box.wait()
            assert not handle.is_caught_up(0)


async def test_tombstone_deletes_and_invalid_records_are_counted_not_raised():
    table = StateTable(1)
    box: ReplyBox[dict] = ReplyBox()
    table.assign(Assign(0, frozenset({0}), {0: 0}, box))
    table.apply(Batch(0, {0: [
        Record(0, b"a@x", user("a@x")),
        Record(1, b"b@x", b"not json"),
        Record(2, b"c@x", b"[1,2]"),
        Record(3, b"d@x", user("other@x")),
        Record(4, None, user("e@x")),
        Record(5, b"f@x", b'{"name": 1, "email": "f@x"}'),
        Record(6, b"a@x", None),
    ]}, {0: 7}))
    assert table.get(0, b"a@x") is None
    assert table.partitions[0].invalid == 5
    assert table.partitions[0].position == 7


async def test_stale_epoch_batches_and_duplicates_are_ignored():
    table = StateTable(1)
    table.assign(Assign(1, frozenset({0}), {0: 0}, ReplyBox()))
    table.apply(Batch(1, {0: [Record(0, b"a@x", user("a@x", "one"))]}, {0: 1}))
    table.apply(Batch(0, {0: [Record(1, b"a@x", user("a@x", "stale"))]}, {0: 2}))
    assert table.stale_batches == 1
    assert table.get(0, b"a@x") == (user("a@x", "one"), 0)
    # re-fetched after a seek: below the position, skipped
    table.apply(Batch(1, {0: [Record(0, b"a@x", user("a@x", "again"))]}, {0: 1}))
    assert table.get(0, b"a@x") == (user("a@x", "one"), 0)


async def test_revoke_stops_serving_and_reassign_keeps_or_rebuilds():
    send, recv = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(state.run, inbox=recv, num_partitions=1))
        async with send:
            await assign(send, 0, {0, 1}, {0: 0, 1: 0})
            await send.send(Batch(0, {0: [Record(0, b"a@x", user("a@x"))]}, {0: 1, 1: 0}))
            waiter_error: list[BaseException] = []

            async def wait_applied() -> None:
                try:
                    await handle.wait_applied(0, 5)
                except NotServing as exc:
                    waiter_error.append(exc)

            nursery.start_soon(wait_applied)
            await trio.testing.wait_all_tasks_blocked()
            await revoke(send, 1, {0, 1})
            await trio.testing.wait_all_tasks_blocked()
            assert waiter_error, "a write waiting on a revoked partition must be released"
            assert not handle.is_serving(0)
            assert handle.held() == frozenset({0, 1})  # kept until the next assignment
            seeks = await assign(send, 1, {0, 2}, {0: 1, 2: 0})
            assert seeks == {0: 1, 2: None}  # keep 0 at our position, rebuild 2
            assert handle.held() == frozenset({0, 2})
            assert handle.is_caught_up(0)
            assert handle.get_nowait(0, b"a@x") is not None


def test_validate_record():
    assert validate_record(b"a@x", user("a@x")) is None
    assert validate_record(b"a@x", user("b@x")) == "key does not match email"
    assert validate_record(b"a@x", b"{") == "value is not JSON"


# -- what is stored is what is answered, byte for byte --------------------------------

@pytest.mark.parametrize("value", [
    b'{"name":"N","email":"a@x"}',  # kstate's own shape: the email tail is elided
    b'{"email":"a@x","name":"N"}',  # email first: stored as it is
    b'{"name": "N", "email": "a@x"}',  # spaces
    b'{"name":"N","email":"b@x"}',  # another key's tail
    b',"email":"a@x"}',  # nothing before the tail
    b'{"name":"\\u00e9","email":"a@x"}',
])
def test_values_read_back_exactly_as_stored(value):
    packed = partition_mod.pack(b"a@x", 42, value)
    assert partition_mod.unpack(b"a@x", packed) == (value, 42)


def test_the_email_tail_is_not_stored_twice():
    value = user("someone.long@example.com", "Name")
    packed = partition_mod.pack(b"someone.long@example.com", 7, value)
    assert len(packed) == 8 + len(value) - len(b',"email":"someone.long@example.com"}')


@given(key=st.binary(min_size=1, max_size=40), name=st.binary(max_size=40),
       offset=st.integers(min_value=0, max_value=2**62), tailed=st.booleans())
def test_pack_round_trips_any_bytes(key, name, offset, tailed):
    value = name + (b',"email":"' + key + b'"}' if tailed else b"")
    assert partition_mod.unpack(key, partition_mod.pack(key, offset, value)) == (value, offset)


def test_own_records_apply_in_offset_order_whatever_order_they_come_back_in():
    # Two writes to one partition are acknowledged together; their writers hand the
    # records to the state owner in any order. The later one waits (kept) until the
    # earlier one is applied, then both are, without a fetch.
    table = StateTable(1)
    table.assign(Assign(0, frozenset({0}), {0: 0}, ReplyBox()))
    first, second = Record(0, b"a@x", user("a@x", "1")), Record(1, b"a@x", user("a@x", "2"))
    assert not table.apply_own(0, [second])
    assert table.get(0, b"a@x") is None
    assert table.apply_own(0, [first])
    assert table.get(0, b"a@x") == (user("a@x", "2"), 1)
    assert table.partitions[0].position == 2
    assert table.partitions[0].own_ahead == {}
    # A foreign record in between: ours is kept until the fetch brings the gap, and
    # the fetch of both drops the kept copy (applied once).
    third = Record(3, b"a@x", user("a@x", "3"))
    assert not table.apply_own(0, [third])
    table.apply(Batch(0, {0: [Record(2, b"b@x", user("b@x"))]}, {0: 3}))
    assert table.get(0, b"a@x") == (user("a@x", "3"), 3)
    table.apply(Batch(0, {0: [third]}, {0: 4}))
    assert table.partitions[0].position == 4
    assert table.partitions[0].own_ahead == {}


def test_a_held_claim_keeps_reads_closed_until_the_own_marker_is_applied():
    # A static member's process that may be replacing a live incarnation of itself:
    # no claim before claim_after, no read before its own marker is applied.
    table = StateTable(1, quiet=True)
    box: ReplyBox[dict] = ReplyBox()
    table.assign(Assign(0, frozenset({0}), {0: 1}, box, generation=3,
                        claim_after=time.monotonic() + 600))
    table.apply(Batch(0, {0: [Record(0, b"a@x", user("a@x"))]}, {0: 1}))
    part = table.partitions[0]
    assert part.replayed_to_target
    assert not part.caught_up  # replayed, but the read gate waits for the marker
    assert table.bump(0, claim=True) is None  # held: the old lease may still hold
    part.claim_after = time.monotonic() - 1  # the hold is over
    epoch = table.bump(0, claim=True)
    assert epoch is not None
    assert not part.caught_up  # claimed, marker not applied yet
    key, value, headers = marker(0, epoch)
    assert table.apply_own(0, [Record(1, key, value, headers)])
    assert part.caught_up
    assert part.writable
    # a later assignment while the hold is over keeps the gate open (nothing pending)
    table.assign(Assign(0, frozenset({0}), {0: 2}, box, generation=4))
    assert part.caught_up


def test_an_unheld_assignment_reads_once_replayed():
    table = StateTable(1, quiet=True)
    box: ReplyBox[dict] = ReplyBox()
    table.assign(Assign(0, frozenset({0}), {0: 0}, box, generation=1))
    assert table.partitions[0].caught_up
    assert table.bump(0, claim=True) is not None


def test_an_assignment_older_than_the_last_revoke_is_refused():
    # The shutdown revoke carries the last epoch; an assignment the bridge sent before
    # the node began leaving, applied after it, must not serve the partition again.
    table = StateTable(1)
    table.assign(Assign(1, frozenset({0}), {0: 0}, ReplyBox(), generation=3))
    table.apply(Batch(1, {}, {0: 0}))
    assert table.partitions[0].live
    table.revoke(Revoke(1 << 62, frozenset({0}), ReplyBox()))
    assert not table.partitions[0].live
    assert table.assign(Assign(2, frozenset({0}), {0: 0}, ReplyBox(), generation=4)) \
        == ({}, set())
    assert not table.partitions[0].serving
    assert table.partitions[0].generation == 3
    assert table.epoch == 1 << 62  # its batches stay stale
    assert table.held_snapshot == frozenset({0})
    # nor does a revoke of an older epoch reopen the door
    table.revoke(Revoke(2, frozenset({0}), ReplyBox()))
    assert table.assign(Assign(2, frozenset({0}), {0: 0}, ReplyBox(), generation=4)) \
        == ({}, set())
    assert not table.partitions[0].serving
