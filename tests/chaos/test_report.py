"""Both checkers' verdicts side by side (tools/chaos/report.py): which fail a run, and
when they disagree."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tools.chaos.report import _examples, judge_checkers

pytestmark = pytest.mark.fast  # pure logic, no broker


def run_with(*violations: dict[str, Any]) -> Any:
    return SimpleNamespace(
        checker=SimpleNamespace(violations=list(violations), keys=["a", "b"]),
        traffic=SimpleNamespace(history=SimpleNamespace(ops=10), check_seconds=0.5))


def lin(verdict: str, keys: list[str] | None = None) -> dict[str, Any]:
    return {"verdict": verdict, "ops": 10, "ops_checked": 9, "keys": 2, "seconds": 0.1,
            "violating_keys": keys or [], "picture_paths": [], "summary": "s"}


def kinds(run: Any) -> list[str]:
    return [v["kind"] for v in run.checker.violations]


def test_both_clean() -> None:
    run = run_with()
    c = judge_checkers(run, lin("linearizable"))
    assert c["agree"] is True
    assert kinds(run) == []
    assert c["own"]["verdict"] == "PASS"


def test_both_find_it() -> None:
    run = run_with({"kind": "stale", "key": "a", "source": "cut"})
    c = judge_checkers(run, lin("violation", ["a"]))
    assert c["agree"] is True
    assert kinds(run) == ["stale", "linearizability"]
    assert c["keys_only_own"] == c["keys_only_porcupine"] == []


def test_only_porcupine_finds_it() -> None:
    run = run_with()
    c = judge_checkers(run, lin("violation", ["b"]))
    assert c["agree"] is False
    assert kinds(run) == ["linearizability", "checkers_disagree"]


def test_only_the_own_checker_finds_a_history_violation() -> None:
    run = run_with({"kind": "spurious_404", "key": "a", "source": "probe"})
    c = judge_checkers(run, lin("linearizable"))
    assert c["agree"] is False
    assert kinds(run) == ["spurious_404", "checkers_disagree"]
    assert c["keys_only_own"] == ["a"]


def test_violations_beyond_linearizability_are_no_disagreement() -> None:
    run = run_with({"kind": "late_ambiguous", "key": "a", "source": "workload"},
                   {"kind": "lost_write", "source": "audit"},
                   {"kind": "node_crashed", "node": "n1"})
    c = judge_checkers(run, lin("linearizable"))
    assert c["agree"] is True
    assert c["own"]["verdict"] == "FAIL"
    assert "checkers_disagree" not in kinds(run)


def test_undecided_or_broken_porcupine_fails_the_run() -> None:
    run = run_with()
    assert judge_checkers(run, lin("unknown"))["agree"] is None
    assert kinds(run) == ["linearizability"]
    run = run_with()
    judge_checkers(run, {"verdict": "error", "error": "go missing"})
    assert kinds(run) == ["checker_error"]


def test_examples_show_every_kind() -> None:
    vs = [{"kind": "stale", "i": i} for i in range(20)] + [{"kind": "lost_update"}]
    got = _examples(vs, 5)
    assert [v["kind"] for v in got] == ["stale"] * 4 + ["lost_update"]
