"""Sticky, balanced partition assignment and the routing table's wire format.

Plain functions: the Kafka bridge's assignor calls them on the group leader; unit tests
call them directly. Nothing here knows about aiokafka.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from kstate.core.messages import RoutingTable


@dataclass(frozen=True, slots=True)
class Claim:
    """What a member says in JoinGroup: where it listens and what it holds.
    ``rejoin`` counts the rejoins this member asked for because its routing table was
    stale (kstate/bridge/group.py): it makes the claim differ from the one the
    coordinator stored, so the rejoin is a rebalance (a new table), not a no-op."""

    url: str
    owned: frozenset[int]
    rejoin: int = 0


# What a host in a member url may hold: a DNS name, an IPv4 address, an IPv6 address
# (bracketed or not, with a zone). Nothing that could end a request line or a header,
# or reach a peer other than the one named (no space, "/", "@", "?", "#", no control
# byte, nothing outside ASCII).
_HOST = re.compile(r"[A-Za-z0-9._:%\[\]-]{1,255}")


def member_url_ok(url: str) -> bool:
    """Whether ``url`` is a ``host:port`` that peers can dial and that goes on the wire
    as it is: the only urls a routing table holds (a node refuses to start with
    another, :func:`decode_claim` and :func:`decode_table` drop one from a member)."""
    host, sep, port = url.rpartition(":")
    return (bool(sep) and port.isascii() and port.isdigit() and len(port) <= 5
            and 0 < int(port) <= 65535 and _HOST.fullmatch(host) is not None)


def encode_claim(claim: Claim) -> bytes:
    doc: dict[str, object] = {"url": claim.url, "owned": sorted(claim.owned)}
    if claim.rejoin:
        doc["rejoin"] = claim.rejoin
    return orjson.dumps(doc)


def decode_claim(raw: bytes) -> Claim:
    """A member's claim; a member that sent something else, or a url peers cannot
    dial (:func:`member_url_ok`), holds nothing and has no url."""
    try:
        doc = orjson.loads(raw)
        owned = frozenset(int(p) for p in doc.get("owned", []))
        url = doc["url"]
        rejoin = int(doc.get("rejoin", 0))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return Claim(url="", owned=frozenset())
    if not isinstance(url, str) or not member_url_ok(url):
        return Claim(url="", owned=frozenset())
    return Claim(url=url, owned=owned, rejoin=rejoin)


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
    """The table the group leader sent. A partition whose owner has a url peers cannot
    dial (a member of another version, say) has no owner here: its requests are
    answered ``no_owner`` (503, retry) instead of being sent nowhere; the member
    is listed, with the url ``""``."""
    doc = orjson.loads(raw) if raw else {}
    owners = {int(p): str(url) for p, url in doc.get("owners", {}).items()
              if member_url_ok(str(url))}
    members = {str(m): str(url) if member_url_ok(str(url)) else ""
               for m, url in doc.get("members", {}).items()}
    return RoutingTable(generation=generation, owners=owners, members=members)
