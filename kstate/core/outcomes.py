"""What a read or a write came to, as domain values. The HTTP layer renders them
(web/render.py); nothing below it knows a status code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Found:
    """The key's stored value and its version (the record's offset)."""

    partition: int
    value: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class Missing:
    """The key does not exist (said only by a caught-up owner, or behind a fence)."""

    partition: int


@dataclass(frozen=True, slots=True)
class Written:
    """A write the owner produced and applied: safe to acknowledge. ``offset`` is -1
    when nothing had to be written (deleting a key that does not exist)."""

    partition: int
    offset: int
    created: bool


@dataclass(frozen=True, slots=True)
class Conflict:
    """A conditional write whose condition (If-Match) did not hold: nothing written."""

    message: str


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A write whose record is larger than the topic takes (Kafka refused it): nothing
    written; sending it again cannot help."""

    message: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Not answered now; retry after ``retry_after`` seconds. ``reason`` is the stable
    code clients see (e.g. ``no_owner``, ``catching_up``, ``write_timeout``)."""

    reason: str
    message: str
    retry_after: float = 1.0


ReadOutcome = Found | Missing | Unavailable
WriteOutcome = Written | Conflict | TooLarge | Unavailable
