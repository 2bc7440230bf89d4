"""A bounded read/write workload against a kstate cluster, and the checker that
classifies every answer. Shared by the cluster tests and the chaos harness.

:class:`Workload` keeps what clients were told, per key: every write with the time it
was sent, the time it was acknowledged (with its ETag), or that it ended without a
definite answer (5xx, timeout, no answer: it may still apply). A read that was sent
at t0 and answered at t1 must answer the value of the last write acknowledged before
t0, or of a write that overlaps [t0, t1] (sent before t1, not acknowledged before t0),
or of a write that ended uncertain and was not overwritten by an acknowledged write
sent after it ended (linearizability, per key). Every answer is classified:

- ``ok``              200 with an allowed value (and its ETag, where known), or 404
                      where "deleted" or "not yet written" is allowed
- ``stale``           200 with any other value or ETag (an older version, or garbage)
- ``spurious_404``    404 for a key that must exist
- ``unavailable``     503 with a ``Retry-After`` header (the only refusal allowed)
- ``other_5xx``       any other 5xx, 503 without ``Retry-After`` included
- ``unexpected``      any other status (4xx other than a true 404, 3xx, ...)
- ``error``           no HTTP answer at all (connection refused/reset, timeout)
- ``node_down``       no HTTP answer from a node the test took out of the live set while
                      the request was in flight (it is being stopped); not a violation,
                      as in the chaos harness

Loads are bounded: ``readers`` concurrent tasks, each one request at a time with an
optional pause between requests, against the nodes ``targets()`` returns at the time
of each request (the caller keeps that list to the nodes that are alive).
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import trio

from kstate.core.partitioner import partition_for

OUTCOMES = ("ok", "stale", "spurious_404", "unavailable", "other_5xx", "unexpected", "error",
            "node_down")
BAD = ("stale", "spurious_404", "other_5xx", "unexpected", "error")
HISTORY_KEEP = 60.0  # seconds an overwritten version stays relevant (reads take < 15 s)


def user_value(email: str, name: str) -> bytes:
    """The bytes kstate stores (and answers) for a user: compact JSON, name first."""
    return orjson.dumps({"name": name, "email": email})


@dataclass
class Expect:
    """The last acknowledged state of a key: ``value is None`` means deleted (404)."""

    value: bytes | None
    etag: str | None = None


@dataclass
class Version:
    """One write of one key, as the client saw it."""

    value: bytes | None
    started: float
    acked: float | None = None  # when acknowledged (then ``etag`` is known)
    etag: str | None = None
    ended: float | None = None  # when the client stopped waiting (any outcome)
    uncertain: bool = False  # ended without a definite answer: may apply later


@dataclass
class Sample:
    """One bad answer, kept for the failure message and the run log."""

    at: float
    outcome: str
    base: str
    email: str
    status: int | None
    detail: str


@dataclass
class Workload:
    """Known keys, their write history, and counters of read outcomes."""

    client: httpx.AsyncClient
    rng: random.Random = field(default_factory=lambda: random.Random(4))
    known: dict[str, Expect] = field(default_factory=dict)  # last acknowledged
    history: dict[str, list[Version]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    write_counts: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    max_samples: int = 50
    timeout: float = 15.0
    started: float = field(default_factory=time.monotonic)
    # (monotonic time answered, outcome, seconds it took) of every read
    timeline: list[tuple[float, str, float]] = field(default_factory=list)

    # -- writes --------------------------------------------------------------
    def seed(self, email: str, value: bytes | None, etag: str | None = None) -> None:
        """Record a write made outside the workload (e.g. produced to Kafka directly)
        and acknowledged before any read of it starts."""
        self.history[email] = [Version(value, 0.0, acked=0.0, etag=etag, ended=0.0)]
        self.known[email] = Expect(value, etag)

    def in_flight(self, email: str) -> bool:
        return any(v.ended is None for v in self.history.get(email, ()))

    def _begin(self, email: str, value: bytes | None) -> Version:
        v = Version(value, time.monotonic())
        self.history.setdefault(email, []).append(v)
        return v

    def _end(self, email: str, v: Version, status: int | None, etag: str | None,
             acked: bool) -> None:
        now = time.monotonic()
        v.ended = now
        if acked:
            v.acked, v.etag = now, etag
            self.known[email] = Expect(v.value, etag)
            # forget versions overwritten by an acknowledgement older than HISTORY_KEEP
            hist = self.history[email]
            old = [u.acked for u in hist if u.acked is not None and u.acked < now - HISTORY_KEEP]
            if old:
                horizon = max(old)
                self.history[email] = [
                    w for w in hist if w.ended is None
                    or (w.acked if w.acked is not None else w.ended) >= horizon]
        elif status is None or status >= 500:
            v.uncertain = True  # it may have been produced; it may apply later
        else:
            self.history[email].remove(v)  # a definite refusal (4xx): nothing written

    async def _write(self, email: str, value: bytes | None,
                     send: Callable[[], Awaitable[httpx.Response]], ok: tuple[int, ...],
                     retries: int) -> httpx.Response:
        v = self._begin(email, value)
        status: int | None = None
        r: httpx.Response | None = None
        try:
            for attempt in range(retries):
                r = await send()
                status = r.status_code
                if status == 503 and "retry-after" in r.headers and attempt < retries - 1:
                    self.write_counts["retried_503"] += 1
                    await trio.sleep(0.2)
                    continue
                break
            assert r is not None
            self.write_counts[str(r.status_code)] += 1
            return r
        except httpx.HTTPError:
            self.write_counts["error"] += 1
            raise
        finally:
            acked = r is not None and r.status_code in ok
            self._end(email, v, status, r.headers.get("etag") if r is not None else None,
                      acked)

    async def put(self, base: str, email: str, name: str, *, api: str = "rest",
                  retries: int = 40) -> httpx.Response:
        """PUT a user through ``base`` (``api`` "rest" or "seed"); retry 503+Retry-After
        (bounded); on success remember the value and ETag as acknowledged."""
        value = user_value(email, name)
        headers = {"Content-Type": "application/json"}
        if api == "rest":
            def send() -> Awaitable[httpx.Response]:
                return self.client.put(f"{base}/users/{email}", content=value,
                                       headers=headers, timeout=self.timeout)
        else:
            def send() -> Awaitable[httpx.Response]:
                return self.client.put(f"{base}/user", params={"email": email},
                                       content=value, headers=headers, timeout=self.timeout)
        return await self._write(email, value, send, (200, 201), retries)

    async def delete(self, base: str, email: str, retries: int = 40) -> httpx.Response:
        """DELETE a user through ``base`` (REST); acknowledged by 204."""
        def send() -> Awaitable[httpx.Response]:
            return self.client.delete(f"{base}/users/{email}", timeout=self.timeout)

        return await self._write(email, None, send, (204,), retries)

    # -- reads ---------------------------------------------------------------
    def allowed(self, email: str, t0: float, t1: float) -> list[tuple[Version, bool]]:
        """Versions a read sent at ``t0`` and answered at ``t1`` may return, each with
        whether its ETag must match too (only the version acknowledged before the read
        was sent: a write overlapping the read may have been retried at another
        offset)."""
        hist = self.history.get(email)
        if hist is None:
            exp = self.known[email]
            return [(Version(exp.value, 0.0, acked=0.0, etag=exp.etag, ended=0.0), True)]
        acked_before = [v for v in hist if v.acked is not None and v.acked <= t0]
        base = max(acked_before, key=lambda v: v.acked or 0.0, default=None)
        out = [] if base is None else [(base, True)]
        for v in hist:
            if v is base or v.started > t1:
                continue
            if v.acked is not None and v.acked > t0:
                out.append((v, False))  # overlaps the read
            elif v.acked is None and not v.uncertain:
                out.append((v, False))  # still in flight
            elif v.uncertain and not any(w.acked is not None and w.acked <= t0
                                         and v.ended is not None and w.started > v.ended
                                         for w in hist):
                out.append((v, False))  # may have applied, not overwritten since
        if base is None:
            out.append((Version(None, 0.0), False))  # not written yet: 404 is right
        return out

    def classify(self, email: str, r: httpx.Response, t0: float = float("inf"),
                 t1: float = float("inf")) -> tuple[str, str]:
        """(outcome, detail) of one answer to a GET of a known key (sent at ``t0``,
        answered at ``t1``; default: judged against the latest state)."""
        if t0 == float("inf"):
            t0 = t1 = time.monotonic()
        ok = self.allowed(email, t0, t1)
        status = r.status_code
        if status == 200:
            etag = r.headers.get("etag")
            for v, strict in ok:
                if v.value == r.content and (not strict or v.etag in (None, etag)):
                    return "ok", ""
            want = " | ".join(f"{v.value!r} etag={v.etag}" for v, _ in ok)
            return "stale", f"got {r.content[:120]!r} etag={etag}; allowed: {want}"
        if status == 404:
            if any(v.value is None for v, _ in ok):
                return "ok", ""
            return "spurious_404", r.text[:200]
        if status == 503 and "retry-after" in r.headers:
            return "unavailable", r.text[:200]
        if status >= 500:
            return "other_5xx", r.text[:200]
        return "unexpected", r.text[:200]

    async def read(self, base: str, email: str, *, api: str = "rest",
                   still_live: Callable[[str], bool] | None = None) -> str:
        """GET one known key through ``base``; count and return its outcome. With
        ``still_live``: a request error from a node the test took out of the live set
        while the request was in flight (it is being stopped) is ``node_down``, not an
        error; errors from live nodes stay errors."""
        t0 = time.monotonic()
        try:
            if api == "rest":
                r = await self.client.get(f"{base}/users/{email}", timeout=self.timeout)
            else:
                r = await self.client.get(f"{base}/user", params={"email": email},
                                          timeout=self.timeout)
        except httpx.HTTPError as exc:
            down = still_live is not None and not still_live(base)
            outcome, detail, status = ("node_down" if down else "error"), repr(exc), None
        else:
            outcome, detail = self.classify(email, r, t0, time.monotonic())
            status = r.status_code
        self.record(outcome, base, email, status, detail, time.monotonic() - t0)
        return outcome

    def record(self, outcome: str, base: str, email: str, status: int | None,
               detail: str, seconds: float = 0.0) -> None:
        now = time.monotonic()
        self.counts[outcome] += 1
        self.timeline.append((now, outcome, seconds))
        if outcome != "ok" and len(self.samples) < self.max_samples:
            self.samples.append(Sample(round(now - self.started, 3), outcome, base, email,
                                       status, detail))

    async def read_loop(self, targets: Callable[[], Sequence[str]], stop: trio.Event, *,
                        readers: int = 4, pause: float = 0.0, keys: Sequence[str] | None = None
                        ) -> None:
        """``readers`` concurrent tasks read random known keys (or ``keys``) through
        random nodes of ``targets()`` until ``stop`` is set."""

        async def reader(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                bases = targets()
                pool = keys if keys is not None else list(self.known)
                if not bases or not pool:
                    await trio.sleep(0.05)
                    continue
                await self.read(rng.choice(list(bases)), rng.choice(pool),
                                still_live=lambda b: b in targets())
                if pause:
                    await trio.sleep(pause)
                else:
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            for i in range(readers):
                nursery.start_soon(reader, self.rng.randrange(1 << 30) + i)

    async def write_loop(self, targets: Callable[[], Sequence[str]], stop: trio.Event,
                         keys: Sequence[str], *, writers: int = 1, pause: float = 0.05
                         ) -> None:
        """``writers`` tasks overwrite random ``keys`` with new names through random
        nodes of ``targets()`` until ``stop`` is set; acknowledged values become what
        later reads must answer (read-your-writes across nodes and rebalances)."""

        async def writer(seed: int) -> None:
            rng = random.Random(seed)
            n = 0
            while not stop.is_set():
                bases = targets()
                if not bases:
                    await trio.sleep(0.05)
                    continue
                n += 1
                email = rng.choice(keys)
                if self.in_flight(email):
                    continue  # one write per key at a time keeps "expected" exact
                try:
                    await self.put(rng.choice(list(bases)), email, f"v{seed}.{n}",
                                   api=rng.choice(("rest", "seed")), retries=1)
                except httpx.HTTPError:
                    pass  # counted as a write error; the value stays uncertain
                await trio.sleep(pause)

        async with trio.open_nursery() as nursery:
            for i in range(writers):
                nursery.start_soon(writer, self.rng.randrange(1 << 30) + i)

    # -- checks --------------------------------------------------------------
    def bad(self) -> dict[str, int]:
        return {k: self.counts[k] for k in BAD if self.counts[k]}

    def summary(self) -> str:
        parts = " ".join(f"{k}={self.counts[k]}" for k in OUTCOMES)
        writes = " ".join(f"{k}={v}" for k, v in sorted(self.write_counts.items()))
        return f"reads: {parts} total={sum(self.counts.values())} | writes: {writes}"

    def report(self) -> str:
        lines = [self.summary()]
        lines += [f"  t={s.at}s {s.outcome} via {s.base} {s.email} status={s.status} "
                  f"{s.detail}" for s in self.samples]
        return "\n".join(lines)

    def unavailable_windows(self, gap: float = 0.5) -> list[tuple[float, float, int]]:
        """Spans (start, seconds, reads) where reads were not ``ok``, merging spans
        less than ``gap`` seconds apart; times relative to the workload's start."""
        out: list[tuple[float, float, int]] = []
        start = end = None
        n = 0
        for at, outcome, _ in sorted(self.timeline):
            if outcome == "ok":
                continue
            if start is not None and end is not None and at - end <= gap:
                end, n = at, n + 1
                continue
            if start is not None and end is not None:
                out.append((round(start - self.started, 3), round(end - start, 3), n))
            start, end, n = at, at, 1
        if start is not None and end is not None:
            out.append((round(start - self.started, 3), round(end - start, 3), n))
        return out


