"""Counting a task's trips through trio's scheduler (each yield is one more step)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio


class TaskSteps(trio.abc.Instrument):
    """Counts the scheduler steps of the tasks ``which`` picks; add it with
    ``trio.lowlevel.add_instrument`` for the span to measure."""

    def __init__(self, which: Callable[[trio.lowlevel.Task], bool]) -> None:
        self.which, self.steps = which, 0

    @classmethod
    def of(cls, task: trio.lowlevel.Task) -> TaskSteps:
        """The steps of ``task``."""
        return cls(lambda t: t is task)

    @classmethod
    def running(cls, fn: Callable[..., Any]) -> TaskSteps:
        """The steps of the tasks whose coroutine is ``fn``'s."""
        code = fn.__code__
        return cls(lambda t: getattr(t.coro, "cr_code", None) is code)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.which(task):
            self.steps += 1
