"""Pipelined GETs to a peer: one kept connection per peer ("link") carries many GETs
at once, in order (HTTP/1.1 pipelining, RFC 9112 §9.3.2), answers parsed by llhttp.

Why: a GET sent on a connection of its own costs each side a write, a read and a
wait for readiness per request. On a link, the GETs that pile up while the peer
answers go out in one write and come back in one read, and the lean front on the
other side (web/http1/connection.py) reads them together and answers them in one
write too. Measured on the 2-core machine (two pairs of nodes side by side, wrk GET
-c10 through the node that does not own the keys): CPU per forwarded GET 224-242 us on
the forwarding node and 146-158 us on the owner on the pool, 145-164 and 76-90 us on a
link (docs/design.md, "Pipelined forwarded GETs").

The rules, so that a link never makes a GET less certain than the pool
(web/http1/client.py) it sits on, and slower only by a bounded wait:

- Only GETs: they change nothing, so a GET may be sent a second time, on its own.
- A GET joins a link only when the link is connected, has fewer than
  ``max_in_flight`` GETs waiting and its oldest has waited less than ``stall_after``;
  otherwise it goes through the pool. A link is opened by the first GET to a peer
  (which itself takes the pool) and lives in :meth:`Pipeline.run`'s nursery.
- Head-of-line blocking is bounded: once the oldest GET on a link has waited
  ``stall_after`` (checked every ``stall_after / 2``, at most 50 ms), the GETs behind
  it leave the line and are sent through the pool (their answers on the link, when
  they come, are read and dropped). The oldest waits for its own answer: it is the
  slow one (an owner's catch-up gate, say), and leaving would not help.
- A link that fails (closed or reset by the peer, a malformed or unasked-for answer,
  ``Connection: close``) is dropped; the GETs still on it are sent through the pool
  within what is left of their deadline. When the oldest GET's deadline passes the
  link is dropped too (the peer is stuck) and that GET is :class:`NoAnswer`.
- A link idle for ``max_idle_age`` is closed before use (a peer's keep-alive timer
  could be closing it just as a GET goes out).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import trio

from web.http1.client import Answer, NoAnswer, Pool, Stream
from web.http1.request_bytes import Headers, encode_request

log = logging.getLogger(__name__)

_READ_SIZE = 65_536
# Why a link ended, when that is no fault.
PEER_CLOSED, IDLE, STOPPED = "closed by the peer", "idle", "stopped"


@dataclass(frozen=True, slots=True)
class PipelineStatistics:
    opened: int  # links opened
    pipelined: int  # GETs answered on a link
    went_around: int  # GETs that left a link (stalled or failed) for the pool
    failed: int  # links dropped for an error (not an idle close)


class _Unasked(Exception):
    """An answer came that no GET on the link is waiting for."""


class _Slot:
    """One GET on a link: its answer, or why it has none."""

    __slots__ = ("answer", "deadline", "failed", "left", "parked", "sent_at", "task",
                 "timed_out")

    def __init__(self, sent_at: float, deadline: float) -> None:
        self.sent_at = sent_at
        self.deadline = deadline
        self.answer: Answer | None = None
        self.failed = False  # no answer will come on the link: the GET goes around
        self.timed_out = False  # the oldest GET, past its deadline
        self.left = False  # the GET left the line: drop its answer
        self.parked = False
        self.task = trio.lowlevel.current_task()

    def wake(self) -> None:
        if self.parked:
            self.parked = False
            trio.lowlevel.reschedule(self.task)

    async def wait(self) -> None:
        """Until answered or failed (or cancelled by the caller's scope). No cancel
        scope of its own: one per GET cost ~15 us, 10% of a forwarded GET; the link's
        watchdog wakes a GET that must go around."""
        if self.answer is not None or self.failed:
            return
        self.parked = True

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.parked = False
            return trio.lowlevel.Abort.SUCCEEDED
        await trio.lowlevel.wait_task_rescheduled(abort)


class _Link:
    """One pipelined connection: a sender task writes what GETs queued since its last
    write in one write; the reader feeds answers to the GETs in order."""

    __slots__ = ("body", "closed", "connected", "headers", "idle_since", "keep",
                 "max_answer", "out", "parser", "scope", "sender", "size", "status", "target",
                 "waiting", "why")

    def __init__(self, target: str, max_answer: int) -> None:
        self.target = target
        self.max_answer = max_answer
        self.why = ""
        self.waiting: collections.deque[_Slot] = collections.deque()
        self.out: list[bytes] = []
        self.sender: Any = None  # the sender task while it waits for bytes to send
        self.connected = self.closed = False
        self.keep = True
        self.scope = trio.CancelScope()
        self.idle_since = trio.current_time()
        self.parser = httptools.HttpResponseParser(self)
        self.status = self.size = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    # -- llhttp callbacks ---------------------------------------------------------
    def on_message_begin(self) -> None:
        self.headers, self.body, self.size = [], [], 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_answer:
            raise ValueError(f"answer larger than {self.max_answer} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            return
        if not self.waiting:
            raise _Unasked()
        slot = self.waiting.popleft()
        if not self.parser.should_keep_alive():
            self.keep = False  # the peer closes after this answer: the link ends
        if not self.waiting:
            self.idle_since = trio.current_time()
        if not slot.left:
            slot.answer = Answer(self.status, self.headers, b"".join(self.body))
            slot.wake()

    # -- use ------------------------------------------------------------------------
    def push(self, data: bytes, now: float, deadline: float) -> _Slot:
        slot = _Slot(now, deadline)
        self.waiting.append(slot)
        self.out.append(data)
        if self.sender is not None:
            task, self.sender = self.sender, None
            trio.lowlevel.reschedule(task)
        return slot

    def end(self, why: str) -> None:
        """End the link (the first ``why`` is kept); every GET still on it is woken
        without an answer."""
        if not self.closed:
            self.closed, self.why = True, why
        self.scope.cancel()
        while self.waiting:
            slot = self.waiting.popleft()
            slot.failed = True
            slot.wake()

    async def run(self, stream: Stream, stall_after: float) -> None:
        """Send, read and watch until the link ends."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send, stream)
            nursery.start_soon(self._watch, stall_after)
            await self._receive(stream)
            nursery.cancel_scope.cancel()

    async def _watch(self, stall_after: float) -> None:
        """Every ``tick``: when the oldest GET has waited ``stall_after``, the GETs
        behind it leave the line (they go around; one past its deadline too); when the
        oldest is past its deadline, the link ends (the peer is stuck) and it is
        NoAnswer."""
        tick = min(stall_after / 2, 0.05)
        while True:
            await trio.sleep(tick)
            if not self.waiting:
                continue
            now = trio.current_time()
            oldest = self.waiting[0]
            if now >= oldest.deadline:
                oldest.timed_out = True
                self.end("no answer within a deadline")
                return
            stalled = now - oldest.sent_at > stall_after
            for slot in self.waiting:
                if slot is not oldest and not slot.left and (stalled or now >= slot.deadline):
                    slot.left = slot.failed = True
                    slot.wake()

    async def _send(self, stream: Stream) -> None:
        try:
            while True:
                if not self.out:
                    self.sender = trio.lowlevel.current_task()

                    def abort(_: Any) -> trio.lowlevel.Abort:
                        self.sender = None
                        return trio.lowlevel.Abort.SUCCEEDED
                    await trio.lowlevel.wait_task_rescheduled(abort)
                    continue
                data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
                self.out.clear()
                await stream.send_all(data)
        except Exception as exc:  # a broken stream: the link ends, its GETs go around
            self.end(f"send failed: {exc!r}")

    async def _receive(self, stream: Stream) -> None:
        try:
            while self.keep:
                chunk = await stream.receive_some(_READ_SIZE)
                if not chunk:
                    self.end(PEER_CLOSED)
                    return
                self.parser.feed_data(chunk)
            self.end(PEER_CLOSED)  # it said Connection: close
        except Exception as exc:  # broken stream, malformed or unasked-for answer
            self.end(f"receive failed: {exc!r}")


class Pipeline:
    """GETs over one pipelined link per peer, the ``pool`` for everything the rules in
    the module's docstring send around a link; links connect as the pool does. Links
    live in :meth:`run`'s nursery; until it runs, every GET takes the pool."""

    def __init__(self, pool: Pool, *, stall_after: float = 0.1,
                 max_in_flight: int = 64, max_idle_age: float = 30.0,
                 max_answer_bytes: int = 16 * 1024 * 1024) -> None:
        self._pool = pool
        self._stall_after = stall_after
        self._max_in_flight = max_in_flight
        self._max_idle_age = max_idle_age
        self._max_answer = max_answer_bytes
        self._links: dict[str, _Link] = {}
        self._nursery: trio.Nursery | None = None
        self._opened = self._pipelined = self._went_around = self._failed = 0

    def statistics(self) -> PipelineStatistics:
        return PipelineStatistics(self._opened, self._pipelined, self._went_around,
                                  self._failed)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for link in list(self._links.values()):
                link.end(STOPPED)

    async def get(self, target: str, path: bytes, headers: Headers = (), *,
                  deadline_after: float, on_send: Callable[[], object] | None = None
                  ) -> Answer:
        """GET ``path`` from ``target`` within ``deadline_after`` seconds: on the
        target's link when the rules allow, else through the pool. Raises as
        :meth:`Pool.request` does; ``on_send`` as there (on a link: once the GET is
        queued for the link's next write)."""
        now = trio.current_time()
        link = self._link(target, now)
        if link is None:
            return await self._pool.request(target, b"GET", path, headers,
                                            deadline_after=deadline_after, on_send=on_send)
        data = encode_request(target.encode("ascii"), b"GET", path, headers, b"")
        deadline = now + deadline_after
        slot = link.push(data, now, deadline)
        if on_send is not None:
            on_send()
        try:
            await slot.wait()
        finally:
            slot.left = slot.answer is None
        if slot.answer is not None:
            self._pipelined += 1
            return slot.answer
        if slot.timed_out:
            raise NoAnswer(target, f"no complete answer within {deadline_after}s")
        self._went_around += 1
        left = deadline - trio.current_time()
        if left <= 0:
            raise NoAnswer(target, f"no complete answer within {deadline_after}s")
        return await self._pool.request(target, b"GET", path, headers, deadline_after=left,
                                        on_send=on_send)

    def _link(self, target: str, now: float) -> _Link | None:
        """The target's link if a GET may join it now; opens one when there is none."""
        link = self._links.get(target)
        if link is not None and not link.closed and not link.waiting \
                and now - link.idle_since > self._max_idle_age:
            link.end(IDLE)  # idle so long that the peer may be closing it right now
        if link is None or link.closed:
            # (a target that is not ASCII gets no link: the pool refuses it, InvalidRequest)
            if self._nursery is not None and target.isascii():
                link = self._links[target] = _Link(target, self._max_answer)
                self._nursery.start_soon(self._keep, link)
            return None
        if not link.connected or len(link.waiting) >= self._max_in_flight or (
                link.waiting and now - link.waiting[0].sent_at > self._stall_after):
            return None
        return link

    async def _keep(self, link: _Link) -> None:
        """Connect ``link``, run it until it ends, then drop it."""
        stream: Stream | None = None
        try:
            with link.scope:
                stream, _ = await self._pool.connect(link.target)
                link.connected = True
                self._opened += 1
                await link.run(stream, self._stall_after)
        except Exception as exc:  # cannot connect (NotSent), or a fault of this module
            link.end(f"failed: {exc!r}")
        finally:
            link.end(STOPPED)  # (when nothing ended it first: the node stops)
            if self._links.get(link.target) is link:
                del self._links[link.target]
            if stream is not None:
                await trio.aclose_forcefully(stream)
        if link.why not in (PEER_CLOSED, IDLE, STOPPED):
            self._failed += 1
            log.info("event=pipeline_link_ended target=%s why=%r", link.target, link.why)
