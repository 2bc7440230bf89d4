"""(trio side) The node's producer, run in a child process (kstate/bridge/producer_process.py).

Why a process: every write crosses from trio to aiokafka and back. In the node's asyncio
thread the two loops shared one interpreter lock, so a write paid for both sides on one
core plus the lock's hand-overs; in a process of its own the producer runs on the second
core, and the node talks to it over a socketpair, many records per system call when
writes are busy (docs/design.md, "The producer process").

The process lives as long as the link: it exits when the node's end closes, whether the
node stopped or died. If it dies first, every write it held fails with BrokerUnavailable
(Kafka may or may not have them, as with a broker that stops answering) and the link
starts a new one; writes in between fail the same way, at once. One that stops
answering the node's pings for PING_TIMEOUT_S (frozen, or its loop stuck) is killed
first, then the same."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import trio

from kstate.bridge import authz
from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import BrokerUnavailable, KafkaNotAuthorized, RecordTooLarge
from kstate.bridge.produce_wire import (
    PROCESS_EXIT_S,
    Headers,
    LogLine,
    Reply,
    ReplyReader,
    Request,
    WireError,
    encode_request,
    encode_sized,
)

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # the process's interpreter start plus the producer's bootstrap
RESTART_DELAY_S = 0.5
# A process that answers no ping for this long is killed and replaced: frozen (SIGSTOP)
# or its loop stuck, it would otherwise hold its writes, and their keys, for ever. A slow
# Kafka does not trip it: pings are answered without Kafka.
PING_EVERY_S = 1.0
PING_TIMEOUT_S = 5.0
PING = -1  # the partition of a ping: no record, answered at once (produce_wire)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # where `kstate` is importable


class _FlushAtTurnEnd(trio.abc.Instrument):
    """Sends what the link queued during one turn of trio's run loop, once, as the turn
    ends (trio calls ``before_io_wait`` after running the turn's tasks, before it waits
    for I/O). A burst of acknowledgements releases many writes in one turn: their
    requests then reach the producer process in one system call and one wake-up of it
    instead of one each (up to ten per turn seen at wrk PUT c10), and a lone write
    leaves as soon as its turn ends, without a trip through the send loop."""

    def __init__(self) -> None:
        self.queued: set[_Process] = set()

    def before_io_wait(self, timeout: float) -> None:
        queued, self.queued = self.queued, set()
        for process in queued:
            try:
                process.flush()
            except Exception:  # never lose the frames: trio would drop this instrument
                process.wake.set()


class _Slot:
    __slots__ = ("done", "error", "offset", "too_large")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.offset = -1
        self.error: str | None = None
        self.too_large = False


class _Process:
    """One producer process and the socket to it."""

    def __init__(self, proc: trio.Process, stream: trio.abc.HalfCloseableStream,
                 raw: socket.socket | None = None,
                 flusher: _FlushAtTurnEnd | None = None) -> None:
        self.proc = proc
        self.stream = stream
        self.raw = raw  # the same socket, non-blocking: for flush
        self.flusher = flusher
        self.pending: dict[int, _Slot] = {}
        self.replies = ReplyReader()  # bytes from the process not parsed yet
        self.out = bytearray()
        self.wake = trio.Event()
        self.sending = False  # the send loop is inside send_all
        self.alive = True
        self.closing = False  # the node said it is done: no more pings
        self.verdict = ""  # why the node killed it, if it did
        # Kafka's authorizer refused a record (authz.PREFIX): the link stops the node
        self.not_authorized = ""
        self.refused = trio.Event()
        self._next_id = 0

    def request(self, partition: int, key: bytes, value: bytes | None,
                headers: Headers) -> tuple[int, _Slot]:
        """Send one request; its slot is filled when the answer comes."""
        self._next_id = self._next_id % 0xFFFF_FFFF + 1  # never 0: the start's reply
        rid = self._next_id
        slot = _Slot()
        self.pending[rid] = slot
        self.send_soon(encode_request(Request(rid, partition, key, value, headers)))
        return rid, slot

    def send_soon(self, frame: bytes) -> None:
        """Queue ``frame``: it leaves with the others queued in this turn of the run
        loop, in one send as the turn ends (:class:`_FlushAtTurnEnd`); the send loop
        takes what the socket would not (or everything, while it is sending)."""
        self.out += frame
        if self.raw is not None and self.flusher is not None and not self.sending:
            self.flusher.queued.add(self)
        else:
            self.wake.set()

    def flush(self) -> None:
        """Send what is queued, as far as the socket takes it without blocking."""
        if not self.out or self.sending or self.raw is None:
            return  # (sending: the send loop takes it after its send)
        try:
            sent = self.raw.send(self.out)
        except OSError:
            sent = 0  # full (BlockingIOError) or broken: the send loop finds out
        del self.out[:sent]
        if self.out:
            self.wake.set()

    async def run(self) -> str:
        """Carry requests and replies until the process's end closes; returns why."""
        why = "its socket closed"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop)
            nursery.start_soon(self._watch)

            async def _refused() -> None:
                await self.refused.wait()
                self.verdict = "Kafka refused a record: not authorized"
                nursery.cancel_scope.cancel()

            nursery.start_soon(_refused)
            try:
                await self._receive_loop()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                    WireError) as exc:
                why = repr(exc)
            nursery.cancel_scope.cancel()
        why = self.verdict or why
        self.alive = False
        for slot in self.pending.values():
            slot.error = f"the producer process ended ({why}); Kafka may or may not have it"
            slot.done.set()
        self.pending.clear()
        return why

    async def _send_loop(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake = trio.Event()
                while self.out:
                    data, self.out = self.out, bytearray()
                    self.sending = True
                    try:
                        await self.stream.send_all(data)
                    finally:
                        self.sending = False
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return  # the process is gone: the receive loop sees its end close

    async def _watch(self) -> None:
        while True:
            await trio.sleep(PING_EVERY_S)
            if self.closing:
                return  # it is sending what it holds and exiting: close() bounds that
            rid, slot = self.request(PING, b"", None, ())
            with trio.move_on_after(PING_TIMEOUT_S):
                await slot.done.wait()
            if not slot.done.is_set():
                # this node may itself have been paused: an answer already in the socket
                # is read in the receive loop's next turn
                await trio.sleep(0.2)
            self.pending.pop(rid, None)
            if not slot.done.is_set() and not self.closing:
                log.warning("event=producer_process_unresponsive pid=%d seconds=%.1f",
                            self.proc.pid, PING_TIMEOUT_S)
                self.verdict = f"no answer to a ping in {PING_TIMEOUT_S:.0f} s: killed"
                self.proc.kill()  # its socket closes: run() ends, the link starts another
                return

    async def _receive_loop(self) -> None:
        replies = self.replies
        while data := await self.stream.receive_some(65536):
            replies.feed(data)
            for r in replies.replies():
                if isinstance(r, LogLine):
                    _log_line(r)
                    continue
                slot = self.pending.pop(r.id, None)
                if slot is None:
                    continue  # its writer was cancelled and went
                if r.offset is None:
                    slot.error = r.error
                    slot.too_large = r.too_large
                    if r.error.startswith(authz.PREFIX):
                        slot.error = r.error.removeprefix(authz.PREFIX)
                        self.not_authorized = slot.error
                        self.refused.set()
                else:
                    slot.offset = r.offset
                slot.done.set()

    async def close(self) -> None:
        """Say we are done (the process sends what it holds, then exits); wait for it."""
        self.closing = True
        self.flush()  # what this turn queued goes before the end
        with trio.CancelScope(shield=True):
            try:
                await self.stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError,
                    OSError):
                pass
            with trio.move_on_after(PROCESS_EXIT_S):
                await self.proc.wait()
            if self.proc.returncode is None:
                log.warning("event=producer_process_killed pid=%d", self.proc.pid)
                self.proc.kill()
                await self.proc.wait()
            await self.stream.aclose()


