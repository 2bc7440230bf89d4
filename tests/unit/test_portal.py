"""The crossing between trio and the bridge's asyncio loop (kstate/bridge/portal.py):
results, errors, cancellation, and many calls at once."""

from __future__ import annotations

import asyncio

import pytest
import trio

from kstate.bridge.portal import open_portal


async def test_results_errors_and_many_at_once():
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def fail() -> None:
        raise ValueError("on the loop")

    async with open_portal() as portal:
        assert await portal.call(double, 21) == 42
        with pytest.raises(ValueError, match="on the loop"):
            await portal.call(fail)
        got: list[int] = []

        async def one(i: int) -> None:
            got.append(await portal.call(double, i))

        async with trio.open_nursery() as nursery:
            for i in range(500):
                nursery.start_soon(one, i)
        assert sorted(got) == [2 * i for i in range(500)]


async def test_cancelling_the_trio_side_cancels_the_task():
    flags: dict[str, bool] = {}

    async def forever() -> None:
        flags["started"] = True
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            flags["cancelled"] = True
            raise

    async with open_portal() as portal:
        with trio.move_on_after(0.2):
            await portal.call(forever)
        with trio.fail_after(5):
            while "cancelled" not in flags:
                await trio.sleep(0.01)
    assert flags == {"started": True, "cancelled": True}
