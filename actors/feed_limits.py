"""How many /changes subscribers a node holds at once: the admission of each one.

Every subscriber holds a websocket, a bounded queue in the broadcaster and a task; a
resumed one (``from=...``) also holds a Kafka reader of its own (a consumer with its
connections and fetch buffers, sized by ``READER_FETCH_BYTES`` there) until it hands
over to the broadcaster (actors/feed_resume.py). Both are bounded per node; a
subscriber beyond either bound is refused before its websocket is accepted
(web/routes_feed.py answers 503 + ``Retry-After``), so what is held never grows with
what clients ask for.
"""

from __future__ import annotations

from dataclasses import dataclass

FULL = "feed_full"  # every subscriber slot is taken
RESUMED_FULL = "feed_resume_full"  # every own-reader slot is taken


@dataclass(frozen=True, slots=True)
class FeedLimitStats:
    """The admission's numbers (/metrics)."""
    subscribers: int  # admitted and not yet gone (live, replaying, or being cut off)
    resumed: int  # holding a Kafka reader of their own now
    refused: int
    stalled: int  # cut off because they took nothing for stall_timeout seconds


class Admission:
    """One admitted subscriber's slots. ``reader_closed`` gives the own-reader slot
    back (at hand-over); ``close`` gives back both. Both are idempotent."""

    def __init__(self, limits: FeedLimits, resumed: bool) -> None:
        self._limits = limits
        self._resumed = resumed
        self._open = True

    def reader_closed(self) -> None:
        if self._resumed:
            self._resumed = False
            self._limits.resumed -= 1

    def close(self) -> None:
        self.reader_closed()
        if self._open:
            self._open = False
            self._limits.subscribers -= 1

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class FeedLimits:
    """The node's bounds on feed subscribers and what is held now."""

    def __init__(self, max_subscribers: int = 512, max_resumed: int = 32,
                 stall_timeout: float = 5.0) -> None:
        self.max_subscribers = max_subscribers
        self.max_resumed = max_resumed
        self.stall_timeout = stall_timeout  # seconds (actors/feed_outbox.py)
        self.subscribers = 0
        self.resumed = 0
        self.refused = 0
        self.stalled = 0

    def admit(self, resumed: bool) -> Admission | str:
        """Slots for one more subscriber (``resumed``: it needs a reader of its own),
        or the reason there are none (:data:`FULL`, :data:`RESUMED_FULL`)."""
        if self.subscribers >= self.max_subscribers:
            self.refused += 1
            return FULL
        if resumed and self.resumed >= self.max_resumed:
            self.refused += 1
            return RESUMED_FULL
        self.subscribers += 1
        if resumed:
            self.resumed += 1
        return Admission(self, resumed)

    def statistics(self) -> FeedLimitStats:
        return FeedLimitStats(subscribers=self.subscribers, resumed=self.resumed,
                              refused=self.refused, stalled=self.stalled)
