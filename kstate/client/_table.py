"""The routing table as a client sees it (``/groupinfo``), and the seeds it starts from."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from kstate.core.assignment import member_url_ok
from kstate.core.partitioner import partition_for


def split_url(node: str) -> tuple[str, int | None]:
    """The host (brackets off) and port of a node's ``host:port``, read as the nodes
    read each other's (web/http1/client.py): the port is what follows the last colon,
    so an IPv6 address may come with or without brackets (``::1:8080``, which the
    nodes' url rule accepts, kstate/core/assignment.py). No port: None. ValueError
    when the port is not one or the host cannot be sent."""
    host, sep, port = node.rpartition(":")
    if not sep or node.endswith("]"):
        host, port = node, ""
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"{node!r} is not host:port")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{node!r} has no host")
    host.encode("idna")  # UnicodeError (a ValueError) for a name that cannot be sent
    return host, int(port) if port else None


def _sendable(node: str) -> bool:
    """Whether the client can address ``node`` (a name with an empty or overlong label,
    say, passes the nodes' url rule but is no name to look up)."""
    try:
        split_url(node)
    except ValueError:
        return False
    return True


def normalize_url(seed: str) -> str:
    """``host:port`` of a seed given as ``host:port`` or ``http[s]://host:port[/]`` (the
    client's ``tls`` setting, not the seed, decides the scheme)."""
    text = seed.strip()
    if "://" in text:
        parsed = urllib.parse.urlsplit(text)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"seed {seed!r}: only http[s]://host:port is supported")
        text = parsed.netloc
    if not text or "/" in text:
        raise ValueError(f"seed {seed!r} is not host:port")
    try:
        split_url(text)
    except ValueError as exc:
        raise ValueError(f"seed {seed!r} is not host:port") from exc
    return text


@dataclass(frozen=True, slots=True)
class Table:
    """One routing table as a node answered it on ``/groupinfo``."""

    generation: int
    topic: str  # "" when the table was empty
    partitions: int  # the topic's partition count; 0 when the table does not cover 0..n-1
    owners: dict[int, str]  # partition -> "host:port"
    source: str  # the node that answered
    fetched_at: float  # time.monotonic()

    @property
    def members(self) -> list[str]:
        return sorted(set(self.owners.values()))

    def partition(self, key: bytes) -> int | None:
        return partition_for(key, self.partitions) if self.partitions else None

    def owner(self, key: bytes) -> str | None:
        pid = self.partition(key)
        return None if pid is None else self.owners.get(pid)

    @classmethod
    def parse(cls, doc: object, generation: int, source: str,
              known: Mapping[str, int] | None = None, stated: int | None = None) -> Table:
        """From the JSON body of ``/groupinfo``; ValueError when it is not one.
        ``known``: the partition count of each topic in a complete table seen before;
        ``stated``: the count the node sent with the table (its ``kstate-partitions``
        header; None from a node too old to send it)."""
        if not isinstance(doc, dict):
            raise ValueError("/groupinfo did not answer a JSON object")
        owners: dict[int, str] = {}
        topics: set[str] = set()
        for name, url in doc.items():
            topic, dash, num = str(name).rpartition("-")
            if not dash or not topic or not num.isdigit() or not isinstance(url, str):
                raise ValueError(f"/groupinfo entry {name!r}: {url!r} is not <topic>-<p>: url")
            topics.add(topic)
            # An owner no peer could dial (the nodes list none: kstate/core/assignment.py)
            # is no owner: its partition is missing, the table incomplete.
            if member_url_ok(url) and _sendable(url):
                owners[int(num)] = url
        if len(topics) > 1:
            raise ValueError(f"/groupinfo names several topics: {sorted(topics)}")
        # Use the count only when the table covers every partition 0..n-1: a partial
        # table would hash keys to the wrong partitions. The table does not say n: one
        # without its last partitions (their owner's url is one no peer can dial, so
        # the nodes list no owner for them) covers 0..k-1 as if k were the count. A
        # topic's partitions are never removed, so fewer than a complete table of the
        # same topic had before is such a table.
        topic = next(iter(topics), "")
        n = len(owners) if owners and set(owners) == set(range(len(owners))) else 0
        if known is not None and n < known.get(topic, 0):
            n = 0
        # The node's own count settles it, even for a client's first table (which has
        # no earlier count to hold it against).
        if stated is not None and n != stated:
            n = 0
        return cls(generation=generation, topic=topic, partitions=n,
                   owners=owners, source=source, fetched_at=time.monotonic())
