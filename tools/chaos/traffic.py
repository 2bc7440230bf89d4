"""Requests of the chaos run: every GET and PUT goes through :class:`Traffic`, which
times it, has the checker judge it, counts it, and feeds the availability tracker.

A request error is judged against what the harness knew: if the node it went to was
``up`` (same incarnation) from before the request until after the error, the error is
``error_alive`` (a violation); if the harness decided to stop that node meanwhile, it is
``node_down`` (expected, counted apart). A client timeout to a live node is ``timeout``
(counted, not a violation: the node answered too slowly, which the latency and
within-2 s figures show).
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

from tools.chaos.checker import Checker, Verdict, parse_etag
from tools.chaos.cluster import Cluster, Member

READ_OK = frozenset({"ok", "ok_404"})
WRITE_OK = frozenset({"acked", "precondition_failed"})


@dataclass(frozen=True, slots=True)
class Outage:
    """Reads of ``partition`` failed from ``start`` (start of the first failed read,
    which may have been sent just before the event that failed it) to ``end`` (end of
    the next correct read); ``seen`` is when the first failure arrived, which is what
    ties an outage to the event before it."""

    partition: int
    start: float
    seen: float
    end: float


@dataclass
class Availability:
    """Per partition: when reads of its keys stopped and started answering correctly.
    ``node_down`` answers say nothing either way."""

    failing: dict[int, tuple[float, float]] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)

    def observe(self, partition: int | None, start: float, end: float, ok: bool | None
                ) -> None:
        if partition is None or ok is None:
            return
        if ok:
            since = self.failing.pop(partition, None)
            if since is not None:
                self.outages.append(Outage(partition, since[0], since[1], end))
        else:
            self.failing.setdefault(partition, (start, end))

    def close(self, t: float) -> None:
        for p, (start, seen) in sorted(self.failing.items()):
            self.outages.append(Outage(p, start, seen, t))
        self.failing.clear()


@dataclass
class Stats:
    counts: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter))
    latency: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # workload reads: (start, seconds, answered correctly)
    reads: list[tuple[float, float, bool]] = field(default_factory=list)
    # workload writes: (end, acknowledged)
    writes: list[tuple[float, bool]] = field(default_factory=list)

    def add(self, source: str, op: str, kind: str, seconds: float, answered: bool) -> None:
        self.counts[f"{op}/{source}"][kind] += 1
        if answered:
            self.latency[op].append(seconds)


class Traffic:
    def __init__(self, client: httpx.AsyncClient, cluster: Cluster, checker: Checker,
                 rng: random.Random, timeout: float, t0: float) -> None:
        self.client = client
        self.cluster = cluster
        self.checker = checker
        self.rng = rng
        self.timeout = timeout
        self.t0 = t0
        self.stats = Stats()
        self.avail = Availability()
        self.writing: set[str] = set()
        self.last_etag: dict[str, str] = {}  # the newest version any answer carried
        self.old_etag: dict[str, str] = {}  # the one before it (If-Match it: 412)

    def _saw(self, key: str, etag: str) -> None:
        last = self.last_etag.get(key)
        if last is not None and last != etag:
            self.old_etag[key] = last
        self.last_etag[key] = etag

    def _err(self, m: Member, inc: int, exc: Exception, what: str) -> Verdict:
        if not self.cluster.still_up(m, inc):
            return Verdict("node_down")
        if isinstance(exc, httpx.TimeoutException):
            return Verdict("timeout", f"{what} via {m.name}: {exc!r}")
        return Verdict("error_alive", f"{what} via {m.name}: {exc!r}")

    async def read(self, key: str, source: str, member: Member | None = None,
                   final: bool = False) -> Verdict:
        return (await self.read_etag(key, source, member, final))[0]

    async def read_etag(self, key: str, source: str, member: Member | None = None,
                        final: bool = False) -> tuple[Verdict, str | None]:
        """GET ``key``; the verdict, and the ETag when the answer was a 200."""
        m = member or self.cluster.pick(self.rng)
        etag = None
        if m is None:
            self.stats.counts[f"read/{source}"]["no_node"] += 1
            return Verdict("no_node"), None
        inc = m.incarnation
        start = time.monotonic()
        try:
            r = await self.client.get(f"{m.node.base}/users/{key}", timeout=self.timeout)
        except httpx.HTTPError as exc:
            end = time.monotonic()
            v = self._err(m, inc, exc, f"GET {key}")
            answered = False
        else:
            end = time.monotonic()
            etag = r.headers.get("etag") if r.status_code == 200 else None
            if etag is not None:
                self._saw(key, etag)
            v = self.checker.judge_read(key, start, end, r.status_code, r.content,
                                        r.headers.get("etag"), "retry-after" in r.headers,
                                        final=final)
            answered = True
        self.checker.record(v, source=source, node=m.name, t=round(start - self.t0, 3))
        self.stats.add(source, "read", v.kind, end - start, answered)
        ok = None if v.kind == "node_down" else v.kind in READ_OK
        self.avail.observe(self.checker.partition_of(key), start, end, ok)
        if source == "workload":
            self.stats.reads.append((start, end - start, v.kind in READ_OK))
        return v, etag

    async def write(self, key: str, source: str, if_match: str | None = None
                    ) -> Verdict | None:
        """PUT a new unique value (``If-Match: if_match`` when given); None if a write
        of ``key`` is already in flight (the workload keeps one write per key in
        flight) or no node is up."""
        if key in self.writing:
            return None
        m = self.cluster.pick(self.rng)
        if m is None:
            return None
        self.writing.add(key)
        try:
            inc = m.incarnation
            start = time.monotonic()
            parsed = parse_etag(if_match)
            seq, body = self.checker.begin_write(key, start,
                                                 None if parsed is None else parsed[1])
            headers = {"content-type": "application/json"}
            if if_match is not None:
                headers["if-match"] = if_match
            try:
                r = await self.client.put(f"{m.node.base}/users/{key}", content=body,
                                          headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                end = time.monotonic()
                self.checker.end_write(key, seq, end, None, None, False)
                v = self._err(m, inc, exc, f"PUT {key} seq={seq}")
                answered = False
            else:
                end = time.monotonic()
                v = self.checker.end_write(key, seq, end, r.status_code,
                                           r.headers.get("etag"), "retry-after" in r.headers,
                                           r.content)
                answered = True
                if v.kind == "acked":
                    self._saw(key, r.headers["etag"])
            self.checker.record(v, source=source, node=m.name, t=round(start - self.t0, 3))
            self.stats.add(source, "write", v.kind, end - start, answered)
            if source == "workload" and v.kind != "node_down":
                self.stats.writes.append((end, v.kind in WRITE_OK))
            return v
        finally:
            self.writing.discard(key)
