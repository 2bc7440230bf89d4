"""The replay cache of node signatures (web/auth.py): every nonce an authenticated
forwarded write carried, kept while its signature could still pass the time window.

Bounded: at most ``capacity`` nonces. Entries leave on their own once their timestamp
is more than ``window`` seconds old (the window check refuses such a signature anyway,
so forgetting it opens nothing). When the cache is full of nonces still inside their
window, a new one is *refused* (:attr:`Seen.FULL`, answered 503 + Retry-After), never
admitted by forgetting an older one: forgetting would let that older signature be
replayed. Only signatures that verified reach the cache, so only key holders can fill
it; at the default size that takes thousands of forwarded writes per second to one
node, far above what one node's HTTP layer serves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Seen(enum.Enum):
    """What the cache says about a nonce."""
    FRESH = "fresh"  # never seen within the window: admitted (now remembered)
    REPLAYED = "replayed"  # seen before within the window: refuse
    FULL = "full"  # not seen, but no room to remember it: refuse, retry later


@dataclass(frozen=True, slots=True)
class NonceStats:
    """The cache's numbers (/metrics)."""
    size: int
    capacity: int
    replayed: int
    full: int


class NonceCache:
    """Nonces by signature timestamp (whole seconds): a bucket per second, so expiry
    drops whole buckets, and a nonce need only be unique within its second."""

    def __init__(self, capacity: int, window: float) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("capacity must be >= 1 and window > 0")
        self.capacity = capacity
        self.window = window
        self._buckets: dict[int, set[str]] = {}
        self._oldest: int | None = None  # the smallest stamp in _buckets
        self._size = 0
        self.replayed = 0
        self.full = 0

    def __len__(self) -> int:
        return self._size

    def _expire(self, now: float) -> None:
        if self._oldest is None or self._oldest + self.window >= now:
            return
        # At most 2 * window + 1 buckets are ever live (the window check bounds the
        # stamps that get here), so looking at every key is cheap.
        for stamp in [s for s in self._buckets if s + self.window < now]:
            self._size -= len(self._buckets.pop(stamp))
        self._oldest = min(self._buckets, default=None)

    def admit(self, stamp: int, nonce: str, now: float) -> Seen:
        """Remember ``nonce`` (of a signature made at ``stamp``) unless it was seen, or
        there is no room; say which."""
        self._expire(now)
        bucket = self._buckets.get(stamp)
        if bucket is not None and nonce in bucket:
            self.replayed += 1
            return Seen.REPLAYED
        if self._size >= self.capacity:
            self.full += 1
            return Seen.FULL
        if bucket is None:
            bucket = self._buckets[stamp] = set()
            if self._oldest is None or stamp < self._oldest:
                self._oldest = stamp
        bucket.add(nonce)
        self._size += 1
        return Seen.FRESH

    def statistics(self) -> NonceStats:
        return NonceStats(size=self._size, capacity=self.capacity, replayed=self.replayed,
                          full=self.full)
