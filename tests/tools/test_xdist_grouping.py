"""tests/run.sh runs the suite with ``--dist loadgroup``: the modules that stop, cut or
reconfigure a broker of their own mark themselves ``xdist_group`` so their tests run
one after the other on one worker. pytest 9.2 renamed a node's id and pytest-xdist 3.8
then ignores the mark silently; this checks the installed pair honours it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

GROUPED = '''
import os, pathlib, pytest
pytestmark = pytest.mark.xdist_group("one")
@pytest.mark.parametrize("i", range(8))
def test_worker(i):
    pathlib.Path(os.environ["OUT"], str(i)).write_text(os.environ["PYTEST_XDIST_WORKER"])
'''


def test_one_xdist_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "3", "--dist", "loadgroup",
                    "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
                   cwd=tmp_path, env={"OUT": str(out), "PATH": "/usr/bin:/bin"},
                   check=True, capture_output=True, timeout=120)
    workers = {p.read_text() for p in out.iterdir()}
    assert len(list(out.iterdir())) == 8
    assert len(workers) == 1, workers
