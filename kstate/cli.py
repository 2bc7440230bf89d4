"""CLI: ``kstate node [flags]`` and ``kstate settings``: parse settings, install signal
handlers, run the node.

Only the standard library is imported here at first: ``kstate node`` takes its stop
signals (:class:`_Noted`) before it imports the node (trio, aiokafka, quart: half a
second), so a SIGTERM then stops it as at any other time of its start (exit 0), not by
the signal's default action (143)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kstate.settings import Settings

log = logging.getLogger("kstate")

USAGE = """usage: kstate node [--flag value ...]   (kstate node --help lists the flags)
       kstate settings                   (every setting, its env var and default)"""


def _refusals() -> tuple[tuple[type[Exception], str], ...]:
    """Errors that are a setting's fault, not the node's: exit 2 with one line, like an
    invalid setting (reason=... in the log line)."""
    from kstate.bridge import (
        GroupRefused,
        InstanceFenced,
        KafkaAuthFailed,
        KafkaNotAuthorized,
        PartitionsChanged,
        TopicDeleted,
        TopicRefused,
    )
    from kstate.node import KafkaUnreachable, TopicNotDurable
    return ((TopicNotDurable, "topic_not_durable"), (TopicRefused, "topic_refused"),
            (GroupRefused, "group_settings"), (PartitionsChanged, "partitions_changed"),
            (TopicDeleted, "topic_deleted"), (InstanceFenced, "instance_fenced"),
            (KafkaNotAuthorized, "kafka_not_authorized"), (KafkaAuthFailed, "kafka_auth_failed"),
            (KafkaUnreachable, "kafka_unreachable"))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Noted:
    """The stop signals' handler outside trio's receiver: before it is open and once it
    has closed (it restores this handler). A signal then is noted, never fatal: one
    before the receiver opened stops the node as soon as it does; one after the node
    stopped (a second SIGTERM, Ctrl-C twice) no longer turns its exit 0 into death by
    the signal (143), or into a KeyboardInterrupt."""

    def __init__(self) -> None:
        self.signums: list[int] = []

    def __call__(self, signum: int, frame: object) -> None:
        self.signums.append(signum)


async def _main(settings: Settings, noted: _Noted) -> None:
    import trio

    from kstate.node import run_node

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        async def _signals() -> None:
            with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
                for signum in noted.signums:  # came before the receiver was open
                    log.info("event=signal name=%s", signal.Signals(signum).name)
                    stop.set()
                async for signum in signals:
                    log.info("event=signal name=%s", signal.Signals(signum).name)
                    stop.set()

        nursery.start_soon(_signals)
        await run_node(settings, stop=stop)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if args else 2
    if args[0] == "settings":
        from kstate.settings import describe
        for flag, env, default, text in describe():
            print(f"{flag:24} {env:28} {default:18} {text}")
        return 0
    if args[0] != "node":
        print(USAGE, file=sys.stderr)
        return 2
    noted = _Noted()  # first: a stop signal from now on stops the node (module docstring)
    for signum in STOP_SIGNALS:
        signal.signal(signum, noted)
    import trio

    from kstate import logs, stack_dump
    from kstate.settings import SettingsError, load_settings
    try:
        settings = load_settings(args[1:], os.environ)
    except SettingsError as exc:
        print(f"kstate: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_format)
    # `kill -USR1 <pid>`: every thread's stack to stderr, for a node that seems stuck
    # (it keeps running; README "Operating")
    stack_dump.install()
    try:
        try:
            trio.run(_main, settings, noted)
        finally:
            # The node has stopped: nothing is left for a stop signal to do. Ignored,
            # not handled: Python resets the signals it handles to their default
            # (death) as the interpreter finalizes, which takes a while longer.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        for kind, reason in _refusals():
            refused = _only(exc, kind)
            if refused is not None:  # a refusal, not a crash: one line, no traceback
                log.error("event=node_refused reason=%s detail=%r", reason, str(refused))
                return 2
        log.exception("event=node_crashed")
        return 1
    return 0


def _only(exc: BaseException, kind: type[Exception]) -> Exception | None:
    """``exc`` if it is a ``kind``, or the one ``kind`` an exception group holds and
    nothing else; else None."""
    from kstate.core.exception_groups import lone_error
    exc = lone_error(exc)
    return exc if isinstance(exc, kind) else None
