"""The write floor: what the node's own producer achieves alone on this machine and
broker, in the same run as kstate's PUT rows.

``NodeProducer`` (kstate/bridge/producer.py: acks=all, idempotent, linger 0, one record
per call, the node's codec) runs in a plain asyncio process: no trio, no thread
crossing, no HTTP, no apply. A PUT acknowledged after apply cannot be faster than this,
so the bench prints PUT / floor next to the PUT goals: how much of a PUT's time is
kstate's and how much is the produce round trip the machine allows.

Run by the bench as a child process, one per concurrency, on a topic of its own::

    python -m tools.bench.write_floor --bootstrap B --topic T --partitions P \\
        --connections C --seconds S --warmup W

prints one JSON line: requests, seconds, rps, p50_ms, p99_ms, cpu_share (the process's
CPU seconds per second while measuring).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import trio

from kstate.bridge import KafkaConfig
from kstate.bridge.producer import NodeProducer
from tools.bench.load import email_of, partition_of, value_of
from tools.bench.tools import Load, quantile

KEYS = 10_000  # distinct keys written, round robin per connection
REPO = Path(__file__).resolve().parents[2]


async def run(bootstrap: str, topic: str, partitions: int, load: Load) -> dict[str, Any]:
    """(the bench, trio) One floor run in a child process, at ``load``'s concurrency
    and duration; its JSON line."""
    argv = [sys.executable, "-m", "tools.bench.write_floor", "--bootstrap", bootstrap,
            "--topic", topic, "--partitions", str(partitions),
            "--connections", str(load.connections), "--seconds", str(load.seconds),
            "--warmup", str(load.warmup)]
    with trio.fail_after(load.seconds + load.warmup + 60):
        res = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                     check=False, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"write floor exited {res.returncode}: "
                           f"{res.stderr.decode(errors='replace')[-2000:]}")
    out: dict[str, Any] = json.loads(res.stdout.decode().strip().splitlines()[-1])
    return out


async def measure(config: KafkaConfig, connections: int, seconds: float,
                  warmup: float) -> dict[str, float | int]:
    producer = NodeProducer(config)
    await producer.start()
    latencies: list[float] = []
    measuring = False
    stop = False

    async def one(conn: int) -> None:
        i = conn
        while not stop:
            email = email_of(i % KEYS)
            key = email.encode()
            t0 = time.perf_counter()
            await producer.produce(partition_of(key, config.partitions), key,
                                   value_of(i, email), ())
            if measuring:
                latencies.append(time.perf_counter() - t0)
            i += connections

    tasks = [asyncio.create_task(one(c)) for c in range(connections)]
    try:
        await asyncio.sleep(warmup)
        measuring = True
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        measuring = False
        cpu1, t1 = time.process_time(), time.monotonic()
        stop = True
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await producer.stop()
    elapsed = t1 - t0
    latencies.sort()
    if not latencies:
        raise RuntimeError("no produce was acknowledged while measuring")
    return {"connections": connections, "requests": len(latencies),
            "seconds": round(elapsed, 3), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(quantile(latencies, 0.50) * 1e3, 3),
            "p99_ms": round(quantile(latencies, 0.99) * 1e3, 3),
            "cpu_share": round((cpu1 - cpu0) / elapsed, 3)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.write_floor")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    args = p.parse_args(argv)
    config = KafkaConfig(bootstrap=args.bootstrap, topic=args.topic,
                         partitions=args.partitions)
    out = asyncio.run(measure(config, args.connections, args.seconds, args.warmup))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
