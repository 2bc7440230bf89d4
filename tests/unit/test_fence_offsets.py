"""The fences' end-offset consumer (kstate/bridge/offsets.py) while Kafka does not
answer: a "broker" that accepts connections and never says a word, as in a network cut.

Each fence gives up after its timeout, cancelling its call; before, each one started a
consumer of its own and the cancel left it half started, its connection open and unowned
(a chaos run logged dozens of "Unclosed AIOKafkaConsumer" during one cut)."""

from __future__ import annotations

import contextlib
import functools

import trio

from kstate.bridge.config import KafkaConfig
from kstate.bridge.offsets import EndOffsets
from kstate.bridge.portal import open_portal


async def test_fences_that_give_up_share_one_start_and_stop_closes_it():
    accepted: list[trio.SocketStream] = []
    closed: list[trio.SocketStream] = []

    async def silent(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await stream.receive_some():
                pass  # a request, never answered
        closed.append(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(
            trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        offsets = EndOffsets(KafkaConfig(bootstrap=f"127.0.0.1:{port}"))
        async with open_portal() as portal:
            for _ in range(10):
                with trio.move_on_after(0.2) as scope:
                    await portal.call(offsets.end_offset, 0)
                assert scope.cancelled_caught  # the broker never answers
            assert len(accepted) == 1, f"{len(accepted)} connections for one consumer"
            await portal.call(offsets.stop)
            with trio.fail_after(5):  # the half-started consumer's connection is closed
                while len(closed) < len(accepted):
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
