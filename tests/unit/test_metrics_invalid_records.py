"""Unit test of web/metrics.py's kstate_invalid_records: a sum over the partitions this
node holds now, so it falls when one moves away — a gauge, not a counter (a counter
that falls reads as a process restart to Prometheus' rate() and increase())."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from web.metrics import NodeCollector


def exposition(invalid_total: int) -> str:
    state = SimpleNamespace(statistics=dict,
                            table=SimpleNamespace(invalid_total=lambda: invalid_total))
    none: Any = None
    collector = NodeCollector("n:1", "t", "g", 0.0, router=none, state=state, writer=none,
                              proxy=none, feed=None)


    class Partitions:  # only the partition families: the rest reads other actors
        def collect(self) -> Any:
            return collector._partitions()

    registry = CollectorRegistry()
    registry.register(Partitions())
    return generate_latest(registry).decode()


def test_invalid_records_of_held_partitions_is_a_gauge_that_may_fall():
    held_two = exposition(3)  # two held partitions: 2 + 1 invalid records
    assert "# TYPE kstate_invalid_records gauge" in held_two
    assert "kstate_invalid_records 3.0" in held_two.splitlines()
    assert "kstate_invalid_records_total" not in held_two
    moved = exposition(1)  # the partition with 2 moved to another node
    assert "kstate_invalid_records 1.0" in moved.splitlines()
