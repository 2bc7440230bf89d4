"""The linearizability checker (tools/linearizability, Go) as the chaos run uses it: built
with the machine's Go, run on every history in its testdata, judged by exit code.

A testdata file's name says its verdict: ``ok_*`` exits 0, ``violation_*`` exits 1 and
draws the violating key, ``bad_input_*`` exits 2. Without ``go`` the tests fail: the
checker is part of the project, not an optional extra.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)

TOOL = Path(__file__).resolve().parents[2] / "tools" / "linearizability"
TESTDATA = sorted((TOOL / "testdata").glob("*.jsonl"))
EXPECTED_EXIT = {"ok": 0, "violation": 1, "bad": 2}


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        pytest.fail("`go` is not on PATH: the linearizability checker (tools/linearizability) "
                    "is a Go program and needs Go 1.22 or later to build", pytrace=False)
    return go


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("linearizability") / "linearizability"
    res = subprocess.run([_go(), "build", "-o", str(out), "."], cwd=TOOL,
                         capture_output=True, text=True, timeout=240, check=False)
    if res.returncode != 0:
        pytest.fail(f"go build failed:\n{res.stdout}{res.stderr}", pytrace=False)
    return out


def test_testdata_is_there() -> None:
    assert len(TESTDATA) >= 10
    assert {p.name.split("_")[0] for p in TESTDATA} == set(EXPECTED_EXIT)


@pytest.mark.parametrize("history", TESTDATA, ids=[p.stem for p in TESTDATA])
def test_verdict(checker: Path, history: Path, tmp_path: Path) -> None:
    res = subprocess.run([str(checker), "--history", str(history), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, check=False)
    kind = history.name.split("_")[0]
    assert res.returncode == EXPECTED_EXIT[kind], res.stdout + res.stderr
    report = json.loads((tmp_path / "linearizability.json").read_text())
    if kind == "bad":
        assert "line 2:" in res.stderr
        assert report["verdict"] == "unknown"
        return
    summary = res.stdout.strip()
    assert summary.startswith("linearizability: "), summary
    if kind == "ok":
        assert report["verdict"] == "linearizable"
        assert report["violating_keys"] == []
        assert summary.startswith("linearizability: linearizable ops=")
    else:
        assert report["verdict"] == "violation"
        assert report["violating_keys"] == ["k1@chaos.test"]
        assert summary.startswith("linearizability: VIOLATION keys=1 (k1@chaos.test)")
        assert report["pictures"] == ["violation-k1@chaos.test.html"]
        page = (tmp_path / "violation-k1@chaos.test.html").read_text()
        assert page.lstrip().lower().startswith("<!doctype html>")
        assert "→" in page  # the model's own descriptions of the operations


def test_visualize_any_draws_a_linearizable_history(checker: Path, tmp_path: Path) -> None:
    history = TOOL / "testdata" / "ok_concurrent_either_order.jsonl"
    res = subprocess.run([str(checker), "--history", str(history), "--out", str(tmp_path),
                          "--visualize", "any"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "linearizability.json").read_text())
    assert len(report["pictures"]) == 1
    assert (tmp_path / report["pictures"][0]).is_file()
    assert report["pictures"][0].startswith("history-")


def test_go_tests(checker: Path) -> None:
    """The Go tests (model cases, encodings, timeout) without the 50,000-op history."""
    res = subprocess.run([_go(), "test", "-short", "-count=1", "./..."], cwd=TOOL,
                         capture_output=True, text=True, timeout=240, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
