"""A write's answer, sent once, and the one task that answers 503 ``write_timeout`` to
writes their produce has not settled in time (actors/writer.py)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from kstate.core.messages import Reply
from kstate.core.outcomes import Unavailable, WriteOutcome


class Once:
    """Answers a write once: the first answer (in time, or the 503 at the deadline) wins."""

    def __init__(self, reply: Reply[WriteOutcome]) -> None:
        self._reply = reply
        self.sent = False

    def send(self, value: WriteOutcome) -> None:
        if not self.sent:
            self.sent = True
            self._reply.send(value)


class Deadlines:
    """Answers 503 ``write_timeout`` to writes still unanswered ``timeout`` seconds after
    they were produced, while their produce goes on (one task for every write: a
    cancel scope and a task per write cost more than the write's own work). Writes
    come in deadline order, the timeout being the same for all."""

    def __init__(self, timeout: float, count_failed: Callable[[], None]) -> None:
        self.timeout = timeout
        self._count_failed = count_failed
        self._due: deque[tuple[float, Once]] = deque()
        self._added = trio.Event()

    def add(self, reply: Once) -> None:
        self._due.append((trio.current_time() + self.timeout, reply))
        self._added.set()

    async def run(self) -> None:
        while True:
            if not self._due:
                self._added = trio.Event()
                await self._added.wait()
            deadline, reply = self._due[0]
            if reply.sent:
                self._due.popleft()
                continue
            await trio.sleep_until(deadline)
            self._due.popleft()
            if not reply.sent:
                self._count_failed()
                reply.send(Unavailable(
                    "write_timeout",
                    "the write was not confirmed in time; it may or may not apply", 2.0))