async def sweep(wl: Workload, bases: Sequence[str], keys: Sequence[str] | None = None,
                concurrency: int = 8) -> Counter[str]:
    """Read every key (default: every known key) through every base once, with at
    most ``concurrency`` requests at a time. Returns this sweep's outcome counts (also
    added to ``wl.counts``)."""
    keys = list(wl.known) if keys is None else list(keys)
    jobs = [(b, k) for b in bases for k in keys]
    got: Counter[str] = Counter()
    limit = trio.CapacityLimiter(concurrency)

    async def one(base: str, email: str) -> None:
        async with limit:
            got[await wl.read(base, email)] += 1

    async with trio.open_nursery() as nursery:
        for base, email in jobs:
            nursery.start_soon(one, base, email)
    return got


def probe_keys(keys: Sequence[str], partitions: int) -> list[str]:
    """One key of every partition that has one: reading these through a node says
    whether every partition answers there (availability is per partition)."""
    by_partition: dict[int, str] = {}
    for k in keys:
        by_partition.setdefault(partition_for(k.encode(), partitions), k)
    return [by_partition[p] for p in sorted(by_partition)]


async def wait_all_ok(wl: Workload, bases: Sequence[str], partitions: int, within: float,
                      since: float | None = None, concurrency: int = 8) -> float:
    """Seconds (from ``since``, default now; at most ``within``) until every known key
    answers ``ok`` through every base in ``bases``.

    Probes one key per partition through every base until a round is all ``ok`` (the
    time of that round is the answer), then confirms with a full sweep of every key
    through every base; a sweep that is not all ``ok`` starts over. Non-ok answers are
    counted in ``wl.counts`` for the caller to assert on."""
    t0 = time.monotonic() if since is None else since
    probes = probe_keys([k for k, e in wl.known.items() if e.value is not None], partitions)
    with trio.fail_after(within):
        while True:
            got = await sweep(wl, bases, probes, concurrency)
            if set(got) != {"ok"}:
                await trio.sleep(0.02)
                continue
            at = time.monotonic() - t0
            if set(await sweep(wl, bases, None, concurrency)) == {"ok"}:
                return at


