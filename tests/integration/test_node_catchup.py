"""Issue 3: the startup catch-up gate. 100k users are in the topic before the node
starts; GETs of existing keys hammer it from before it listens until after it is
ready: every answer is 200 with the right value or 503 + Retry-After, never a 404.
Then kill -9, restart, same check, and all the data (including REST writes and
deletes made before the kill) is back."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import trio

from tools import topic as load
from tools.procs import Node, wait_ready

N = 100_000
READERS = 6


@dataclass
class Tally:
    ok: int = 0
    unavailable: Counter[str] = field(default_factory=Counter)
    not_listening: int = 0
    bad: list[tuple[str, int, str]] = field(default_factory=list)
    first_ok: float | None = None

    @property
    def answers(self) -> int:
        return self.ok + sum(self.unavailable.values()) + len(self.bad)


async def hammer(client: httpx.AsyncClient, node: Node, expected: dict[str, bytes],
                 keys: list[str], stop: trio.Event, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        email = rng.choice(keys)
        try:
            r = await client.get(f"{node.base}/users/{email}", timeout=15)
        except httpx.ConnectError:
            tally.not_listening += 1
            await trio.sleep(0.02)
            continue
        except httpx.HTTPError as exc:  # a reset or a hang is a failure, not a refusal
            tally.bad.append((email, -1, repr(exc)))
            continue
        if r.status_code == 200 and r.content == expected[email]:
            tally.ok += 1
            if tally.first_ok is None:
                tally.first_ok = time.monotonic()
        elif (r.status_code == 503 and r.headers.get("retry-after", "").isdigit()
              and r.headers["content-type"].startswith("application/json")):
            tally.unavailable[r.json()["error"]] += 1
        else:
            tally.bad.append((email, r.status_code, r.text[:200]))


async def start_and_hammer(client: httpx.AsyncClient, node: Node, expected: dict[str, bytes],
                           keys: list[str], seed: int) -> tuple[Tally, dict, float]:
    """Start the node with readers already running; stop them 1 s after /readyz is 200.
    Returns the tally, the /readyz body and the seconds from start to ready."""
    tally = Tally()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for i in range(READERS):
            nursery.start_soon(hammer, client, node, expected, keys, stop, tally, seed + i)
        await trio.sleep(0.2)  # readers are knocking before the node exists
        started = time.monotonic()
        node.start()
        ready = await wait_ready(client, node, timeout=90)
        ready_after = time.monotonic() - started
        await trio.sleep(1.0)
        stop.set()
    return tally, ready, ready_after


def replay_seconds(ready: dict) -> float:
    return max(p["catchup_seconds"] or 0.0 for p in ready["partitions"].values())


def replay_rate(ready: dict) -> int:
    records = sum(p["target"] for p in ready["partitions"].values())
    return round(records / replay_seconds(ready))


async def test_no_404_during_startup_and_restart_replay(make_node, client, kafka_bootstrap,
                                                        names, artifacts):
    loaded = await load.produce(kafka_bootstrap, names["topic"], load.users(N))
    assert loaded.records == N
    expected = {load.email_of(i): load.user_bytes(load.email_of(i), f"Name {i}")
                for i in range(N)}
    keys = list(expected)

    # -- first start: default catch-up timeout (reads wait on the gate) ------------------
    node = make_node(start=False)
    first, ready, first_ready_after = await start_and_hammer(client, node, expected, keys, 1)
    assert first.bad == [], first.bad[:10]
    assert first.ok > 0
    assert set(first.unavailable) <= {"no_owner", "catching_up", "rebalancing"}, first
    assert ready["invalid_records"] == 0
    assert sum(p["keys"] for p in ready["partitions"].values()) == N
    for p, stats in ready["partitions"].items():
        assert stats["caught_up"], (p, stats)
        assert stats["lag"] == 0, (p, stats)
        # at or past the target: the owner's claim marker follows the catch-up target
        assert stats["position"] >= stats["target"] > 0
    first_replay, first_rate = replay_seconds(ready), replay_rate(ready)

    # -- REST writes and deletes, then kill -9 -------------------------------------------
    rng = random.Random(7)
    sample = rng.sample(range(N), 300)
    changed, deleted = sample[:150], sample[150:]
    for i in changed:
        email = load.email_of(i)
        r = await client.put(f"{node.base}/users/{email}", json={"name": f"Changed {i}"})
        assert r.status_code == 200, r.text
        expected[email] = load.user_bytes(email, f"Changed {i}")
    for i in deleted:
        email = load.email_of(i)
        r = await client.delete(f"{node.base}/users/{email}")
        assert r.status_code == 204, r.text
        del expected[email]
    keys = list(expected)
    node.kill()
    assert not node.alive()

    # -- restart with a short gate, so reads during the replay get 503, never 404 -------
    node.extra["KSTATE_CATCHUP_TIMEOUT"] = "0.2"
    second, ready, second_ready_after = await start_and_hammer(client, node, expected, keys, 2)
    assert second.bad == [], second.bad[:10]
    assert second.ok > 0
    assert set(second.unavailable) <= {"no_owner", "catching_up", "rebalancing"}, second
    assert second.unavailable["catching_up"] > 0, second  # the gate really was hit
    assert sum(p["keys"] for p in ready["partitions"].values()) == N - len(deleted)

    # all data back: every changed and deleted key, and a sample of the rest
    for i in changed + rng.sample(range(N), 1000):
        email = load.email_of(i)
        r = await client.get(f"{node.base}/users/{email}")
        if email in expected:
            assert r.status_code == 200, (email, r.status_code, r.text)
            assert r.content == expected[email]
        else:
            assert r.status_code == 404
    for i in deleted:
        r = await client.get(f"{node.base}/users/{load.email_of(i)}")
        assert r.status_code == 404

    numbers = {
        "records": N,
        "load_seconds": round(loaded.seconds, 3),
        "load_records_per_s": round(loaded.rate),
        "first": {"ready_after_s": round(first_ready_after, 3),
                  "replay_s": first_replay, "replay_records_per_s": first_rate,
                  "ok": first.ok, "503": dict(first.unavailable),
                  "not_listening": first.not_listening},
        "restart": {"ready_after_s": round(second_ready_after, 3),
                    "replay_s": replay_seconds(ready),
                    "replay_records_per_s": replay_rate(ready),
                    "ok": second.ok, "503": dict(second.unavailable),
                    "not_listening": second.not_listening},
    }
    (artifacts / "catchup-numbers.json").write_text(json.dumps(numbers, indent=2))
    print("catch-up numbers:", json.dumps(numbers))