def _log_line(line: LogLine) -> None:
    """A log line of the process, logged here under its own logger's name (so in the
    node's format)."""
    logging.getLogger(line.logger).log(line.level, "%s", line.message)


async def _started(process: _Process) -> Reply | None:
    """The process's first reply (started, or why not); None if it ended first. Its log
    lines (the producer's bootstrap) are logged; bytes after the reply stay in
    ``process.replies`` for the receive loop."""
    first: Reply | None = None
    while first is None:
        data = await process.stream.receive_some(65536)
        if not data:
            return None
        process.replies.feed(data)
        for r in process.replies.replies():
            if isinstance(r, LogLine):
                _log_line(r)
            elif first is None:
                first = r
    return first


class ProducerLink:
    """The node's producer (trio side): ``run`` in a nursery starts the process and
    keeps one alive; ``produce`` hands it one record."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._process: _Process | None = None
        self._flusher = _FlushAtTurnEnd()
        self._closing = False
        self.starts = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Start the process (errors here propagate: the node cannot write), then keep
        one running until ``close``."""
        trio.lowlevel.add_instrument(self._flusher)
        try:
            await self._keep_running(task_status)
        finally:
            # (KeyError: trio dropped it after a failure; never mask why run ended)
            with contextlib.suppress(KeyError):
                trio.lowlevel.remove_instrument(self._flusher)

    async def _keep_running(self, task_status: trio.TaskStatus[None]) -> None:
        process = await self._start()
        task_status.started()
        while True:
            if self._closing:
                # close() came while this one was starting: it closed the one before
                # (or none), so this one is closed here; run, it would answer pings and
                # keep the node from ever exiting
                if self._process is process:
                    self._process = None
                await process.close()
                return
            why = await process.run()
            if self._closing:
                return
            if process.not_authorized:
                # the topic's Write revoked: no new process can write either
                await process.close()
                raise KafkaNotAuthorized(process.not_authorized)
            await process.close()
            log.warning("event=producer_process_ended pid=%d rc=%s why=%r",
                        process.proc.pid, process.proc.returncode, why)
            while True:
                await trio.sleep(RESTART_DELAY_S)
                if self._closing:
                    return
                try:
                    process = await self._start()
                    break
                except BrokerUnavailable as exc:
                    log.warning("event=producer_process_start_failed error=%r", str(exc))

    async def _start(self) -> _Process:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "kstate.bridge.producer_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        process = _Process(proc, trio.SocketStream(trio.socket.from_stdlib_socket(ours)), ours,
                           self._flusher)
        failed = "no answer in time"
        with trio.move_on_after(START_TIMEOUT_S):
            try:
                await process.stream.send_all(encode_sized(pickle.dumps(self._config)))
                started = await _started(process)
                if started is not None and started.offset is not None:
                    self._process = process
                    self.starts += 1
                    log.info("event=producer_process_started pid=%d", proc.pid)
                    return process
                failed = "it exited" if started is None else started.error
            except (trio.BrokenResourceError, OSError) as exc:
                failed = repr(exc)
        await process.close()
        if failed.startswith(authz.PREFIX):
            raise KafkaNotAuthorized(failed.removeprefix(authz.PREFIX))
        raise BrokerUnavailable(f"the producer process did not start: {failed}")

    async def produce(self, partition: int, key: bytes, value: bytes | None,
                      headers: Headers) -> int:
        """Produce one record (acks=all, idempotent); its offset once acknowledged.
        Raises BrokerUnavailable if Kafka or the process did not confirm it;
        RecordTooLarge (one) if Kafka refused it as too large: it was not written."""
        process = self._process
        if process is None or not process.alive:
            raise BrokerUnavailable("the producer process is restarting")
        rid, slot = process.request(partition, key, value, headers)
        try:
            await slot.done.wait()
        finally:
            process.pending.pop(rid, None)  # cancelled: its answer, when it comes, is dropped
        if slot.error is not None:
            raise (RecordTooLarge if slot.too_large else BrokerUnavailable)(slot.error)
        return slot.offset

    async def close(self) -> None:
        """Stop the process: it sends what it holds, then exits (bounded). One being
        started meanwhile is stopped by run() as its start ends."""
        self._closing = True
        process, self._process = self._process, None
        if process is not None:
            await process.close()