async def load_users(wl: Workload, bases: Sequence[str], emails: Sequence[str], *,
                     name: str = "User", concurrency: int = 8) -> None:
    """PUT every email (name ``f"{name} {i}"``) through random ``bases``, alternating
    the seed and REST APIs; every write must be acknowledged."""
    limit = trio.CapacityLimiter(concurrency)

    async def put(i: int, email: str) -> None:
        async with limit:
            r = await wl.put(wl.rng.choice(list(bases)), email, f"{name} {i}",
                             api="seed" if i % 2 else "rest")
        assert r.status_code in (200, 201), (email, r.status_code, r.text)

    async with trio.open_nursery() as nursery:
        for i, email in enumerate(emails):
            nursery.start_soon(put, i, email)


async def wait_listening(client: httpx.AsyncClient, base: str, within: float = 30) -> None:
    """Wait until ``base``/healthz answers 200 (the node's HTTP server is up)."""
    with trio.fail_after(within):
        while True:
            try:
                if (await client.get(f"{base}/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


async def readiness(client: httpx.AsyncClient, bases: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each node's /readyz body (per-partition position/target/replayed/...)."""
    out: dict[str, dict[str, Any]] = {}
    for base in bases:
        r = await client.get(f"{base}/readyz", timeout=5)
        out[base] = r.json()
    return out


def replayed(stats: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Records applied since each node's last assignment, summed over its partitions."""
    return {base: sum(int(p["replayed"]) for p in doc["partitions"].values())
            for base, doc in stats.items()}


def catchups(log_text: str) -> list[tuple[int, int, float]]:
    """(partition, records replayed, seconds) of every catch-up a node logged: what a
    rebalance cost it (kept partitions need none and log none)."""
    return [(int(p), int(n), float(sec)) for p, n, sec in re.findall(
        r"event=caught_up partition=(\d+) position=\d+ records=(\d+) seconds=([\d.]+)",
        log_text)]


def show(capsys: Any, artifacts: Any, text: str) -> None:
    """Print measured numbers to the terminal even when pytest captures output (so the
    run log shows them for passing tests too), and keep them in the test's artifacts
    folder (``numbers.txt``)."""
    with capsys.disabled():
        print(f"\n{text}", flush=True)
    with open(artifacts / "numbers.txt", "a") as f:
        f.write(text + "\n")
