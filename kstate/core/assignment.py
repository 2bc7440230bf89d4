"""Sticky, balanced partition assignment and the routing table's wire format.

Plain functions: the Kafka bridge's assignor calls them on the group leader; unit tests
call them directly. Nothing here knows about aiokafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from kstate.core.messages import RoutingTable


@dataclass(frozen=True, slots=True)
class Claim:
    """What a member says in JoinGroup: where it listens and what it holds."""

    url: str
    owned: frozenset[int]


def encode_claim(claim: Claim) -> bytes:
    return orjson.dumps({"url": claim.url, "owned": sorted(claim.owned)})


def decode_claim(raw: bytes) -> Claim:
    """A member's claim; a member that sent something else holds nothing."""
    try:
        doc = orjson.loads(raw)
        owned = frozenset(int(p) for p in doc.get("owned", []))
        return Claim(url=str(doc["url"]), owned=owned)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return Claim(url="", owned=frozenset())


def plan(num_partitions: int, members: Mapping[str, Claim]) -> dict[str, list[int]]:
    """Assign ``num_partitions`` partitions to ``members`` (member id -> claim).

    Balanced: every member gets ``n // m`` or one more; the extra ones go to the first
    members in url order, so a member that restarts with the same url gets the same
    quota back. Sticky: a member keeps the partitions it claims, up to its quota; a
    partition claimed by two members stays with the first in url order. Only what is
    left (unclaimed, or over quota) moves, to the members with the fewest.
    """
    order = sorted(members, key=lambda mid: (members[mid].url, mid))
    result: dict[str, list[int]] = {mid: [] for mid in order}
    if not order:
        return result
    base, extra = divmod(num_partitions, len(order))
    quota = {mid: base + (1 if rank < extra else 0) for rank, mid in enumerate(order)}
    taken: set[int] = set()
    for mid in order:
        for pid in sorted(members[mid].owned):
            if 0 <= pid < num_partitions and pid not in taken and len(result[mid]) < quota[mid]:
                result[mid].append(pid)
                taken.add(pid)
    for pid in range(num_partitions):
        if pid in taken:
            continue
        mid = min((m for m in order if len(result[m]) < quota[m]),
                  key=lambda m: (len(result[m]), order.index(m)))
        result[mid].append(pid)
        taken.add(pid)
    for parts in result.values():
        parts.sort()
    return result


def encode_table(assignment: Mapping[str, list[int]], members: Mapping[str, Claim]) -> bytes:
    owners = {str(pid): members[mid].url for mid, parts in assignment.items() for pid in parts}
    urls = {mid: claim.url for mid, claim in members.items()}
    return orjson.dumps({"owners": owners, "members": urls})


def decode_table(raw: bytes, generation: int) -> RoutingTable:
    doc = orjson.loads(raw) if raw else {}
    owners = {int(p): str(url) for p, url in doc.get("owners", {}).items()}
    members = {str(m): str(url) for m, url in doc.get("members", {}).items()}
    return RoutingTable(generation=generation, owners=owners, members=members)
