"""The node's side of its producer process (kstate/bridge/producer_link.py): when the
process dies, the write being sent to it may fail before the end of its socket is read;
that must end the link's session and fail its writes, never escape into the node."""

from __future__ import annotations

import trio

from kstate.bridge.producer_link import _Process, _Slot


class _DeadPeer(trio.abc.HalfCloseableStream):
    """A socket whose process died: sending breaks at once, its end is read a bit later."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError("[Errno 32] Broken pipe")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep(0.2)
        return b""

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_a_send_to_a_dead_process_fails_its_writes_and_ends_the_session() -> None:
    process = _Process(None, _DeadPeer())  # type: ignore[arg-type]
    slot = _Slot()
    process.pending[1] = slot
    process.out += b"a request"
    process.wake.set()
    with trio.fail_after(5):
        why = await process.run()  # a broken send used to escape from here
    assert why == "its socket closed"
    assert slot.done.is_set()
    assert slot.error is not None
    assert "may or may not" in slot.error
    assert not process.alive
    assert not process.pending
