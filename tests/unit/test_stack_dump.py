"""``kill -USR1``'s stack dump (kstate/stack_dump.py) in a process shaped like a node:
a busy asyncio thread beside a main thread that logs to stderr and waits in system
calls. faulthandler's dump crashed such a process (SIGSEGV) within ten signals on
3.11; a Python handler without a guard died too (RecursionError: each signal landing
inside the dump before it started another). It must survive every signal and print
whole stacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, sys, threading, time
from kstate import stack_dump

def busy():
    async def spin():
        def deep(n):
            return 0 if n == 0 else deep(n - 1)
        while True:
            await asyncio.sleep(0)
            try:
                deep(30)
                raise ValueError
            except ValueError:
                pass
    asyncio.run(spin())

threading.Thread(target=busy, name="busy", daemon=True).start()
stack_dump.install()
print("ready", flush=True)
while True:  # the main thread logs, then waits in a system call (as trio's in epoll)
    sys.stderr.write("a log line\n")
    time.sleep(0.001)
"""


def test_many_dumps_while_another_thread_runs_python(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=sink, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        sent = 0
        for _ in range(3000):
            os.kill(proc.pid, signal.SIGUSR1)
            sent += 1
            time.sleep(0.00005)  # signals land inside dumps too
        time.sleep(0.3)
        assert proc.poll() is None, (f"died of {proc.returncode} after {sent} signals: "
                                     f"{err.read_text()[-1500:]}")
    finally:
        proc.kill()
        proc.wait()
    dumps = err.read_text().split("Current thread 0x")[1:]
    assert 0 < len(dumps) <= sent  # (signals that arrive together run the handler once)
    for dump in dumps:
        assert "Thread 0x" in dump  # the other thread too
        assert "(busy)" in dump
        assert ", in busy\n" in dump  # ... with its own frames
        assert "in <module>" in dump  # the main thread's whole stack
