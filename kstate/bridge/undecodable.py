"""(asyncio side) A batch a consumer cannot decode stops its partition, not the node.

aiokafka decodes a fetched batch lazily, while ``getmany`` hands records over, and lets
whatever the decoder raises escape ``getmany``: ``UnsupportedCodecError`` when a codec
library is missing, ``CorruptRecordException`` on a bad CRC, anything else a broken
batch makes the decoder raise. Records drained from *other* partitions in that same call
are then lost while their positions have moved on, and the next call raises again: a
crash loop, or records silently skipped.

:class:`Undecodable` replaces one consumer's ``fetcher.fetched_records`` (the method
``getmany`` calls) with the same loop in which each partition's records are drained on
their own: a partition whose next records cannot be decoded hands over the records
before the first that cannot, stops there (its position) and is paused, and the halt is
kept (partition -> (offset, reason)) until :meth:`Undecodable.take`; the others keep
flowing. Where it stops depends on where the decoder fails: a batch it cannot read at
all (its codec, its CRC) at the batch's first offset; a record it fails on (aiokafka
decodes a batch's records one at a time, header names strictly as UTF-8) at that
record, the records before it in its batch handed over. A paused partition is fetched
again only when resumed (a rebalance resumes what it assigns: the halt is then found,
and reported, again).

This leans on aiokafka's fetcher internals (``_records``, ``FetchResult``); pyproject.toml
pins aiokafka below 0.15, and tests/integration/test_undecodable.py exercises it against a
real broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import FetchResult

log = logging.getLogger(__name__)

Halt = tuple[int, str]  # (offset of the first record not decoded, why)


def reason_of(exc: BaseException) -> str:
    """One line naming the error: aiokafka's errors already start with their class name."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _getall(result: Any, max_records: int | None) -> tuple[list[Any], Halt | None]:
    """``FetchResult.getall``, except that what cannot be decoded ends the drain with
    the records before it and the halt (the offset of the first record not handed over:
    the batch's first, or the record the decoder failed on; why)."""
    tp = result._topic_partition
    if not result.check_assignment(tp) or not result.has_more():
        return [], None
    records = result._partition_records
    out: list[Any] = []
    try:
        for msg in records:
            out.append(msg)
            if max_records is not None and len(out) >= max_records:
                result._update_position()
                return out, None
    except Exception as exc:  # whatever the decoder raised: reported as the halt's reason
        result._update_position()  # consumed up to the batch it could not decode
        result._partition_records = None
        return out, (int(records.next_fetch_offset), reason_of(exc))
    result._update_position()
    result._partition_records = None
    return out, None


class Undecodable:
    """Per-partition handling of undecodable batches for one *started* consumer (its
    fetcher exists from start() on; getmany is its only caller). ``kind`` names the
    consumer in log lines (group, reader)."""

    def __init__(self, consumer: AIOKafkaConsumer, kind: str) -> None:
        self._consumer = consumer
        self._fetcher = consumer._fetcher
        self._kind = kind
        self._new: dict[int, Halt] = {}
        self._fetcher.fetched_records = self._fetched_records

    def take(self) -> dict[int, Halt]:
        """Partitions halted since the last call (partition -> (offset, reason))."""
        new, self._new = self._new, {}
        return new

    def _halt(self, tp: TopicPartition, halt: Halt) -> None:
        self._consumer.pause(tp)
        self._new[tp.partition] = halt
        log.error("event=batch_undecodable client=%s topic=%s partition=%d offset=%d "
                  "reason=%r", self._kind, tp.topic, tp.partition, halt[0], halt[1])

    # aiokafka's signature: getmany calls it with a timeout
    async def _fetched_records(
            self, partitions: Any, timeout: float = 0,  # noqa: ASYNC109
            max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        """aiokafka's ``Fetcher.fetched_records`` (0.12-0.14), draining each partition on
        its own (see :func:`_getall`)."""
        fetcher = self._fetcher
        subscriptions = fetcher._subscriptions
        while True:
            if subscriptions.reassignment_in_progress:
                await subscriptions.wait_for_assignment()
            start_time = time.monotonic()
            drained: dict[TopicPartition, list[Any]] = {}
            for tp in list(fetcher._records.keys()):
                if partitions and tp not in partitions:
                    if not subscriptions.is_assigned(tp):
                        del fetcher._records[tp]
                    continue
                res_or_error = fetcher._records[tp]
                if type(res_or_error) is FetchResult:
                    records, halt = _getall(res_or_error, max_records)
                    if halt is not None or not res_or_error.has_more():
                        del fetcher._records[tp]
                        fetcher._notify(fetcher._wait_consume_future)
                    if halt is not None:
                        self._halt(tp, halt)
                    if not records:
                        continue
                    drained[tp] = records
                    if max_records is not None:
                        max_records -= len(records)
                        if max_records <= 0:
                            break
                elif drained:
                    return drained  # the error is raised by the next call, as aiokafka does
                else:
                    del fetcher._records[tp]
                    fetcher._notify(fetcher._wait_consume_future)
                    res_or_error.check_raise()

            if drained or self._new or not timeout:
                return drained

            waiter = fetcher._create_fetch_waiter()
            done, pending = await asyncio.wait([waiter], timeout=timeout)
            if not done or fetcher._closed:
                if pending:
                    pending.pop().cancel()
                return {}
            if waiter.done():
                waiter.result()
            timeout = max(0.0, timeout - (time.monotonic() - start_time))
