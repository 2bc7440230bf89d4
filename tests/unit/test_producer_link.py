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

from kstate.bridge import producer_link
from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import BrokerUnavailable
from kstate.bridge.produce_wire import Reply, RequestReader, encode_reply
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


class _FakeProc:
    """A producer process's handle: alive until killed or its node's end closes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = trio.Event()
        self.peer: _LivePeer | None = None  # its socket: closes when it ends

    def end(self, rc: int) -> None:
        if self.returncode is None:
            self.returncode = rc
        self._ended.set()
        if self.peer is not None:
            self.peer.more.set()

    def kill(self) -> None:
        self.end(-9)

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode


class _LivePeer(trio.abc.HalfCloseableStream):
    """A live producer process's socket: answers every ping (so the link never kills
    it) until the node's end says it is done (EOF) or the process dies."""

    def __init__(self, proc: _FakeProc) -> None:
        self.proc = proc
        proc.peer = self
        self.requests = RequestReader()
        self.answers = bytearray()
        self.more = trio.Event()
        self.eof = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.proc.returncode is not None:
            raise trio.BrokenResourceError("[Errno 32] Broken pipe")
        self.requests.feed(bytes(data))
        for r in self.requests.requests():
            self.answers += encode_reply(Reply(r.id, 0))
        self.more.set()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self.answers and not self.eof and self.proc.returncode is None:
            await self.more.wait()
            self.more = trio.Event()
        data, self.answers = bytes(self.answers), bytearray()
        return data

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        self.eof = True
        self.proc.end(0)  # it sends what it holds, then exits

    async def aclose(self) -> None:
        await self.send_eof()


async def test_close_during_a_restart_ends_the_process_being_started(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The process dies; while the link starts the next one, the node stops (close). The
    # one being started must be closed too: it used to be run (answering pings) for ever,
    # and the node never exited.
    monkeypatch.setattr(producer_link, "RESTART_DELAY_S", 0.01)
    link = ProducerLink(KafkaConfig(bootstrap="127.0.0.1:1", topic="t"))
    peers: list[_LivePeer] = []
    second_starting = trio.Event()
    release_second = trio.Event()

    async def fake_start() -> _Process:
        proc = _FakeProc(len(peers) + 1)
        peer = _LivePeer(proc)
        peers.append(peer)
        if len(peers) == 2:
            second_starting.set()
            await release_second.wait()  # the interpreter starts, the producer bootstraps
        process = _Process(proc, peer)  # type: ignore[arg-type]
        link._process = process
        return process

    monkeypatch.setattr(link, "_start", fake_start)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            peers[0].proc.kill()  # kill -9 of the producer process
            await second_starting.wait()
            await link.close()  # SIGTERM while the next one starts
            release_second.set()
    assert len(peers) == 2
    assert peers[1].eof  # told to finish: it exits
    assert peers[1].proc.returncode is not None
    assert link._process is None
