"""The ``cut`` event: one node loses Kafka (its netcut proxies blackhole every byte, both
ways, without closing anything) for longer than the session timeout, while clients keep
reaching it over HTTP; then the network heals.

What the harness does meanwhile, besides the ordinary workload (which keeps sending to
the isolated node: it stays ``up``):
- *zombie writes*: conditional writes of the isolated node's keys sent *through it*
  (If-Match the version it just answered). Its producer cannot reach Kafka, so they
  hang; they must not land later over writes the others acknowledged meanwhile.
- *cross traffic*: once the other nodes' routing table no longer names the isolated node
  for its partitions (the takeover: about a session timeout after the cut), writes of
  its keys through the other nodes, each acknowledged write read back at once *through
  the isolated node*: a node cut off from Kafka that answers from memory after another
  node took over answers stale. (Before the takeover such writes would only be forwarded
  to the isolated node and hang there, like the zombie writes.)
Every request goes through Traffic, so the checker judges it and the history records
it. After the heal the harness waits for recovery and reads every key from every node
(phases.Run.verify_everywhere).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tools.chaos.cluster import Member

if TYPE_CHECKING:
    from tools.chaos.phases import Run

log = logging.getLogger("chaos")

ZOMBIE_LOOPS = 2
CROSS_LOOPS = 4
CUT_CLIENTS = 2000  # history client ids of the cut's tasks


async def routing_table(run: Run, via: Member) -> dict[int, str]:
    """Partition -> owner url as ``via``'s /groupinfo says (empty if it does not answer)."""
    try:
        r = await run.client.get(f"{via.node.base}/groupinfo", timeout=3)
        table = r.json()
        return {int(name.rsplit("-", 1)[1]): str(url) for name, url in table.items()}
    except (httpx.HTTPError, ValueError, AttributeError):  # no table: nothing known
        return {}


async def owned_partitions(run: Run, m: Member) -> list[int]:
    """The partitions ``m``'s own routing table gives it."""
    return sorted(p for p, url in (await routing_table(run, m)).items() if url == m.node.url)


async def cut_node(run: Run, m: Member, rec: dict[str, Any]) -> None:
    """Cut ``m`` off from Kafka for ``run.cfg.cut_for`` seconds, with zombie writes and
    cross traffic, then heal (also when cancelled or failing)."""
    proxies = run.proxies
    assert proxies is not None, "cut needs the netcut proxies"
    slot = m.index + 1
    owned = await owned_partitions(run, m)
    keys = [k for p in owned for k in run.part_keys.get(p, [])]
    rec["cut_partitions"] = owned
    counts: Counter[str] = Counter()
    rng = random.Random(run.cfg.seed * 7919 + rec["index"])
    stop = trio.Event()
    taken = trio.Event()
    t0 = time.monotonic()
    await proxies.cut(slot)
    m.isolated = True
    try:
        async with trio.open_nursery() as n:
            if keys:
                n.start_soon(_watch_takeover, run, m, owned, taken, rec, t0)
                for i in range(ZOMBIE_LOOPS):
                    n.start_soon(_zombies, run, m, keys, stop, rng, CUT_CLIENTS + i, counts)
                for i in range(CROSS_LOOPS):
                    n.start_soon(_cross, run, m, keys, stop, taken, rng,
                                 CUT_CLIENTS + ZOMBIE_LOOPS + i, counts)
            await trio.sleep(run.cfg.cut_for)
            with trio.CancelScope(shield=True):
                await proxies.heal(slot)
            m.isolated = False
            rec["cut_s"] = round(time.monotonic() - t0, 3)
            log.info("t=%.1f healed %s after %.1f s", time.monotonic() - run.chaos_start,
                     m.name, rec["cut_s"])
            stop.set()
            taken.set()  # release cross loops still waiting for a takeover
    finally:
        if m.isolated:
            with trio.CancelScope(shield=True):
                await proxies.heal(slot)
            m.isolated = False
    rec["cut_traffic"] = dict(sorted(counts.items()))


async def _zombies(run: Run, m: Member, keys: list[str], stop: trio.Event,
                   rng: random.Random, client: int, counts: Counter[str]) -> None:
    """Conditional writes through the isolated node, If-Match what it just answered."""
    t = run.traffic
    while not stop.is_set():
        key = rng.choice(keys)
        v, etag = await t.read_etag(key, "cut", member=m, client=client)
        counts[f"isolated_read:{v.kind}"] += 1
        if etag is not None and m.state == "up":
            w = await t.write(key, "cut", if_match=etag, member=m, client=client)
            if w is not None:
                counts[f"isolated_write:{w.kind}"] += 1
        await trio.sleep(0.5)


async def _watch_takeover(run: Run, m: Member, owned: list[int], taken: trio.Event,
                          rec: dict[str, Any], t0: float) -> None:
    """Set ``taken`` once another node's routing table gives none of ``owned`` to ``m``."""
    while not taken.is_set():
        others = [o for o in run.cluster.up() if o is not m]
        for o in others:
            table = await routing_table(run, o)
            if all(table.get(p) not in (None, m.node.url) for p in owned):
                rec["takeover_s"] = round(time.monotonic() - t0, 3)
                log.info("t=%.1f the others took %s's partitions %.1f s after the cut",
                         time.monotonic() - run.chaos_start, m.name, rec["takeover_s"])
                taken.set()
                return
        await trio.sleep(0.2)


async def _cross(run: Run, m: Member, keys: list[str], stop: trio.Event, taken: trio.Event,
                 rng: random.Random, client: int, counts: Counter[str]) -> None:
    """After the takeover: writes of the isolated node's keys through the others, read
    back through it."""
    t = run.traffic
    await taken.wait()
    while not stop.is_set():
        key = rng.choice(keys)
        w = await t.write(key, "cut", avoid=m, client=client)
        if w is None:
            await trio.sleep(0.05)
            continue
        counts[f"other_write:{w.kind}"] += 1
        if w.kind == "acked" and m.state == "up":
            v = await t.read(key, "cut", member=m, client=client)
            counts[f"isolated_read:{v.kind}"] += 1
        else:
            await trio.sleep(0.1)
