"""The seeded event schedule: which fault happens next, to whom, and after what pause.

The plan is a pure function of (seed, options): :func:`plan` simulates which nodes and
brokers are up so every event is possible when it fires (a restart needs a stopped
node, at least one node stays up, in cluster mode at most one broker is down). The
harness fires event ``i`` ``gap`` seconds after event ``i-1``, or once the cluster has
recovered from it, whichever is later.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["kill9", "term", "restart", "add", "remove", "pause", "cut", "broker_kill",
               "broker_start"]
KINDS: tuple[Kind, ...] = ("kill9", "term", "restart", "add", "remove", "pause", "cut",
                           "broker_kill", "broker_start")

# Relative weights when the kind is free to choose. ``pause`` (SIGSTOP for longer than
# the session timeout, then SIGCONT: a node that wakes up as a zombie owner) is only
# drawn with ``pauses=True`` or forced; ``cut`` (the node's Kafka connections blackholed
# past the session timeout while clients still reach it, then healed) only with
# ``netcuts=True`` or forced.
WEIGHTS: dict[Kind, float] = {"kill9": 3.0, "term": 3.0, "restart": 4.0, "add": 1.5,
                              "remove": 1.0, "pause": 2.0, "cut": 2.0, "broker_kill": 2.5,
                              "broker_start": 5.0}


@dataclass(frozen=True, slots=True)
class Event:
    index: int
    kind: Kind
    target: int  # node index (n0, n1, ...) or broker number 1..3
    gap: float  # seconds after the previous event (or after the start of the chaos)

    @property
    def label(self) -> str:
        who = f"broker{self.target}" if self.kind.startswith("broker") else f"n{self.target}"
        return f"{self.kind}:{who}"


@dataclass
class _Sim:
    up: list[int]
    stopped: list[int]  # may be restarted
    next_node: int
    brokers_down: list[int]
    max_nodes: int

    def choices(self, cluster: bool, pauses: bool, netcuts: bool) -> dict[Kind, list[int]]:
        out: dict[Kind, list[int]] = {}
        if len(self.up) >= 2:
            out["kill9"] = sorted(self.up)
            out["term"] = sorted(self.up)
            if pauses:
                out["pause"] = sorted(self.up)
            if netcuts:
                out["cut"] = sorted(self.up)
            if len(self.up) + len(self.stopped) > 2:
                out["remove"] = sorted(self.up)
        if self.stopped:
            out["restart"] = sorted(self.stopped)
        if len(self.up) < self.max_nodes:
            out["add"] = [self.next_node]
        if cluster:
            if not self.brokers_down:
                out["broker_kill"] = [1, 2, 3]
            else:
                out["broker_start"] = sorted(self.brokers_down)
        return out

    def apply(self, kind: Kind, target: int) -> None:
        if kind in ("kill9", "term"):
            self.up.remove(target)
            self.stopped.append(target)
        elif kind == "remove":
            self.up.remove(target)
        elif kind == "restart":
            self.stopped.remove(target)
            self.up.append(target)
        elif kind == "add":
            self.up.append(target)
            self.next_node += 1
        elif kind == "broker_kill":
            self.brokers_down.append(target)
        elif kind == "broker_start":
            self.brokers_down.remove(target)


def _weight(kind: Kind, up: int, nodes: int) -> float:
    """Drift back toward ``nodes`` nodes up: stops weigh less below it, starts more."""
    if kind in ("kill9", "term", "remove"):
        return WEIGHTS[kind] * 2.0 ** (up - nodes)
    if kind in ("restart", "add"):
        return WEIGHTS[kind] * 2.0 ** (nodes - up)
    return WEIGHTS[kind]


def plan(seed: int, *, nodes: int, duration: float, cluster: bool,
         gap: tuple[float, float] = (15.0, 25.0), forced: Sequence[Kind] = (),
         max_nodes: int | None = None, pauses: bool = False, netcuts: bool = False
         ) -> list[Event]:
    """Events whose gaps add up to at most ``duration``. With ``forced``, exactly those
    kinds in that order, however long they take (targets still chosen by the seed;
    ValueError if impossible)."""
    rng = random.Random(seed)
    sim = _Sim(up=list(range(nodes)), stopped=[], next_node=nodes, brokers_down=[],
               max_nodes=max_nodes if max_nodes is not None else nodes + 2)
    events: list[Event] = []
    elapsed = 0.0
    while True:
        if forced and len(events) == len(forced):
            break
        pause = round(rng.uniform(*gap), 1)
        if elapsed + pause > duration and not forced:
            break
        elapsed += pause
        options = sim.choices(cluster, pauses or "pause" in forced,
                              netcuts or "cut" in forced)
        if forced:
            kind = forced[len(events)]
            if kind not in options:
                raise ValueError(f"event {len(events)} {kind!r} is impossible here "
                                 f"(up={sim.up}, stopped={sim.stopped})")
        else:
            kinds = sorted(options)
            kind = rng.choices(kinds, weights=[_weight(k, len(sim.up), nodes)
                                               for k in kinds])[0]
        target = rng.choice(options[kind])
        sim.apply(kind, target)
        events.append(Event(len(events), kind, target, pause))
    return events


def parse_kinds(text: str) -> list[Kind]:
    out: list[Kind] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part not in KINDS:
            raise ValueError(f"unknown event kind {part!r} (known: {', '.join(KINDS)})")
        out.append(next(k for k in KINDS if k == part))
    return out


def slots_needed(events: Sequence[Event], nodes: int) -> int:
    """Proxy slots a schedule needs: one per node position (n<i> uses slot i+1) if any
    event cuts a node off, else none (nodes then talk to Kafka directly)."""
    if not any(e.kind == "cut" for e in events):
        return 0
    return max([nodes - 1] + [e.target for e in events if e.kind == "add"]) + 1
