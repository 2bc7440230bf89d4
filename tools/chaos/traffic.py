"""Requests of the chaos run: every GET, PUT and DELETE goes through :class:`Traffic`,
which times it, has the checker judge it, records it in the history (history.py),
counts it, and feeds the availability tracker.

A request error is judged against what the harness knew: if the node it went to was
``up`` (same incarnation) from before the request until after the error, the error is
``error_alive`` (a violation); if the harness decided to stop that node meanwhile, it is
``node_down`` (expected, counted apart). The client timeout is longer than a node's
answer bound (harness.node_answer_bound) unless ``--timeout`` says otherwise; then a
live node that accepted the request and gave no answer in time broke its bound:
``answer_timeout``, a violation. A connect or pool timeout (the harness's own side of
the connection), or any timeout under a ``--timeout`` shorter than the bound, is
``timeout``: counted in the requests table, not a violation. Latency figures cover
answered requests only: a timeout has no latency.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import orjson

from tools.chaos.checker import Checker, Verdict, parse_etag
from tools.chaos.cluster import Cluster, Member
from tools.chaos.history import History
from tools.chaos.outcomes import Op, error_code

READ_OK = frozenset({"ok", "ok_404"})
WRITE_OK = frozenset({"acked", "precondition_failed"})
CLIENTS_FROM = 10_000  # history client ids above this are one-off tasks (seed, sweeps, ...)


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
                 rng: random.Random, timeout: float, t0: float, history: History,
                 bound: float) -> None:
        self.client = client
        self.cluster = cluster
        self.checker = checker
        self.rng = rng
        self.timeout = timeout
        self.bound = bound  # seconds a node may take to answer (see the module docstring)
        self.t0 = t0
        self.history = history
        self.stats = Stats()
        self.avail = Availability()
        self.writing: set[str] = set()
        self.last_etag: dict[str, str] = {}  # the newest value version any answer carried
        self.old_etag: dict[str, str] = {}  # the one before it (If-Match it: 412)
        self.check_seconds = 0.0  # time spent in the checker's verdicts
        self._clients = CLIENTS_FROM

    def new_client(self) -> int:
        """A fresh client id for the history (one per task that sends in sequence)."""
        self._clients += 1
        return self._clients

    def _saw(self, key: str, etag: str) -> None:
        last = self.last_etag.get(key)
        if last is not None and last != etag:
            self.old_etag[key] = last
        self.last_etag[key] = etag

    def _err(self, m: Member, inc: int, exc: Exception, what: str) -> Verdict:
        if not self.cluster.still_up(m, inc):
            return Verdict("node_down")
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)) and self.timeout > self.bound:
            return Verdict("answer_timeout",
                           f"{what} via {m.name}: no answer in {self.timeout:.1f} s, past "
                           f"the node's bound of {self.bound:.1f} s ({exc!r})")
        if isinstance(exc, httpx.TimeoutException):
            return Verdict("timeout", f"{what} via {m.name}: {exc!r}")
        return Verdict("error_alive", f"{what} via {m.name}: {exc!r}")

    async def read(self, key: str, source: str, member: Member | None = None,
                   final: bool = False, client: int | None = None,
                   closing: bool = False) -> Verdict:
        return (await self.read_etag(key, source, member, final, client, closing))[0]

    async def read_etag(self, key: str, source: str, member: Member | None = None,
                        final: bool = False, client: int | None = None,
                        closing: bool = False) -> tuple[Verdict, str | None]:
        """GET ``key``; the verdict, and the ETag when the answer was a 200. ``final``
        and ``closing``: see Checker.judge_read."""
        m = member or self.cluster.pick(self.rng)
        etag = None
        if m is None:
            self.stats.counts[f"read/{source}"]["no_node"] += 1
            return Verdict("no_node"), None
        inc = m.incarnation
        start = time.monotonic()
        hid = self.history.call(client=self.new_client() if client is None else client,
                                node=m.node.url, key=key, op="get", if_match=None, value=None,
                                call=start)
        try:
            r = await self.client.get(f"{m.node.base}/users/{key}", timeout=self.timeout)
        except httpx.HTTPError as exc:
            end = time.monotonic()
            v = self._err(m, inc, exc, f"GET {key}")
            self.history.no_answer(hid, ret=end, error=type(exc).__name__, source=source,
                                   verdict=v.kind)
            answered = False
        else:
            end = time.monotonic()
            etag = r.headers.get("etag") if r.status_code == 200 else None
            if etag is not None:
                self._saw(key, etag)
            t = time.perf_counter()
            v = self.checker.judge_read(key, start, end, r.status_code, r.content,
                                        r.headers.get("etag"), "retry-after" in r.headers,
                                        final=final, closing=closing)
            self.check_seconds += time.perf_counter() - t
            self.history.answer(hid, ret=end, status=r.status_code,
                                code=None if r.status_code < 300 else error_code(r.content),
                                value=_name(r.content) if r.status_code == 200 else None,
                                etag=r.headers.get("etag"), source=source, verdict=v.kind)
            answered = True
        self.checker.record(v, source=source, node=m.name, key=key,
                            t=round(start - self.t0, 3))
        self.stats.add(source, "read", v.kind, end - start, answered)
        ok = None if v.kind == "node_down" else v.kind in READ_OK
        self.avail.observe(self.checker.partition_of(key), start, end, ok)
        if source == "workload":
            self.stats.reads.append((start, end - start, v.kind in READ_OK))
        return v, etag

    async def write(self, key: str, source: str, if_match: str | None = None, *,
                    delete: bool = False, client: int | None = None,
                    member: Member | None = None, avoid: Member | None = None
                    ) -> Verdict | None:
        """PUT a new unique value, or DELETE (``If-Match: if_match`` when given), through
        ``member`` or a random up node other than ``avoid``; None if a write of ``key``
        is already in flight (the workload keeps one write per key in flight) or no
        node is up."""
        if key in self.writing:
            return None
        m = member or self.cluster.pick(self.rng, avoid=avoid)
        if m is None:
            return None
        self.writing.add(key)
        try:
            return await self._write(m, key, source, if_match, delete,
                                     self.new_client() if client is None else client)
        finally:
            self.writing.discard(key)

    async def _write(self, m: Member, key: str, source: str, if_match: str | None,
                     delete: bool, client: int) -> Verdict:
        inc = m.incarnation
        start = time.monotonic()
        parsed = parse_etag(if_match)
        seq, body = self.checker.begin_write(key, start, None if parsed is None else parsed[1],
                                             delete=delete)
        op: Op = "delete" if delete else "put"
        hid = self.history.call(client=client, node=m.node.url, key=key, op=op,
                                if_match=if_match, value=None if delete else f"{key}#{seq}",
                                call=start)
        headers = {} if delete else {"content-type": "application/json"}
        if if_match is not None:
            headers["if-match"] = if_match
        url = f"{m.node.base}/users/{key}"
        try:
            if delete:
                r = await self.client.delete(url, headers=headers, timeout=self.timeout)
            else:
                r = await self.client.put(url, content=body, headers=headers,
                                          timeout=self.timeout)
        except httpx.HTTPError as exc:
            end = time.monotonic()
            self.checker.end_write(key, seq, end, None, None, False)
            v = self._err(m, inc, exc, f"{op.upper()} {key} seq={seq}")
            self.history.no_answer(hid, ret=end, error=type(exc).__name__, source=source,
                                   verdict=v.kind)
            answered = False
        else:
            end = time.monotonic()
            code = None if r.status_code < 300 else error_code(r.content)
            t = time.perf_counter()
            v = self.checker.end_write(key, seq, end, r.status_code, r.headers.get("etag"),
                                       "retry-after" in r.headers, r.content, code=code)
            self.check_seconds += time.perf_counter() - t
            self.history.answer(hid, ret=end, status=r.status_code, code=code,
                                etag=r.headers.get("etag"), source=source, verdict=v.kind)
            answered = True
            if v.kind == "acked" and not delete:
                self._saw(key, r.headers["etag"])
        self.checker.record(v, source=source, node=m.name, key=key,
                            t=round(start - self.t0, 3))
        self.stats.add(source, "delete" if delete else "write", v.kind, end - start, answered)
        if source == "workload" and v.kind != "node_down":
            self.stats.writes.append((end, v.kind in WRITE_OK))
        return v


def _name(body: bytes) -> str:
    """What a get 200 returned, as the history names values: the ``name`` field (the
    workload's ``<key>#<seq>``), else the body itself (a value no put wrote)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) else body.decode(errors="replace")
