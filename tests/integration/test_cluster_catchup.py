"""Issue 4: a partition large enough that replay takes seconds moves to a new owner.

~200k records in one partition (50k users written four times, 1k of them deleted at
the end), produced through the project's Kafka bridge. Node A rebuilds it; then node
B joins and the big partition moves to B (the sticky plan gives a newcomer the highest
partitions; if it did not, A is stopped so B takes everything). While B replays, GETs
of that partition's keys through both nodes wait at B's catch-up gate and then answer
the last value (or 503 + Retry-After after the catch-up timeout) — never a 404 for an
existing key, never an older version. Deleted keys answer a true 404 afterwards.
"""

from __future__ import annotations

import random
import signal
import time

import httpx
import trio

from kstate.bridge.tooling import open_tooling
from kstate.settings import Settings
from tests.support.owners import emails_in
from tests.support.workload import Workload, readiness, show, sweep, user_value, wait_listening
from tools.procs import Node, wait_ready, wait_stable

PARTITIONS = 10
BIG = PARTITIONS - 1
USERS = 50_000
VERSIONS = 4
DELETED = 1_000
CHUNK = 5_000


def keys_of_partition(partition: int, n: int) -> list[str]:
    return emails_in(partition, PARTITIONS, n, "big", "catchup.example")


async def produce_big_partition(bootstrap: str, names: dict[str, str], wl: Workload
                                ) -> tuple[int, float]:
    """Write the big partition; fill ``wl.known``. Returns (records, seconds)."""
    settings = Settings(bootstrap=bootstrap, topic=names["topic"], group=names["group"],
                        partitions=PARTITIONS)
    emails = keys_of_partition(BIG, USERS)
    t0 = time.monotonic()
    records = 0
    async with open_tooling(settings.kafka()) as bridge:
        info = await bridge.ensure_topic()
        assert info.partitions == PARTITIONS
        for version in range(VERSIONS):
            for i in range(0, USERS, CHUNK):
                batch = [(BIG, e.encode(), user_value(e, f"Big {version}"))
                         for e in emails[i:i + CHUNK]]
                offsets = await bridge.produce_many(batch)
                records += len(batch)
                for (_, key, value), off in zip(batch, offsets, strict=True):
                    wl.seed(key.decode(), value, f'"{BIG}-{off}"')
        tombstones = [(BIG, e.encode(), None) for e in emails[:DELETED]]
        await bridge.produce_many(tombstones)
        records += len(tombstones)
        for e in emails[:DELETED]:
            wl.seed(e, None)
    return records, time.monotonic() - t0


async def test_new_owner_of_200k_partition_waits_then_answers(make_node, client, kafka_bootstrap,
                                                              names, capsys, artifacts):
    t_start = time.monotonic()
    wl = Workload(client, rng=random.Random(200))
    records, produce_seconds = await produce_big_partition(kafka_bootstrap, names, wl)
    sample = random.Random(7).sample([k for k, e in wl.known.items() if e.value], 1500)
    sample += [k for k, e in wl.known.items() if e.value is None][:100]

    a = make_node()
    await wait_ready(client, a, timeout=180)
    a_stats = (await readiness(client, [a.base]))[a.base]["partitions"][str(BIG)]
    assert a_stats["position"] >= records
    got = await sweep(wl, [a.base], sample)
    assert dict(got) == {"ok": len(sample)}, wl.report()

    live = [a.base]
    stop = trio.Event()
    window: dict[str, float] = {}  # when B served BIG not caught up, and caught up
    b_caught_up = trio.Event()
    b: Node | None = None

    async def watch_b() -> None:
        while "caught_up" not in window:
            if b is not None:
                try:
                    doc = (await client.get(f"{b.base}/readyz", timeout=2)).json()
                    part = doc["partitions"].get(str(BIG))
                    if part and part["serving"]:
                        window.setdefault("assigned", time.monotonic())
                        if part["caught_up"]:
                            window["caught_up"] = time.monotonic()
                            b_caught_up.set()
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: wl.read_loop(lambda: live, stop, readers=4, pause=0.01,
                                                keys=sample))
        nursery.start_soon(watch_b)
        b = make_node()
        await wait_listening(client, b.base)
        live.append(b.base)
        table = await wait_stable(client, [a, b], PARTITIONS, timeout=180)
        moved_by = "rebalance"
        if table[f"{names['topic']}-{BIG}"] != b.url:
            moved_by = "stopping A"
            live.remove(a.base)
            a.signal(signal.SIGTERM)
            await wait_stable(client, [b], PARTITIONS, timeout=180)
        with trio.fail_after(180):
            await b_caught_up.wait()
        await trio.sleep(1.0)
        stop.set()

    b_stats = (await readiness(client, [b.base]))[b.base]["partitions"][str(BIG)]
    # Reads in flight while B caught up: started before it was done and ended after
    # B was assigned. (Not only those that *started* in the window: a read that
    # reached B while B still had no table waits for it, then at the gate, and may be
    # all four readers' read for the whole of a short catch-up.)
    during = [(at - secs, outcome, secs) for at, outcome, secs in wl.timeline
              if at - secs <= window["caught_up"] and at >= window["assigned"]]
    waited = [s for _, o, s in during if o == "ok"]
    show(capsys, artifacts,
         f"catch-up: produced {records} records in {produce_seconds:.1f}s; "
         f"A replayed {a_stats['replayed']} in {a_stats['catchup_seconds']}s; "
         f"moved to B by {moved_by}; B replayed {b_stats['replayed']} records in "
         f"{b_stats['catchup_seconds']}s (position {b_stats['position']}); "
         f"{len(during)} reads in flight during B's catch-up: {len(waited)} waited and "
         f"answered (longest {max(waited, default=0):.2f}s), "
         f"{sum(1 for _, o, _ in during if o == 'unavailable')} got 503; {wl.summary()}; "
         f"test ran {time.monotonic() - t_start:.0f}s")
    assert wl.bad() == {}, wl.report()
    assert b_stats["replayed"] >= records - DELETED  # rebuilt from the beginning
    assert b_stats["catchup_seconds"] is not None
    assert during, "no read hit B's catch-up window: the test proved nothing"
    # after the move, every sampled key is right through every live node
    got = await sweep(wl, live, sample)
    assert dict(got) == {"ok": len(sample) * len(live)}, wl.report()
