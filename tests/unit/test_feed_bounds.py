"""actors/feed_outbox.py and actors/feed_limits.py without Kafka or sockets: the outbox
keeps order and raises Stalled once its queue has had no room for the timeout; the
admission counts slots and gives them back exactly once."""

from __future__ import annotations

import pytest
import trio

from actors.feed_limits import FULL, RESUMED_FULL, Admission, FeedLimits
from actors.feed_outbox import Stalled, open_outbox


async def test_the_outbox_sends_in_order(autojump_clock):
    got: list[str] = []

    async def send(text: str) -> None:
        await trio.sleep(0.01)  # a slow but reading client
        got.append(text)

    async with open_outbox(send, stall_timeout=1.0, size=4) as put:
        for i in range(50):
            await put(str(i))
        while len(got) < 50:
            await trio.sleep(0.1)
    assert got == [str(i) for i in range(50)]


async def test_a_client_that_takes_nothing_stalls_the_put(autojump_clock):
    started = trio.current_time()
    sent: list[str] = []

    async def never(text: str) -> None:
        sent.append(text)
        await trio.sleep_forever()

    async with open_outbox(never, stall_timeout=2.0, size=3) as put:
        for i in range(4):  # the pump takes one, three fit the queue
            await put(str(i))
        with pytest.raises(Stalled):
            await put("4")
        # one taken by the pump, three queued, then 2 s without room
        assert sent == ["0"]
        assert trio.current_time() - started == pytest.approx(2.0)
    assert trio.current_time() - started == pytest.approx(2.0)  # the exit does not wait


async def test_an_error_in_the_outbox_body_is_raised_not_swallowed():
    """A subscription's own error (a defect, a reader's error nothing caught) must reach
    the route, which logs it. The outbox closed its queue with a checkpoint inside its
    cancelled nursery, and the Cancelled that raised took the error's place and was
    absorbed by the nursery: the subscription ended as a normal close, nothing logged."""
    async def send(text: str) -> None:
        await trio.sleep_forever()

    async def subscription() -> None:
        async with open_outbox(send, stall_timeout=1.0) as put:
            await put("hello")
            raise ValueError("a defect")

    with pytest.raises(ExceptionGroup) as raised:
        await subscription()
    assert raised.group_contains(ValueError, match="a defect")


def test_admission_bounds_and_gives_back_once():
    limits = FeedLimits(max_subscribers=3, max_resumed=1)
    first = limits.admit(resumed=True)
    assert isinstance(first, Admission)
    assert limits.admit(resumed=True) == RESUMED_FULL
    live = limits.admit(resumed=False)
    assert isinstance(live, Admission)
    first.reader_closed()
    first.reader_closed()
    assert (limits.subscribers, limits.resumed) == (2, 0)
    again = limits.admit(resumed=True)
    assert isinstance(again, Admission)
    assert limits.admit(resumed=False) == FULL
    for a in (first, live, again):
        with a:
            pass
        a.close()
    st = limits.statistics()
    assert (st.subscribers, st.resumed, st.refused) == (0, 0, 2)
