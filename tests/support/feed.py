"""A checking client of the ``/changes`` websocket, and helpers to write users through
the API while remembering where each acknowledged write landed (its ETag).

``FeedReader`` tracks, per partition, the next offset it expects (from the hello
message, then from every change) and fails on any change that is out of order or
duplicated. In these tests every record of the topic is a valid user change or an
owner's claim marker (which the feed does not stream: it is no change) on a fresh topic
(no compaction yet), so every gap the reader sees is recorded and ``verify_gaps``
checks against the topic itself that each skipped offset holds a marker: "no change
missed" is asserted exactly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from kstate.core.records import MARKER_PREFIX
from tools.topic import read_all


@dataclass(frozen=True)
class Acked:
    """A write acknowledged by a node: where it is in the topic, and what it wrote."""

    key: str
    value: dict[str, Any] | None
    partition: int
    offset: int
    retried: int = 0  # 503 answers before this ack (each may have left a record behind)


def parse_etag(etag: str) -> tuple[int, int]:
    p, o = etag.strip('"').split("-")
    return int(p), int(o)


async def put_user(client: httpx.AsyncClient, base: str, email: str, name: str,
                   attempts: int = 50) -> Acked:
    """PUT /users/{email} (retrying 503 while the cluster settles); the acked write."""
    value = {"name": name, "email": email}
    for tried in range(attempts):
        r = await client.put(f"{base}/users/{email}", json=value)
        if r.status_code in (200, 201):
            p, o = parse_etag(r.headers["ETag"])
            return Acked(email, value, p, o, tried)
        assert r.status_code == 503, (r.status_code, r.text)
        await trio.sleep(0.2)
    raise AssertionError(f"PUT {email} via {base}: still 503 after {attempts} tries")


async def delete_user(client: httpx.AsyncClient, base: str, email: str,
                      attempts: int = 50) -> Acked:
    for tried in range(attempts):
        r = await client.delete(f"{base}/users/{email}")
        if r.status_code == 204:
            p, o = parse_etag(r.headers["ETag"])
            return Acked(email, None, p, o, tried)
        assert r.status_code == 503, (r.status_code, r.text)
        await trio.sleep(0.2)
    raise AssertionError(f"DELETE {email} via {base}: still 503 after {attempts} tries")


@dataclass
class FeedReader:
    ws: WebSocketConnection
    node: str = ""
    # partition -> next offset this reader expects (hello, then every change)
    positions: dict[int, int] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    contiguous: bool = True  # record gaps (False when filtering by key)
    # (partition, first skipped offset, offset after the gap): see verify_gaps
    gaps: list[tuple[int, int, int]] = field(default_factory=list)

    async def read_hello(self) -> dict[int, int]:
        msg = json.loads(await self.ws.get_message())
        assert msg.get("type") == "hello", msg
        self.node = msg["node"]
        hello = {int(p): int(o) for p, o in msg["positions"].items()}
        for p, o in hello.items():
            if p in self.positions:
                # a resumed feed starts exactly where this reader left off
                assert o == self.positions[p], (p, o, self.positions[p])
            self.positions[p] = o
        return hello

    def accept(self, change: dict[str, Any]) -> None:
        assert set(change) == {"key", "value", "partition", "offset"}, change
        p, o = int(change["partition"]), int(change["offset"])
        expected = self.positions.get(p)
        assert expected is not None, f"change of partition {p} not in hello: {change}"
        if self.contiguous:
            assert o >= expected, f"partition {p}: got offset {o}, expected {expected}"
            if o > expected:
                self.gaps.append((p, expected, o))
        else:
            assert o >= expected, f"partition {p}: offset {o} went back (expected >= {expected})"
        self.positions[p] = o + 1
        self.changes.append(change)

    async def next_change(self) -> dict[str, Any]:
        change = json.loads(await self.ws.get_message())
        self.accept(change)
        return change

    async def read_until(self, done: Any, seconds: float = 30.0) -> None:
        """Read changes until ``done(self)`` is true (fail after ``seconds``)."""
        with trio.fail_after(seconds):
            while not done(self):
                await self.next_change()

    def seen(self) -> set[tuple[int, int]]:
        return {(int(c["partition"]), int(c["offset"])) for c in self.changes}

    def from_param(self) -> str:
        """``from=`` that resumes exactly after what this reader has seen."""
        return ",".join(f"{p}:{o - 1}" for p, o in sorted(self.positions.items()))


async def verify_gaps(bootstrap: str, topic: str, *readers: FeedReader) -> None:
    """Every offset a contiguous reader skipped holds an owner's claim marker."""
    records = await read_all(bootstrap, topic)
    keys = {(p, rec.offset): rec.key for p, recs in records.items() for rec in recs}
    for reader in readers:
        for p, start, end in reader.gaps:
            for o in range(start, end):
                key = keys.get((p, o)) or b""
                assert key.startswith(MARKER_PREFIX), \
                    f"the feed skipped partition {p} offset {o}: {key!r} is not a marker"


def feed_url(base: str, **params: str) -> str:
    url = base.replace("http://", "ws://") + "/changes"
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return url


@asynccontextmanager
async def open_feed(base: str, reader: FeedReader | None = None, **params: str
                    ) -> AsyncIterator[FeedReader]:
    """Connect to ``base``'s /changes (resuming ``reader`` if given) and read the hello."""
    async with open_websocket_url(feed_url(base, **params), connect_timeout=10,
                                  disconnect_timeout=5) as ws:
        if reader is None:
            reader = FeedReader(ws)
        else:
            reader.ws = ws
        with trio.fail_after(15):
            await reader.read_hello()
        yield reader


def by_offset(acked: list[Acked]) -> set[tuple[int, int]]:
    return {(a.partition, a.offset) for a in acked}


def check_complete(reader: FeedReader, acked: list[Acked]) -> None:
    """The reader saw every acked write, and nothing else but what a write answered
    503 may have left in the topic (at most one record per 503), all keys we wrote."""
    want = by_offset(acked)
    seen = reader.seen()
    assert want <= seen, f"missing: {sorted(want - seen)[:10]}"
    extra = [c for c in reader.changes
             if (int(c["partition"]), int(c["offset"])) not in want]
    assert len(extra) <= sum(a.retried for a in acked), extra[:5]
    keys = {a.key for a in acked}
    assert all(c["key"] in keys for c in extra), extra[:5]
    check_matches(reader, acked)


def check_matches(reader: FeedReader, acked: list[Acked]) -> None:
    """Every acked write is in the reader's changes with its exact key and value."""
    got = {(int(c["partition"]), int(c["offset"])): c for c in reader.changes}
    for a in acked:
        c = got.get((a.partition, a.offset))
        assert c is not None, f"acked write {a} missing from the feed"
        assert c["key"] == a.key, (c, a)
        assert c["value"] == a.value, (c, a)
