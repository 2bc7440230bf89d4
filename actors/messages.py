"""Messages between actors: a closed set of small frozen dataclasses.

One union alias per channel:

- ``BridgeEvent``  kafka bridge (asyncio thread) -> rebalance listener
- ``StateIn``      consumer, rebalance listener -> state owner
- ``RouterIn``     rebalance listener -> router
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Reply(Protocol[T_contra]):
    """One answer to one request; ``send`` never blocks and may be called from trio."""

    def send(self, value: T_contra) -> None: ...


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the topic; ``value is None`` is a tombstone."""

    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Batch:
    """What one fetch returned: records by partition, and the consumer's position
    (next offset to fetch) of every assigned partition whose position is known.
    ``epoch`` counts revocations; a batch from an older epoch is stale."""

    epoch: int
    records: dict[int, list[Record]]
    positions: dict[int, int]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Who owns which partition, as the group leader decided for ``generation``."""

    generation: int
    owners: dict[int, str]
    members: dict[str, str] = field(default_factory=dict)  # member id -> url

    @classmethod
    def empty(cls) -> RoutingTable:
        return cls(generation=-1, owners={}, members={})


@dataclass(frozen=True, slots=True)
class Revoked:
    """The group is rebalancing: stop serving ``partitions`` now. The bridge waits
    for ``reply`` before the consumer rejoins."""

    epoch: int
    partitions: frozenset[int]
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Assigned:
    """The new assignment. ``end_offsets`` were read right after it (catch-up targets).
    ``reply`` answers where to seek: an offset for a kept partition, ``None`` for a
    partition to rebuild from the beginning."""

    epoch: int
    partitions: frozenset[int]
    table: RoutingTable
    end_offsets: dict[int, int]
    reply: Reply[dict[int, int | None]]


@dataclass(frozen=True, slots=True)
class Revoke:
    """Stop serving ``partitions``; ``reply`` once no new read or write can start."""

    epoch: int
    partitions: frozenset[int]
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Assign:
    epoch: int
    partitions: frozenset[int]
    end_offsets: dict[int, int]
    reply: Reply[dict[int, int | None]]


@dataclass(frozen=True, slots=True)
class Change:
    """One applied change of the topic, as the feed sends it."""

    partition: int
    offset: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Written:
    """A write the owner produced and applied (or that a later owner must catch up
    past): safe to acknowledge."""

    partition: int
    offset: int
    created: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """An answer other than success: HTTP status, error code, message."""

    status: int
    code: str
    message: str
    retry_after: float | None = None


WriteResult = Written | Refused


@dataclass(frozen=True, slots=True)
class Write:
    """Upsert (``value`` bytes) or delete (``value is None``) one key of a partition
    this node serves. ``if_match`` is an ETag the current version must have ("*":
    any existing version)."""

    partition: int
    key: bytes
    value: bytes | None
    if_match: str | None
    reply: Reply[WriteResult]


class ReplyBox(Generic[T]):
    """A trio-side :class:`Reply`: one value, awaited with :meth:`wait`."""

    __slots__ = ("_event", "_value")

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()
        self._value: T | None = None

    def send(self, value: T) -> None:
        self._value = value
        self._event.set()

    async def wait(self) -> T:
        await self._event.wait()
        return self._value  # type: ignore[return-value]


BridgeEvent = Revoked | Assigned
StateIn = Batch | Revoke | Assign
RouterIn = RoutingTable
WriterIn = Write
