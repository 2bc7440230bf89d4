"""``python -m tools.chaos [--duration S] [--nodes N] [--seed X] [--mode single|cluster]
[--clients C] [--keys K] [--netcut] [--pauses] [--out FILE] ...``: one chaos run; prints
the summary table (both checkers' verdicts), writes the JSON results and the history,
exits 1 on any violation or a checker's violation (2 on a harness error)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from tools.chaos.harness import ChaosConfig, run_chaos, schedule_of
from tools.chaos.report import format_summary
from tools.chaos.schedule import parse_kinds


def _gap(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    return float(lo), float(hi or lo)


def parse(argv: list[str]) -> tuple[ChaosConfig, bool]:
    p = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of chaos")
    p.add_argument("--nodes", type=int, default=3, help="nodes at the start")
    p.add_argument("--seed", type=int, default=1, help="seed of the schedule and workload")
    p.add_argument("--mode", choices=["single", "cluster"], default="single",
                   help="one broker, or 3 brokers with RF=3 and broker kills")
    p.add_argument("--clients", type=int, default=8, help="concurrent workload clients")
    p.add_argument("--keys", type=int, default=200, help="size of the key set")
    p.add_argument("--rate", type=float, default=60.0, help="workload requests/s in total")
    p.add_argument("--write-ratio", type=float, default=0.3)
    p.add_argument("--cas", type=float, default=0.3,
                   help="share of writes sent If-Match the version just read")
    p.add_argument("--hot", type=float, default=0.2,
                   help="share of requests to the 5 hot keys (races, 412s)")
    p.add_argument("--partitions", type=int, default=10)
    p.add_argument("--history", type=int, default=20_000,
                   help="filler records produced before the nodes start (replay work)")
    p.add_argument("--bootstrap", default=None,
                   help="use this Kafka instead of starting one (no broker events)")
    p.add_argument("--gap", type=_gap, default=(15.0, 25.0),
                   help="seconds between events, MIN-MAX (default 15-25)")
    p.add_argument("--events", type=parse_kinds, default=[],
                   help="force these event kinds in order, e.g. kill9,restart,term,add")
    p.add_argument("--max-nodes", type=int, default=None)
    p.add_argument("--pauses", action="store_true",
                   help="also draw pause events (SIGSTOP a node past its session, SIGCONT)")
    p.add_argument("--netcut", "--netcuts", dest="netcuts", action="store_true",
                   help="also draw cut events (a node's Kafka connections blackholed past "
                        "its session timeout, clients still reaching it; then healed)")
    p.add_argument("--cut", type=float, default=None,
                   help="seconds a cut lasts (default: session timeout + 4)")
    p.add_argument("--session", type=float, default=6.0,
                   help="the nodes' group session timeout in seconds")
    p.add_argument("--delete-keys", type=float, default=0.2,
                   help="share of the keys that also get deletes (0: no deletes)")
    p.add_argument("--delete-ratio", type=float, default=0.4,
                   help="share of a delete key's writes that are deletes")
    p.add_argument("--lin-timeout", type=float, default=120.0,
                   help="seconds Porcupine may take before its verdict is unknown")
    p.add_argument("--standby", action="store_true",
                   help="nodes keep standby copies (KSTATE_STANDBY=true)")
    p.add_argument("--pause", type=float, default=10.0, help="seconds a pause lasts")
    p.add_argument("--timeout", type=float, default=None,
                   help="client timeout per request (default: the nodes' answer bound + "
                        "2 s, so that a timeout is a node breaking its bound)")
    p.add_argument("--recover-timeout", type=float, default=60.0)
    p.add_argument("--out", type=Path, default=None,
                   help="results JSON (default chaos-results/<timestamp>-<mode>-s<seed>.json)")
    p.add_argument("--dry-run", action="store_true", help="print the schedule and exit")
    a = p.parse_args(argv)
    cfg = ChaosConfig(duration=a.duration, nodes=a.nodes, seed=a.seed, mode=a.mode,
                      clients=a.clients, keys=a.keys, rate=a.rate, write_ratio=a.write_ratio,
                      cas=a.cas, hot=a.hot,
                      partitions=a.partitions, history=a.history,
                      bootstrap=a.bootstrap, gap=a.gap,
                      events=a.events, max_nodes=a.max_nodes, timeout=a.timeout,
                      recover_timeout=a.recover_timeout, out=a.out,
                      pauses=a.pauses, pause=a.pause, standby=a.standby,
                      netcuts=a.netcuts, cut=a.cut, session_timeout=a.session,
                      delete_keys=a.delete_keys, delete_ratio=a.delete_ratio,
                      lin_timeout=a.lin_timeout)
    return cfg, a.dry_run


def main(argv: list[str] | None = None) -> int:
    cfg, dry = parse(sys.argv[1:] if argv is None else argv)
    if dry:
        for e in schedule_of(cfg):
            print(f"+{e.gap:5.1f}s  {e.label}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chaos %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("actors").setLevel(logging.WARNING)
    try:
        result = trio.run(_run_until_signalled, cfg)
    except KeyboardInterrupt:
        return 130
    except Exception:  # a harness error (a broker or proxy that cannot start, ...)
        logging.getLogger("chaos").exception("chaos run failed")
        return 2
    if result is None:
        return 143  # SIGTERM: everything the run started is stopped
    print(format_summary(result))
    return 0 if result["passed"] else 1


async def _run_until_signalled(cfg: ChaosConfig) -> dict[str, Any] | None:
    """run_chaos, cancelled by SIGTERM (its teardown still runs): a CI job or a shell
    that stops the harness must not leave nodes, proxies or brokers behind."""
    result: dict[str, Any] | None = None
    async with trio.open_nursery() as nursery:

        async def on_sigterm() -> None:
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    logging.getLogger("chaos").warning("SIGTERM: stopping the run")
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(on_sigterm)
        result = await run_chaos(cfg)
        nursery.cancel_scope.cancel()
    return result


if __name__ == "__main__":
    sys.exit(main())
