"""kstate/bridge/stopping.py: a client whose stop raises (an error, or a cancellation
of its own making, as aiokafka's consumer does while Kafka is unreachable) is logged,
not raised; a cancellation of the caller's own task still goes through."""

from __future__ import annotations

import asyncio

import pytest

from kstate.bridge.stopping import stop_client


class _CancelsItsOwnTask:
    """Stops like aiokafka's consumer with a fetch task still pending."""

    async def stop(self) -> None:
        pending = asyncio.create_task(asyncio.sleep(60))
        await asyncio.sleep(0)
        pending.cancel()
        await pending  # raises CancelledError in the caller


class _Fails:
    async def stop(self) -> None:
        raise OSError("connection reset")


class _Slow:
    async def stop(self) -> None:
        await asyncio.sleep(60)


@pytest.mark.parametrize("client", [_CancelsItsOwnTask(), _Fails()])
def test_a_failed_stop_is_logged_not_raised(client, caplog: pytest.LogCaptureFixture):
    asyncio.run(stop_client(client, "consumer"))
    assert "event=kafka_stop_failed client=consumer" in caplog.text


def test_cancelling_the_caller_still_cancels_it():
    async def main() -> None:
        task = asyncio.create_task(stop_client(_Slow(), "consumer"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
