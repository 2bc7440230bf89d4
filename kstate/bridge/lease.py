"""How long this node can prove nobody else owns its partitions (a read lease).

The group coordinator expires a member only when no heartbeat reached it for the
session timeout, and gives its partitions to others only after that (or after the
member rejoined and revoked them itself). A heartbeat the coordinator answered with no
error was received after it was sent, and no rebalance was under way then; so until
``sent + session timeout`` no other member can own this node's partitions. The lease
ends a margin before that: clocks run at slightly different rates and this process may
be scheduled late (docs/design.md, "Consistency rules"). A successful SyncGroup renews
it the same way.

The bridge's asyncio thread renews it; the trio thread reads ``valid()``. Both use
``time.monotonic()``, and a float is written whole.
"""

from __future__ import annotations

import time

DRIFT = 0.05  # the share of the session given to clock rate differences
SCHEDULING = 0.25  # seconds for a late wake-up of this process


class Lease:
    """Until when (``time.monotonic()``) this node can answer from memory."""

    def __init__(self, session_timeout_ms: int) -> None:
        self.window = session_timeout_ms / 1000 * (1 - DRIFT) - SCHEDULING
        self.until = 0.0
        self.renewals = 0
        self.ended = False

    def renew(self, sent: float) -> None:
        """A heartbeat (or SyncGroup) sent at ``sent`` was answered without error."""
        if self.ended:
            return  # an answer that comes after we left proves nothing
        self.until = max(self.until, sent + self.window)
        self.renewals += 1

    def end(self) -> None:
        """This member leaves the group: from now on nothing is answered from memory.
        LeaveGroup gives its partitions to others at once, whatever the last heartbeat
        proved."""
        self.ended = True
        self.until = 0.0

    def valid(self) -> bool:
        return time.monotonic() < self.until

    def remaining(self) -> float:
        return self.until - time.monotonic()
