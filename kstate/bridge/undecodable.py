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
decodes a batch's records one at a time) at that record, the records before it in its
batch handed over. A paused partition is fetched again only when resumed (a rebalance
resumes what it assigns: the halt is then found, and reported, again).

What Kafka's Java consumer reads is not a halt: aiokafka's decoder is stricter than it
in two places (a header name that is not UTF-8, a record attributes byte from 0x80 on),
so once it fails the batch is read again as the Java consumer reads it
(kstate/bridge/java_reading.py, CRC checked), and only what that refuses too halts. An
attributes byte from 0x80 on need not make aiokafka's decoder fail (it may read other
fields that add up), nor does an offset delta past 32 bits (the Java consumer keeps its
low 32, aiokafka all), so a batch with either is sent that way before aiokafka decodes
it.
That needs the fetched bytes, which aiokafka's compiled ``MemoryRecords`` keeps to
itself, so the fetcher module's ``MemoryRecords`` is replaced by :class:`KeptRecords`,
the same object with the bytes beside it, which looks at each batch it hands out.

This leans on aiokafka's fetcher internals (``_records``, ``FetchResult``); pyproject.toml
pins aiokafka below 0.15, and tests/integration/test_undecodable.py (a codec missing) and
test_other_producers.py (franz-go's header names, a raw record attributes byte) exercise
it against a real broker.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer import fetcher as fetcher_module
from aiokafka.consumer.fetcher import FetchResult
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords

from kstate.bridge.java_reading import decompressed, read_alike, records_after

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">i")  # a batch's length, after its first 8 bytes,
_LOG_OVERHEAD = 12  # and those 12 (base offset, length) it does not count
_HEAD = 61  # a v2 batch's header; its records follow
_CODEC_AT = 22  # the low byte of its attributes,
_CODEC_MASK = 0x07  # whose low 3 bits are its codec

Halt = tuple[int, str]  # (offset of the first record not decoded, why)


def reason_of(exc: BaseException) -> str:
    """One line naming the error: aiokafka's errors already start with their class name."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if text.startswith(name) else f"{name}: {text}" if text else name


class KeptRecords:
    """aiokafka's ``MemoryRecords`` of one fetched partition, with the fetched bytes kept
    (``fetched``) for :func:`_getall`. Each v2 data batch's records are looked at first
    (:func:`read_alike`): one aiokafka's decoder may read otherwise than Kafka's
    Java consumer without failing is handed over as :class:`_ReadAsJava`, whose records
    the failure path reads; a compressed one is decompressed once for both, as
    :class:`_Decompressed`."""

    __slots__ = ("_next_batch", "_pos", "fetched", "has_next", "size_in_bytes")

    def __init__(self, fetched: bytes) -> None:
        records = MemoryRecords(fetched)
        self.fetched = fetched
        self.has_next = records.has_next
        self._next_batch = records.next_batch
        self.size_in_bytes = records.size_in_bytes
        self._pos = 0  # where the next batch starts: aiokafka's walk, batch by batch

    def next_batch(self) -> Any:
        batch = self._next_batch()
        if batch is None:
            return None
        fetched, start = self.fetched, self._pos
        end = self._pos = start + _LOG_OVERHEAD + _LENGTH.unpack_from(fetched, start + 8)[0]
        if batch.magic < 2 or batch.is_control_batch:  # no such byte; the broker's own
            return batch
        if not batch.compression_type:
            return batch if read_alike(fetched, start + _HEAD, end) else _ReadAsJava(batch)
        plain = decompressed(fetched, start, end)
        if plain is None:
            return batch
        if not read_alike(plain, 0, len(plain)):
            return _ReadAsJava(batch)
        head = bytearray(fetched[start:start + _HEAD])
        head[_CODEC_AT] &= ~_CODEC_MASK & 0xFF
        return _Decompressed(batch, DefaultRecordBatch(bytes(head) + plain))


class _ReadAsJava:
    """A batch aiokafka's decoder must not read (see :func:`read_alike`): its
    header as aiokafka reads it, and an error for its records, so that :func:`_getall`
    reads them as Kafka's Java consumer does (or halts on what that refuses too)."""

    __slots__ = ("_batch",)

    def __init__(self, batch: Any) -> None:
        self._batch = batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        raise CorruptRecordException(
            "a record attributes byte from 0x80 on, or an offset delta past 32 bits")


class _Decompressed:
    """A compressed batch as fetched (its header, its CRC check) whose records aiokafka
    decodes from the records :class:`KeptRecords` decompressed already (``plain``: the
    batch again, uncompressed), not decompressing them a second time."""

    __slots__ = ("_batch", "_plain")

    def __init__(self, batch: Any, plain: DefaultRecordBatch) -> None:
        self._batch = batch
        self._plain = plain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._plain)


# Every fetch response of this process keeps its bytes, from before any consumer starts
# (the consumers that read kstate's topic import this module).
fetcher_module.MemoryRecords = KeptRecords


def _getall(result: Any, max_records: int | None) -> tuple[list[Any], Halt | None]:
    """``FetchResult.getall``, except that what cannot be decoded ends the drain with
    the records before it and the halt (the offset of the first record not handed over:
    the batch's first, or the record the decoder failed on; why). What Kafka's Java
    consumer reads is not a halt: that batch's records from the failed one on are read
    by :func:`records_after` and handed over like aiokafka's, at most ``max_records`` a
    drain, then the fetch's later batches by aiokafka again."""
    tp = result._topic_partition
    if not result.check_assignment(tp) or not result.has_more():
        return [], None
    records = result._partition_records
    out: list[Any] = []
    while True:
        try:
            for msg in records:
                out.append(msg)
                if max_records is not None and len(out) >= max_records:
                    result._update_position()
                    return out, None
        except Exception as exc:  # whatever the decoder raised: reported as the halt's reason
            read_on = _read_leniently(records)
            if read_on is not None:
                records._records_iterator = read_on
                continue
            result._update_position()  # consumed up to the batch it could not decode
            result._partition_records = None
            return out, (int(records.next_fetch_offset), reason_of(exc))
        result._update_position()
        result._partition_records = None
        return out, None


def _read_leniently(records: Any) -> Iterator[Any] | None:
    """What aiokafka's ``PartitionRecords`` (``records``) would have yielded from the
    record its decoder failed on, had it read the batch as Kafka's Java consumer does,
    if the Java consumer reads it (a header name that is not UTF-8, a record attributes
    byte from 0x80 on): that batch's records read by :func:`records_after`, then the
    fetch's later batches by aiokafka's own loop (its fetched bytes are past the batch
    already), each moving the fetch position as aiokafka does. None when the Java
    consumer refuses the batch too (the halt stands)."""
    fetched = getattr(records._records, "fetched", None)
    if fetched is None:
        return None
    try:
        rest, after = records_after(fetched, records.next_fetch_offset)
    except Exception:  # the batch is broken after all
        return None
    return _lenient(records, rest, after)


def _lenient(records: Any, rest: list[Any], after: int) -> Iterator[Any]:
    tp = records._tp
    for r in rest:
        msg = records._consumer_record(tp, r)
        records.next_fetch_offset = r.offset + 1
        yield msg
    records.next_fetch_offset = after  # the batch's last offset + 1, as aiokafka does
    yield from records._unpack_records()


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
