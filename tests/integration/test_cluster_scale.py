"""Issue 4: scale out 1 -> 2 -> 3 and in 3 -> 2 under a continuous read loop.

Readers hit random live nodes with GETs of known keys the whole time, and one slow
writer keeps overwriting some of them (so "right value" includes writes acknowledged
during the moves). Allowed: 200 with the acknowledged value, 503 with Retry-After.
Not allowed, ever: a 404 for an existing key, a stale value, any other 5xx, a
connection error to a node that is up.
"""

from __future__ import annotations

import random
import re
import signal
import time

import trio

from tests.support.workload import (
    Workload,
    catchups,
    load_users,
    show,
    sweep,
    wait_listening,
)
from tools.procs import Node, wait_ready, wait_stable

PARTITIONS = 10


def modes(node: Node, start_mark: int) -> dict[str, int]:
    text = node.log_text()[start_mark:]
    return {m: len(re.findall(rf"event=partition_assigned partition=\d+ mode={m}", text))
            for m in ("keep", "rebuild")}


async def test_scale_out_1_2_3_and_in_3_2_under_reads(make_node, client, capsys, artifacts):
    n1 = make_node()
    await wait_ready(client, n1)
    await wait_stable(client, [n1], PARTITIONS)
    wl = Workload(client, rng=random.Random(123))
    emails = [f"scale{i}@scale.example" for i in range(200)]
    await load_users(wl, [n1.base], emails, name="Scale")

    live: list[Node] = [n1]
    phases: list[tuple[str, float, dict[str, int], dict[str, int]]] = []
    stop = trio.Event()

    log_marks: dict[str, int] = {n1.url: len(n1.log_text())}

    async def phase(name: str, t0: float, members: list[Node]) -> None:
        table = await wait_stable(client, members, PARTITIONS, timeout=90)
        seconds = time.monotonic() - t0
        assert set(table.values()) == {n.url for n in members}
        await trio.sleep(1.0)  # steady state under load: still nothing bad
        # what this rebalance replayed: the catch-ups each member logged since the last
        replay = {}
        for n in members:
            text = n.log_text()
            replay[n.url] = sum(r for _, r, _ in catchups(text[log_marks.get(n.url, 0):]))
            log_marks[n.url] = len(text)
        phases.append((name, round(seconds, 2), replay, dict(wl.counts)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: wl.read_loop(lambda: [n.base for n in live], stop,
                                                readers=4, pause=0.005, keys=emails))
        nursery.start_soon(lambda: wl.write_loop(lambda: [n.base for n in live], stop,
                                                 emails[:40], pause=0.05))
        await trio.sleep(1.0)

        n2 = make_node()
        t0 = time.monotonic()
        await wait_listening(client, n2.base)
        live.append(n2)
        await phase("1->2", t0, [n1, n2])

        n3 = make_node()
        t0 = time.monotonic()
        await wait_listening(client, n3.base)
        live.append(n3)
        await phase("2->3", t0, [n1, n2, n3])

        mark = {n.url: len(n.log_text()) for n in (n1, n2)}
        live.remove(n3)
        t0 = time.monotonic()
        n3.signal(signal.SIGTERM)
        assert await n3.wait_exit(30) == 0, n3.log_text()[-3000:]
        await phase("3->2", t0, [n1, n2])
        stop.set()

    # After the dust settles every key answers its last acknowledged value everywhere.
    await sweep(wl, [n1.base, n2.base])
    lines = [f"scale: {wl.summary()}"]
    prev: dict[str, int] = {}
    for name, seconds, rep, counts in phases:
        delta = {k: counts.get(k, 0) - prev.get(k, 0) for k in counts}
        prev = counts
        lines.append(f"  {name}: stable after {seconds}s; records replayed to catch up "
                     f"{rep}; reads {delta}")
        # reads went on through every phase (the test watched the moves, not a gap)
        assert delta.get("ok", 0) > 20, (name, delta)
    lines.append(f"  3->2 assignment modes on survivors: "
                 f"{ {n.url: modes(n, mark[n.url]) for n in (n1, n2)} }")
    lines += [f"  not-ok window at t={w[0]}s for {w[1]}s ({w[2]} reads)"
              for w in wl.unavailable_windows()]
    show(capsys, artifacts, "\n".join(lines))
    assert wl.bad() == {}, wl.report()
    acked = wl.write_counts["200"] + wl.write_counts["201"]
    assert acked > 20, wl.write_counts
    # the 503s the load saw are the only refusals, and they all carried Retry-After
    # node_down: a read in flight to the node being SIGTERMed when it closed its
    # connections (keep-alive race at shutdown); errors from live nodes still fail.
    assert set(wl.counts) <= {"ok", "unavailable", "node_down"}, wl.summary()
