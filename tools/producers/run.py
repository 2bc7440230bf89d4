"""Producers and an auditor that are not aiokafka, for tests that prove kstate reads what
other programs write: Apache Kafka's Java client (any codec, transactions, arbitrary key and
value bytes, explicit partitions) and franz-go with the seed app's default settings.

Every function starts one tool process, waits for it, and parses its JSON lines. Script
lines are the tools' own format (see ForeignProducer.java); ``Sent.line`` is the 1-based
index into ``script_lines``. A tool that is missing, cannot be built, exits non-zero or
times out raises :class:`ToolError`."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import trio

from tools.producers.build import REPO, ToolError, franz_tool, java_tool

__all__ = ["Batch", "Codec", "Consumed", "Sent", "ToolError", "create_topic",
           "franz_produce", "java_audit", "java_batches", "java_consume", "java_produce"]

Codec = Literal["none", "gzip", "snappy", "lz4", "zstd"]
Isolation = Literal["read_committed", "read_uncommitted"]
RUN_TIMEOUT_S = 120  # the tools time out on their own after 30 s of waiting for Kafka


@dataclass(frozen=True)
class Sent:
    """One record a producer had acknowledged (acks=all)."""

    line: int
    partition: int
    offset: int


@dataclass(frozen=True)
class Consumed:
    """One record as Kafka's Java consumer read it; None for a null key or value."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Batch:
    """One record batch's header, as stored by the broker."""

    partition: int
    base_offset: int
    last_offset: int
    count: int
    compression: str
    transactional: bool
    control: bool


async def _call(name: str, argv: Sequence[str], stdin: bytes = b"") -> list[dict[str, Any]]:
    with trio.move_on_after(RUN_TIMEOUT_S) as scope:
        res = await trio.run_process(list(argv), stdin=stdin, capture_stdout=True,
                                     capture_stderr=True, check=False, cwd=REPO)
    if scope.cancelled_caught:
        raise ToolError(f"{name}: no answer in {RUN_TIMEOUT_S} s")
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()
        raise ToolError(f"{name} exited {res.returncode}: {err[-3000:]}")
    lines = res.stdout.decode().splitlines()
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except ValueError as e:
        raise ToolError(f"{name} printed a line that is not JSON: {e}") from None


async def _java(sub: str, bootstrap: str, topic: str, *args: str,
                stdin: bytes = b"") -> list[dict[str, Any]]:
    tool = await java_tool()
    argv = [*tool.argv, sub, "--bootstrap", bootstrap, "--topic", topic, *args]
    return await _call(f"ForeignProducer {sub}", argv, stdin)


def _script(script_lines: Sequence[str]) -> bytes:
    """The lines as the tools read them: UTF-8, except that a lone surrogate U+DC80 to
    U+DCFF stands for the byte 0x80 to 0xFF (Python's ``surrogateescape``), so a line
    can carry bytes that are not UTF-8 (franz-go takes them as they are, e.g. in a
    header name)."""
    for line in script_lines:
        if "\n" in line or "\r" in line:
            raise ValueError(f"a script line holds a line break: {line!r}")
    return ("\n".join(script_lines) + "\n").encode("utf-8", "surrogateescape")


def _sent(rows: list[dict[str, Any]]) -> list[Sent]:
    return [Sent(int(r["line"]), int(r["partition"]), int(r["offset"])) for r in rows]


def _b64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


async def create_topic(bootstrap: str, topic: str, *, partitions: int = 3,
                       compact: bool = True) -> None:
    """Creates ``topic`` (cleanup.policy=compact unless told otherwise)."""
    await _java("create-topic", bootstrap, topic, "--partitions", str(partitions),
                *(["--compact"] if compact else []))


async def java_produce(bootstrap: str, topic: str, script_lines: Sequence[str], *,
                       codec: Codec = "none", transactional_id: str | None = None,
                       linger_ms: int = 20, create_partitions: int | None = None,
                       transaction_timeout_ms: int | None = None) -> list[Sent]:
    """Runs a script through Kafka's Java producer with ``compression.type=codec``;
    records are sent asynchronously and gathered at flush/commit/abort/end, so a burst
    shares compressed batches. ``create_partitions``: first create the topic, compacted,
    with that many partitions (in the same JVM)."""
    args = ["--codec", codec, "--linger-ms", str(linger_ms)]
    if create_partitions is not None:
        args += ["--create", str(create_partitions)]
    if transactional_id is not None:
        args += ["--transactional-id", transactional_id]
    if transaction_timeout_ms is not None:
        args += ["--transaction-timeout-ms", str(transaction_timeout_ms)]
    return _sent(await _java("produce", bootstrap, topic, *args, stdin=_script(script_lines)))


async def franz_produce(bootstrap: str, topic: str, script_lines: Sequence[str]) -> list[Sent]:
    """Runs a script through franz-go with default settings (the seed app's client); the
    records between two ``flush`` lines are produced concurrently, as one burst."""
    binary = await franz_tool()
    rows = await _call("franz", [str(binary), "-bootstrap", bootstrap, "-topic", topic],
                       _script(script_lines))
    return _sent(rows)


def _consumed(rows: list[dict[str, Any]]) -> list[Consumed]:
    return [Consumed(int(r["partition"]), int(r["offset"]), _b64(r["key_b64"]),
                     _b64(r["value_b64"]),
                     tuple((str(k), _b64(v)) for k, v in r["headers"].items()))
            for r in rows if "batch" not in r]


def _batches(rows: list[dict[str, Any]]) -> list[Batch]:
    return [Batch(int(b["partition"]), int(b["base_offset"]), int(b["last_offset"]),
                  int(b["count"]), str(b["compression"]), bool(b["transactional"]),
                  bool(b["control"]))
            for b in (r["batch"] for r in rows if "batch" in r)]


async def java_consume(bootstrap: str, topic: str,
                       isolation: Isolation = "read_committed") -> list[Consumed]:
    """Every record of every partition, from the beginning to the end offsets (the last
    stable offsets under read_committed) at the start, by partition and offset."""
    return _consumed(await _java("consume", bootstrap, topic, "--isolation", isolation))


async def java_batches(bootstrap: str, topic: str) -> list[Batch]:
    """The header of every batch in the topic (aborted and control batches included), by
    partition and offset: which codec a producer really used, and how it batched."""
    return _batches(await _java("batches", bootstrap, topic))


async def java_audit(bootstrap: str, topic: str, isolation: Isolation = "read_committed"
                     ) -> tuple[list[Consumed], list[Batch]]:
    """``java_consume`` and then ``java_batches`` in one JVM (one start-up less)."""
    rows = await _java("consume", bootstrap, topic, "--isolation", isolation, "--batches")
    return _consumed(rows), _batches(rows)
