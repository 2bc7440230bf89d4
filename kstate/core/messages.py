"""Messages between actors: a closed set of small frozen dataclasses.

One union alias per channel:

- ``BridgeEvent``  Kafka bridge (asyncio thread) -> rebalance listener
- ``StateIn``      consumer, rebalance listener -> state owner
- ``RouterIn``     rebalance listener -> router
- ``WriterIn``     router -> writer
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from kstate.core.outcomes import WriteOutcome

T_contra = TypeVar("T_contra", contravariant=True)


class Reply(Protocol[T_contra]):
    """One answer to one request; ``send`` never blocks and may be called from trio."""

    def send(self, value: T_contra) -> None: ...


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the topic; ``value is None`` is a tombstone. ``headers`` as Kafka
    carries them (name, value bytes or None: Kafka allows a null header value), in
    order."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    """What one fetch returned: records by partition, and the consumer's position
    (next offset to fetch) of every assigned partition whose position is known.
    ``epoch`` counts revocations; a batch from an older epoch is stale. ``halted``:
    partitions whose next batch could not be decoded (corrupt, or a codec this node
    cannot read), with the offset and the reason: they stop where they are."""

    epoch: int
    records: dict[int, list[Record]]
    positions: dict[int, int]
    halted: dict[int, tuple[int, str]] = field(default_factory=dict)


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
    """The new assignment. ``end_offsets`` were read right after it (catch-up targets;
    a partition missing there has none yet: a :class:`Targets` brings it).
    ``reply`` answers where to seek: an offset for a kept partition, ``None`` for a
    partition to rebuild from the beginning. ``claim_after`` (``time.monotonic()``; 0:
    none): a static member's process that may be replacing a live incarnation of
    itself claims nothing before then, and serves no read before its own marker is
    applied (kstate/core/partition.py, ``claim_after``)."""

    epoch: int
    partitions: frozenset[int]
    table: RoutingTable
    end_offsets: dict[int, int]
    reply: Reply[dict[int, int | None]]
    claim_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Targets:
    """Catch-up targets of partitions of the assignment of ``epoch`` whose end offset
    Kafka could not say when it was made (no leader: its broker down), read once it
    could. From the bridge to the rebalance listener, which hands it on to the state
    owner; ``reply`` once applied (or dropped: a revoke came since)."""

    epoch: int
    end_offsets: dict[int, int]
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Revoke:
    """Stop serving ``partitions``; ``reply`` once no new read or write can start."""

    epoch: int
    partitions: frozenset[int]
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Assign:
    """Hold ``partitions`` from now on (catch-up targets ``end_offsets``); ``reply``
    says where the consumer must seek (see :class:`Assigned`). ``generation`` is the
    group generation of the assignment (-1: no group, a standby copy): this node's owner
    epoch of each partition starts there (kstate/core/records.py). ``claim_after``: see
    :class:`Assigned`."""

    epoch: int
    partitions: frozenset[int]
    end_offsets: dict[int, int]
    reply: Reply[dict[int, int | None]]
    generation: int = -1
    claim_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Own:
    """Records this node produced to ``partition`` (in offset order): apply them now
    if they are the partition's next records, instead of waiting for the fetch to
    bring them back. ``reply`` gets whether they were applied."""

    partition: int
    records: list[Record]
    reply: Reply[bool]


@dataclass(frozen=True, slots=True)
class Bump:
    """This node's owner epoch of ``partition`` goes up: by one (a write's fate is
    unknown: the marker of the new epoch will fence it), or, to ``claim`` the partition
    after an assignment, to a block above every epoch the partition has seen
    (kstate/core/records.py). ``reply`` gets the new epoch, or None if the node no
    longer serves the partition (or, for a claim, is not caught up yet), or if the new
    epoch would be past what a marker may raise the partition to (records.epoch_reach:
    the node then stops writing the partition)."""

    partition: int
    reply: Reply[int | None]
    claim: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """Write this node's owner-epoch marker of each of ``partitions`` (after an
    assignment): writes to a partition wait until its marker is applied."""

    partitions: frozenset[int]


@dataclass(frozen=True, slots=True)
class Write:
    """Upsert (``value`` bytes) or delete (``value is None``) one key of a partition
    this node serves. ``if_match`` is an ETag the current version must have ("*":
    any existing version)."""

    partition: int
    key: bytes
    value: bytes | None
    if_match: str | None
    reply: Reply[WriteOutcome]


BridgeEvent = Revoked | Assigned | Targets
StateIn = Batch | Revoke | Assign | Own | Bump | Targets
RouterIn = RoutingTable
WriterIn = Write | Claim
