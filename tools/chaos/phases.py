"""The phases of one chaos run (see harness.py for the order): start the nodes, seed
the keys, the workload and the prober, firing events and waiting for recovery, the
final verification. :class:`Run` holds what they share."""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tools.chaos.audit import as_applied
from tools.chaos.checker import Checker
from tools.chaos.cluster import Cluster, Member, State
from tools.chaos.history import History
from tools.chaos.isolation import cut_node
from tools.chaos.schedule import Event
from tools.chaos.slots import SlotProxies
from tools.chaos.traffic import READ_OK, Traffic
from tools.procs import wait_stable
from tools.topic import read_all

if TYPE_CHECKING:
    from tools.chaos.harness import ChaosConfig

log = logging.getLogger("chaos")

HOT_KEYS = 5
PROBE_CLIENTS = 1000  # history client ids of the probers (workload clients are 0..)


class Run:
    def __init__(self, cfg: ChaosConfig, cluster: Cluster, client: httpx.AsyncClient,
                 checker: Checker, history: History, proxies: SlotProxies | None = None,
                 *, timeout: float, bound: float) -> None:
        """``timeout``: the client timeout per request; ``bound``: the nodes' answer
        bound (harness.node_answer_bound)."""
        self.cfg = cfg
        self.cluster = cluster
        self.client = client
        self.checker = checker
        self.proxies = proxies
        self.t0 = history.t0
        self.traffic = Traffic(client, cluster, checker, random.Random(cfg.seed + 1),
                               timeout, self.t0, history, bound=bound)
        # Keys that also get deletes: every round(1/delete_keys)-th key (one hot key too).
        every = round(1 / cfg.delete_keys) if cfg.delete_keys > 0 else 0
        self.delete_keys = frozenset(k for i, k in enumerate(checker.keys)
                                     if every and i % every == every - 1)
        self.events: list[dict[str, Any]] = []
        self.part_keys: dict[int, list[str]] = {}
        self.chaos_start = 0.0
        self.chaos_end = 0.0
        self.stop_load = trio.Event()

    def rel(self, t: float) -> float:
        return round(t - self.t0, 3)

    # -- phase 1-2 ---------------------------------------------------------------
    async def start_nodes(self) -> None:
        for i in range(self.cfg.nodes):
            self.cluster.start(self.cluster.new_member(i))
        async with trio.open_nursery() as n:
            for m in list(self.cluster.members.values()):
                n.start_soon(self.cluster.wait_up, self.client, m, 90.0)
        up = self.cluster.up()
        if len(up) != self.cfg.nodes:
            raise RuntimeError(f"only {len(up)} of {self.cfg.nodes} nodes started: "
                               f"{self.checker.violations[-1:]}")
        await wait_stable(self.client, [m.node for m in up], self.cfg.partitions, timeout=90)

    async def seed(self) -> None:
        limiter = trio.CapacityLimiter(8)
        deadline = time.monotonic() + 120

        async def one(key: str) -> None:
            client = self.traffic.new_client()
            async with limiter:
                while time.monotonic() < deadline:
                    v = await self.traffic.write(key, "seed", client=client)
                    if v is not None and v.kind == "acked":
                        return
                    await trio.sleep(0.2)
                raise RuntimeError(f"seeding {key}: no write acknowledged in 120 s")

        async with trio.open_nursery() as n:
            for key in self.checker.keys:
                n.start_soon(one, key)
        for key in self.checker.keys:
            p = self.checker.partition_of(key)
            assert p is not None
            self.part_keys.setdefault(p, []).append(key)

    # -- background load -----------------------------------------------------------
    async def client_loop(self, i: int) -> None:
        rng = random.Random(self.cfg.seed * 1000 + i)
        interval = self.cfg.clients / self.cfg.rate
        nxt = time.monotonic()
        hot = self.checker.keys[:HOT_KEYS]
        while not self.stop_load.is_set():
            # a few hot keys make conditional writes race (412s) and reads meet writes
            key = rng.choice(hot if rng.random() < self.cfg.hot else self.checker.keys)
            if rng.random() < self.cfg.write_ratio and key not in self.traffic.writing:
                await self.one_write(rng, key, i)
            else:
                await self.traffic.read(key, "workload", client=i)
            nxt = max(nxt + interval, time.monotonic() - interval)
            await trio.sleep(max(0.0, nxt - time.monotonic()))

    async def one_write(self, rng: random.Random, key: str, client: int) -> None:
        """A put (on a delete key, a delete with ``delete_ratio``), conditional with
        ``cas``; half of the acknowledged ones read back at once."""
        delete = key in self.delete_keys and rng.random() < self.cfg.delete_ratio
        base = None
        if rng.random() < self.cfg.cas:
            # compare-and-set: If-Match the version a read just returned; a quarter of
            # the time a version already replaced (the owner must answer 412)
            base = self.traffic.old_etag.get(key) if rng.random() < 0.25 else None
            if base is None:
                r, base = await self.traffic.read_etag(key, "workload", client=client)
                # a deleted key has no version to match: write it unconditionally
                if base is None and r.kind != "ok_404":
                    return
        v = await self.traffic.write(key, "workload", if_match=base, delete=delete,
                                     client=client)
        if v is not None and v.kind == "acked" and rng.random() < self.cfg.read_back:
            # read-your-writes, through any node: the sharpest staleness test
            await self.traffic.read(key, "workload", client=client)

    async def probe_loop(self, partition: int) -> None:
        keys = self.part_keys[partition]
        i = 0
        while not self.stop_load.is_set():
            await self.traffic.read(keys[i % len(keys)], "probe",
                                    client=PROBE_CLIENTS + partition)
            i += 1
            await trio.sleep(self.cfg.probe_interval)

    async def crash_watch(self) -> None:
        while True:
            self.cluster.check_crashes()
            await trio.sleep(0.5)

    # -- events ----------------------------------------------------------------------
    async def fire(self, ev: Event, nursery: trio.Nursery) -> dict[str, Any]:
        rec: dict[str, Any] = {"index": ev.index, "kind": ev.kind, "label": ev.label,
                               "t_abs": time.monotonic()}
        c = self.cluster
        m: Member | None = c.members.get(ev.target)
        if ev.kind in ("kill9", "term", "remove", "pause", "cut"):
            if m is None or m.state != "up" or len(c.up()) < 2:
                return {**rec, "skipped": f"{ev.label}: target not up"}
            if ev.kind == "kill9":
                c.kill9(m)
            elif ev.kind == "pause":
                await c.pause(m, self.cfg.pause)
                rec["paused_s"] = self.cfg.pause
                # The moment it runs again it may still believe it owns partitions the
                # group gave away while it was frozen: read every key through it at once.
                rec["burst_reads"] = await self.burst(m)
            elif ev.kind == "cut":
                await cut_node(self, m, rec)
            else:
                final: State = "removed" if ev.kind == "remove" else "down"
                rec["exit_s"] = round(await c.term(m, final=final), 3)
        elif ev.kind in ("restart", "add"):
            if ev.kind == "add" and m is None:
                m = c.new_member(ev.target)
            if m is None or m.state != "down":
                return {**rec, "skipped": f"{ev.label}: target not stopped"}
            c.start(m)
            nursery.start_soon(c.wait_up, self.client, m, self.cfg.recover_timeout)
        elif ev.kind == "broker_kill":
            await c.kafka.broker_stop(ev.target)
        elif ev.kind == "broker_start":
            await c.kafka.broker_start(ev.target)
            rec["start_s"] = round(time.monotonic() - rec["t_abs"], 3)
        return rec

    async def recover(self, rec: dict[str, Any], deadline: float) -> None:
        """Wait until starting nodes are up, the group is stable over the up nodes and
        every key has been read correctly; record how long each took."""
        t_ev = rec["t_abs"]
        problem = None
        while any(m.state == "starting" for m in self.cluster.members.values()):
            if time.monotonic() > deadline:
                problem = "a started node is not ready"
                break
            await trio.sleep(0.1)
        if problem is None:
            try:
                await wait_stable(self.client, [m.node for m in self.cluster.up()],
                                  self.cfg.partitions,
                                  timeout=max(1.0, deadline - time.monotonic()))
                rec["stable_s"] = round(time.monotonic() - t_ev, 3)
            except AssertionError as exc:
                problem = f"group not stable: {str(exc)[:1500]}"
        if problem is None:
            missing = await self.sweep(deadline)
            if missing:
                problem = f"{len(missing)} keys not answering, e.g. {missing[:5]}"
            else:
                rec["all_keys_s"] = round(time.monotonic() - t_ev, 3)
        if problem is None and rec.get("kind") in ("cut", "pause"):
            # A node that was cut off or frozen may still hold what it had: every
            # acknowledged write must now be readable from every node.
            unanswered = await self.verify_everywhere(deadline)
            rec["verified_reads"] = len(self.cluster.up()) * len(self.checker.keys)
            if unanswered:
                problem = (f"reads after the event unanswered: {len(unanswered)}, "
                           f"e.g. {unanswered[:10]}")
        if problem is not None:
            rec["not_recovered"] = problem
            self.checker.violations.append({
                "kind": "not_recovered", "detail": f"{rec['label']}: {problem}",
                "t": self.rel(t_ev)})

    async def burst(self, m: Member) -> int:
        """Read every key through ``m``, 64 at a time; return how many were sent."""
        limiter = trio.CapacityLimiter(64)

        async def one(key: str) -> None:
            async with limiter:
                await self.traffic.read(key, "burst", member=m)  # one-off client ids

        async with trio.open_nursery() as n:
            for key in self.checker.keys:
                n.start_soon(one, key)
        return len(self.checker.keys)

    async def sweep(self, deadline: float) -> list[str]:
        """Read every key (through random up nodes) until each answered: correctly, or
        wrongly (a violation, recorded: asking again would only repeat it); return the
        keys that did not answer by ``deadline``."""
        pending = set(self.checker.keys)
        limiter = trio.CapacityLimiter(8)

        async def one(key: str) -> None:
            async with limiter:
                while time.monotonic() < deadline:
                    v = await self.traffic.read(key, "sweep")
                    if v.kind in READ_OK or v.violation:
                        pending.discard(key)
                        return
                    await trio.sleep(0.2)

        async with trio.open_nursery() as n:
            for key in self.checker.keys:
                n.start_soon(one, key)
        return sorted(pending)

    async def chaos(self, schedule: list[Event]) -> None:
        self.chaos_start = time.monotonic()
        end = self.chaos_start + self.cfg.duration
        async with trio.open_nursery() as n:
            for i in range(self.cfg.clients):
                n.start_soon(self.client_loop, i)
            for p in sorted(self.part_keys):
                n.start_soon(self.probe_loop, p)
            prev = self.chaos_start
            ready_at = self.chaos_start
            for ev in schedule:
                at = max(prev + ev.gap, ready_at + 2.0)
                if at > end and not self.cfg.events:
                    break  # forced events (--events) all fire: duration is the least
                await trio.sleep(max(0.0, at - time.monotonic()))
                log.info("t=%.1f event %s", at - self.chaos_start, ev.label)
                rec = await self.fire(ev, n)
                if "skipped" not in rec:
                    # from the end of the event (a pause or a cut lasts seconds itself)
                    await self.recover(rec, time.monotonic() + self.cfg.recover_timeout)
                log.info("t=%.1f event %s done: %s", time.monotonic() - self.chaos_start,
                         ev.label, {k: v for k, v in rec.items() if k != "t_abs"})
                self.events.append(rec)
                prev = rec["t_abs"]
                ready_at = time.monotonic()
            await trio.sleep(max(0.0, end - time.monotonic()))
            self.stop_load.set()
        self.chaos_end = time.monotonic()
        self.traffic.avail.close(self.chaos_end)

    # -- phase 4 ---------------------------------------------------------------------
    async def verify_everywhere(self, deadline: float, source: str = "verify",
                                closing: bool = False) -> list[str]:
        """Read every key from every up node until it answers (a wrong answer is a
        violation, judged as final: STALE and SPURIOUS_404 are LOST_WRITE); return the
        reads still unanswered at ``deadline``. ``closing``: the final verification,
        whose answers the audit compares with the topic's last records."""
        limiter = trio.CapacityLimiter(8)
        unanswered: list[str] = []

        async def one(m: Member, key: str) -> None:
            client = self.traffic.new_client()
            async with limiter:
                while True:
                    v = await self.traffic.read(key, source, member=m, final=True,
                                                client=client, closing=closing)
                    if v.kind in READ_OK or v.violation:  # a violation is recorded
                        return
                    if time.monotonic() > deadline:
                        unanswered.append(f"{m.name}:{key}:{v.kind}")
                        return
                    await trio.sleep(0.2)

        async with trio.open_nursery() as n:
            for m in self.cluster.up():
                for key in self.checker.keys:
                    n.start_soon(one, m, key)
        return unanswered

    async def final_check(self) -> dict[str, Any]:
        t = time.monotonic()
        deadline = t + self.cfg.recover_timeout
        rec: dict[str, Any] = {"label": "final", "t_abs": t}
        await self.recover(rec, deadline)
        unanswered = await self.verify_everywhere(deadline, "final", closing=True)
        if unanswered:
            self.checker.violations.append({
                "kind": "not_recovered",
                "detail": f"final reads unanswered: {len(unanswered)}, e.g. {unanswered[:10]}",
                "t": self.rel(t)})
        rec["nodes"] = [m.name for m in self.cluster.up()]
        rec["reads"] = len(self.cluster.up()) * len(self.checker.keys)
        rec["seconds"] = round(time.monotonic() - t, 3)
        return rec

    async def audit_topic(self) -> dict[str, Any]:
        """Read the whole topic from Kafka and let the checker judge it (lost, phantom,
        duplicated and late writes, whether or not a reader saw them; the answers only
        writes of unknown fate excused; what the final reads served)."""
        t = time.monotonic()
        raw = await read_all(self.cluster.kafka.bootstrap, self.cluster.topic,
                             partitions=self.cfg.partitions, within=120.0)
        by_key, compacted, not_applied = as_applied(raw, self.cfg.partitions,
                                                    set(self.checker.keys))
        verdicts = self.checker.audit(dict(by_key), compacted)
        for v in verdicts:
            self.checker.record(v, source="audit")
        return {"records": sum(len(r) for r in raw.values()),
                "chaos_key_records": sum(len(r) for r in by_key.values()),
                "compacted_partitions": sorted(compacted), "violations": len(verdicts),
                "not_applied": dict(not_applied),
                "seconds": round(time.monotonic() - t, 3)}
