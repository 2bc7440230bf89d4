"""``kill -USR1 <pid>``: every thread's stack to stderr; the node keeps running.

Not Python's faulthandler: its dump reads the other threads' frames without the GIL
while they run, and on 3.11/3.12 that can crash the process or loop for ever inside
the signal handler (CPython issues 116008 and 140815). A process shaped like a node, a
busy asyncio thread beside a main thread that waits in a system call, died of SIGSEGV
within ten SIGUSR1s, and a node froze mid-dump in a CI run. This handler is Python's:
it runs on the main thread between two bytecodes, holding the GIL, so every frame it
reads is consistent. What that costs: a main thread stuck inside C code dumps nothing
until it returns; ``py-spy dump --pid <pid>`` reads such a process from outside.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from types import FrameType


def format_stacks() -> str:
    """Every thread's stack, the calling thread's first, marked ``Current thread``."""
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    out: list[str] = []
    frames = sys._current_frames()
    # the calling thread first, then the others: each dump starts with its own line
    for ident, frame in sorted(frames.items(), key=lambda item: item[0] != me):
        kind = "Current thread" if ident == me else "Thread"
        out.append(f"{kind} 0x{ident:016x} ({names.get(ident, '?')}), "
                   "most recent call last:\n")
        out.extend(traceback.format_stack(frame))
        out.append("\n")
    return "".join(out)


def install(fd: int = 2, signum: int = signal.SIGUSR1) -> None:
    """Write every thread's stack to ``fd`` (default: stderr) on ``signum``.

    The handler never raises: whatever it raised would surface in the code the signal
    interrupted, trio's run loop as likely as any. It writes with ``os.write``, not
    through ``sys.stderr``, whose buffer refuses a reentrant call (RuntimeError) when the
    signal lands inside another write to it. A signal that comes during a dump is the
    same request and is dropped: each one starting a dump of its own nested them until
    RecursionError ended the process."""
    dumping = False

    def dump(_signum: int, _frame: FrameType | None) -> None:
        nonlocal dumping
        if dumping:
            return
        dumping = True
        try:
            data = format_stacks().encode("utf-8", "replace")
            while data:
                data = data[os.write(fd, data):]
        except Exception:  # see the docstring
            pass
        finally:
            dumping = False

    signal.signal(signum, dump)
