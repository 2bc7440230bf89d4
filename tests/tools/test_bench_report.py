"""The benchmark's table (tools/bench/report.py, rows.py): how a run's results become
numbers, ratios, goal verdicts and reasons for what is missing. No timing here: the
numbers are made up, only the bookkeeping is checked."""

from __future__ import annotations

from typing import Any

import pytest

from tools.bench import report, rows
from tools.bench.routing_phase import combine
from tools.bench.tools import WrkResult

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)

CONTEXT = {"users": 100, "scale_users": 1000, "connections": 10, "client_tasks": 10,
           "session_ms": 6000}


def wrk_run(rps: float, p50: float, p99: float, *, non_2xx: int = 0) -> dict[str, Any]:
    requests = int(rps * 10)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": requests,
            "non_2xx": non_2xx, "socket_errors": 0,
            "valid": non_2xx / max(1, requests) <= 0.01, "wrk_cpu_share": 0.1}


def table(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = [r for r in report.rows(results, rows.TABLE, CONTEXT) if "metric" in r]
    by_metric = {r["metric"]: r for r in out}
    assert len(by_metric) == len(out), "every row has a metric of its own"
    return by_metric


def test_goal_rows_are_judged_on_this_run() -> None:
    results = {
        "kstate": {"get_local_1": wrk_run(6000, 0.8, 3.0),
                   "get_2": {"local": wrk_run(5000, 1.0, 6.0),
                             "proxied": wrk_run(3000, 2.0, 8.0)},
                   "put_c1": wrk_run(500, 1.5, 4.0), "put_1": wrk_run(1500, 6.0, 9.0)},
        "faust": {"get_local_1": wrk_run(5000, 1.9, 4.0),
                  "get_2": {"local": wrk_run(2500, 2.0, 50.0),
                            "proxied": wrk_run(1500, 5.0, 30.0)}},
    }
    t = table(results)
    assert t["GET local, 1 member: req/s"]["ratio"] == "1.20x"
    assert t["GET local, 1 member: req/s"]["status"] == "met"
    assert t["GET local, 2 members: p99 ms"]["status"] == "missed"  # 6 ms >= 5 ms
    assert t["proxied p50 / local p50, 2 members"]["kstate"] == pytest.approx(2.0)
    assert t["proxied p50 / local p50, 2 members"]["status"] == "missed"
    assert t["PUT c1: p50 ms"]["status"] == "met"
    assert t["PUT c10: acks/s"]["status"] == "missed"
    assert t["PUT c10: acks/s"]["faust_text"] == "n/a"
    lines = {g["goal"]: g["status"] for g in report.goals(list(t.values()))}
    assert lines[rows.G1_LOCAL.key] == "met"
    assert lines[rows.G1_P99.key] == "missed"  # one of its two rows missed
    assert lines[rows.G3_RATIO.key] == "unknown"  # not measured: never hidden


def test_a_missing_number_says_why() -> None:
    results = {
        "kstate": {"replay": {"error": "RuntimeError: not serving after 300s"},
                   "get_local_1": wrk_run(1000, 1.0, 2.0, non_2xx=500)},
        "faust": {},
    }
    t = table(results)
    replay = t["replay, new member: records/s"]
    assert replay["kstate_text"] == "-"
    assert "replay failed: RuntimeError: not serving" in replay["why_missing"]["kstate"]
    get = t["GET local, 1 member: req/s"]
    assert get["kstate_text"] == "-"
    assert "more than 1% errors (500 non-2xx" in get["why_missing"]["kstate"]
    assert get["status"] == "unknown"


def test_sections_nothing_of_which_ran_print_as_one_line() -> None:
    results = {"kstate": {"scale": {"replay": {"seconds": 2.0, "records_per_s": 500,
                                               "rss_bytes": 3000, "raw_bytes": 1000}}}}
    out = report.render(report.rows(results, rows.TABLE, CONTEXT))
    assert "-- failover, 2 members, session timeout 6000 ms: not run" in out
    assert "member 1 replays: records/s (↑)" in out
    assert "GET local, member 1 alone: req/s (↑)" in out


def test_counts_absent_from_statuses_are_zero() -> None:
    results = {"kstate": {"replay": {"statuses": {"200": 10}}}, "faust": {}}
    assert table(results)["404s for existing keys during replay"]["kstate"] == 0


def _half(requests: int, seconds: float, p50: float, cpu: float) -> WrkResult:
    return WrkResult(target="http://x", script="route.lua", keys=10, requests=requests,
                     seconds=seconds, rps=requests / seconds, p50_ms=p50, p90_ms=p50,
                     p99_ms=p50 * 2, max_ms=p50 * 3, mean_ms=p50, non_2xx=0,
                     socket_errors=0, timeouts=0, wrk_cpu_share=cpu, threads=2,
                     connections=10, per_target={"a:1": requests // 2, "b:2": requests // 2})


def test_halves_of_a_side_combine_into_one_run() -> None:
    side = combine([_half(3000, 5.0, 1.0, 0.2), _half(1000, 5.0, 3.0, 0.4)])
    assert side["requests"] == 4000
    assert side["rps"] == 400.0
    assert side["p50_ms"] == pytest.approx(1.5)  # request-weighted
    assert side["wrk_cpu_share"] == pytest.approx(0.3)  # per wall second over both
    assert side["wrk_cpu_per_thread"] == pytest.approx(0.15)
    assert side["per_target"] == {"a:1": 2000, "b:2": 2000}
    assert side["valid"] is True


def test_put_rows_are_set_against_the_write_floor_of_the_same_run() -> None:
    floor = {"put_c1": {"rps": 800.0, "p50_ms": 1.2, "p99_ms": 5.0},
             "put_1": {"rps": 3000.0, "p50_ms": 3.0, "p99_ms": 9.0}}
    t = table({"kstate": {"put_c1": wrk_run(400, 2.4, 9.0), "put_1": wrk_run(900, 11.0, 40.0),
                          "floor": floor}})
    assert t["write floor c1: p50 ms"]["kstate"] == pytest.approx(1.2)
    assert t["write floor c10: acks/s"]["kstate"] == pytest.approx(3000.0)
    assert t["PUT c1 p50 / write floor c1 p50"]["kstate"] == pytest.approx(2.0)
    assert t["PUT c10 acks/s / write floor c10"]["kstate"] == pytest.approx(0.3)
    assert t["PUT c10 acks/s / write floor c10"]["faust_text"] == "n/a"
    # no floor (its phase failed): the ratio is missing and says why, the PUT rows stay
    t = table({"kstate": {"put_c1": wrk_run(400, 2.4, 9.0), "put_1": wrk_run(900, 11.0, 40.0),
                          "floor": {"error": "RuntimeError: write floor exited 1"}}})
    assert t["PUT c1: p50 ms"]["kstate"] == pytest.approx(2.4)
    assert t["PUT c1 p50 / write floor c1 p50"]["kstate"] is None
    assert "write floor exited 1" in t["PUT c1 p50 / write floor c1 p50"]["why_missing"]["kstate"]
