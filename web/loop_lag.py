"""How late the node's event loop runs: one task sleeps ``STEP`` again and again and
keeps by how much each sleep overran.

Every timer of the node fires late by as much: the front's head, body and idle cuts,
the feed's stall cut, the writer's deadlines. A node that is short of CPU (a burst of
websocket handshakes, a machine loaded past its cores) shows it here first; /metrics
exports the latest overrun and the worst since the node started
(``kstate_event_loop_lag_seconds``, ``kstate_event_loop_lag_max_seconds``).
"""

from __future__ import annotations

import trio

STEP = 0.1  # ten wakeups a second: nothing next to a request's cost


class LoopLag:
    """The latest and the worst overrun of a ``STEP`` sleep, in seconds."""

    def __init__(self) -> None:
        self.latest = 0.0
        self.worst = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        while True:
            before = trio.current_time()
            await trio.sleep(STEP)
            self.latest = max(0.0, trio.current_time() - before - STEP)
            self.worst = max(self.worst, self.latest)
