"""The node's side of its producer process (kstate/bridge/producer_link.py): when the
process dies, the write being sent to it may fail before the end of its socket is read;
that must end the link's session and fail its writes, never escape into the node. The
process's log lines reach the node's log (so its format), not plain stderr. And the
requests one turn of the run loop releases leave in one send as the turn ends."""

from __future__ import annotations

import logging
import socket

import pytest
import trio

from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import BrokerUnavailable
from kstate.bridge.producer_link import ProducerLink, _FlushAtTurnEnd, _Process, _Slot


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


async def test_the_process_logs_through_the_node(caplog: pytest.LogCaptureFixture) -> None:
    # A port that refuses connections: the process's producer logs its failed bootstrap
    # (aiokafka's own ERROR line), then the process says it did not start.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        link = ProducerLink(KafkaConfig(bootstrap=f"127.0.0.1:{port}", topic="t"))
        caplog.set_level(logging.WARNING)
        with trio.fail_after(60), pytest.raises(BrokerUnavailable, match="did not start"):
            await link._start()
    lines = [r for r in caplog.records if r.name.startswith("aiokafka")]
    assert lines, caplog.records
    assert lines[0].levelno == logging.ERROR
    assert f"127.0.0.1:{port}" in lines[0].getMessage()


class _CountingSocket:
    """A socket's non-blocking ``send``: records each call; takes ``room`` bytes at most."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.sends: list[bytes] = []
        self.room = room

    def send(self, data: bytes | bytearray) -> int:
        taken = bytes(data[:self.room])
        self.sends.append(taken)
        return len(taken)


async def test_requests_of_one_turn_leave_in_one_send_as_the_turn_ends() -> None:
    raw = _CountingSocket()
    flusher = _FlushAtTurnEnd()
    process = _Process(None, _DeadPeer(), raw, flusher)  # type: ignore[arg-type]
    trio.lowlevel.add_instrument(flusher)
    try:
        for i in range(5):  # five writes released in one turn (no yield between)
            process.request(i, b"k%d" % i, b"v", ())
        assert raw.sends == []  # not one system call each
        await trio.lowlevel.checkpoint()  # the turn ends
        assert len(raw.sends) == 1
        assert raw.sends[0].count(b"k") == 5  # all five, in one send
        assert not process.out
        assert not process.wake.is_set()  # the send loop had nothing to do
        process.request(9, b"alone", b"v", ())  # a lone write: its own turn's send
        await trio.lowlevel.checkpoint()
        assert len(raw.sends) == 2
        assert b"alone" in raw.sends[1]
    finally:
        trio.lowlevel.remove_instrument(flusher)


async def test_what_the_socket_does_not_take_is_left_to_the_send_loop() -> None:
    raw = _CountingSocket(room=10)
    flusher = _FlushAtTurnEnd()
    process = _Process(None, _DeadPeer(), raw, flusher)  # type: ignore[arg-type]
    trio.lowlevel.add_instrument(flusher)
    try:
        process.request(1, b"key", b"a value longer than ten bytes", ())
        await trio.lowlevel.checkpoint()
        assert len(raw.sends) == 1
        assert len(raw.sends[0]) == 10
        assert process.out  # the rest, in order, for the send loop (woken)
        assert process.wake.is_set()
    finally:
        trio.lowlevel.remove_instrument(flusher)
