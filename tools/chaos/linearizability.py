"""Porcupine for every chaos run: build the Go checker (tools/linearizability) into
``.cache/bin/`` when its sources changed, run it on the run's history, read its report.

``python -m tools.chaos.linearizability build`` builds it (``just build-checker``);
``python -m tools.chaos.linearizability check HISTORY [OUT_DIR]`` checks one history.
Needs Go (1.22+) on PATH: without it the run fails, it does not skip the check.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import trio

from tools.procs import REPO

SOURCE = REPO / "tools" / "linearizability"
BIN = REPO / ".cache" / "bin" / "linearizability"
STAMP = BIN.with_name("linearizability.sources")  # sha256 of the sources BIN was built from
BUILD_TIMEOUT = 600.0  # a first build downloads Porcupine through the Go module proxy

# exit status of the checker -> verdict (its README)
EXITS = {0: "linearizable", 1: "violation", 2: "unknown"}


def source_hash() -> str:
    """sha256 over what goes into the binary: go.mod, go.sum and the non-test .go files."""
    h = hashlib.sha256()
    go = sorted(p for p in SOURCE.glob("*.go") if not p.name.endswith("_test.go"))
    files = [SOURCE / "go.mod", SOURCE / "go.sum", *go]
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def ensure_built() -> Path:
    """The checker binary, built first if missing or older than its sources. Raises
    RuntimeError (with Go's output) if Go is missing or the build fails."""
    want = source_hash()
    if BIN.is_file() and STAMP.is_file() and STAMP.read_text().strip() == want:
        return BIN
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("`go` is not on PATH: the chaos run checks its history with "
                           "tools/linearizability (Go 1.22 or later)")
    BIN.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a concurrent run never sees half a binary.
    fd, tmp = tempfile.mkstemp(prefix=".linearizability-", dir=BIN.parent)
    os.close(fd)
    try:
        res = subprocess.run([go, "build", "-o", tmp, "."], cwd=SOURCE, capture_output=True,
                             text=True, timeout=BUILD_TIMEOUT, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"go build of tools/linearizability failed:\n"
                               f"{res.stdout}{res.stderr}"[-4000:])
        os.replace(tmp, BIN)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    STAMP.write_text(want + "\n")
    return BIN


def _fresh_dir(path: Path) -> None:
    """``path`` exists and holds no report or picture of an earlier check (only those
    files are removed: it may be a folder that holds other things)."""
    path.mkdir(parents=True, exist_ok=True)
    for pattern in ("linearizability.json", "violation-*.html", "history-*.html"):
        for old in path.glob(pattern):
            old.unlink()


async def check(history: Path, out_dir: Path, timeout: float) -> dict[str, Any]:
    """Run the checker on ``history``, pictures and ``linearizability.json`` in
    ``out_dir`` (an earlier check's report and pictures there are removed first). Returns
    its report plus ``exit``, ``summary`` (its one line), ``wall_s`` and ``picture_paths``;
    ``verdict`` is ``error`` if it could not run."""
    t = trio.current_time()
    try:
        await trio.to_thread.run_sync(_fresh_dir, out_dir)
        binary = await trio.to_thread.run_sync(ensure_built)
        with trio.fail_after(timeout * 2 + 60):
            res = await trio.run_process(
                [str(binary), "--history", str(history), "--out", str(out_dir),
                 "--timeout", f"{timeout:g}s"],
                capture_stdout=True, capture_stderr=True, check=False)
    except (RuntimeError, OSError, trio.TooSlowError) as exc:
        return {"verdict": "error", "error": str(exc)[-3000:], "exit": None,
                "summary": f"linearizability: could not run: {str(exc)[:200]}",
                "picture_paths": [], "wall_s": round(trio.current_time() - t, 3)}
    report_path = out_dir / "linearizability.json"
    try:
        report: dict[str, Any] = orjson.loads(await trio.to_thread.run_sync(
            report_path.read_bytes))
    except (OSError, orjson.JSONDecodeError) as exc:
        report = {"verdict": "error", "error": f"no report ({exc}): "
                  + res.stderr.decode(errors="replace")[-2000:]}
    if EXITS.get(res.returncode) != report.get("verdict"):
        report["error"] = (f"exit {res.returncode} but verdict {report.get('verdict')!r}: "
                           + res.stderr.decode(errors="replace")[-2000:])
        report["verdict"] = "error"
    report["exit"] = res.returncode
    report["summary"] = res.stdout.decode(errors="replace").strip()
    report["stderr"] = res.stderr.decode(errors="replace")[-2000:]
    report["picture_paths"] = [str(out_dir / p) for p in report.get("pictures") or []]
    report["wall_s"] = round(trio.current_time() - t, 3)
    return report


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"] and len(argv) == 1:
        try:
            print(ensure_built().relative_to(REPO))
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    if argv[:1] == ["check"] and len(argv) in (2, 3):
        history = Path(argv[1])
        out = Path(argv[2]) if len(argv) == 3 else history.parent
        report = trio.run(check, history, out, 120.0)
        print(report["summary"] or report.get("error"))
        return {"linearizable": 0, "violation": 1}.get(report["verdict"], 2)
    print("usage: python -m tools.chaos.linearizability build | check HISTORY [OUT_DIR]",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
