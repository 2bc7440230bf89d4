"""Where a partition stops on what it cannot decode (kstate/bridge/undecodable.py,
``_getall``), with aiokafka's own decoder over real record batches: a batch it cannot
read at all (a bad CRC) stops the partition at the batch's first offset; a record the
decoder fails on (a header name that is not UTF-8, in a batch whose CRC holds) stops it
at that record, the records before it in its batch handed over. README ("Operating")
and docs/design.md say so."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c

from kstate.bridge.undecodable import _getall

TP = TopicPartition("t", 0)
CRC_AT = struct.calcsize(">qiib")  # Kafka's record batch v2: the CRC's place,
CRC_FROM = struct.calcsize(">qiibI")  # and where the bytes it covers start


def batch(base: int, n: int, headers: dict[int, list[tuple[str, bytes]]] | None = None,
          rename: tuple[bytes, bytes] | None = None) -> bytes:
    """A batch of ``n`` records from offset ``base``; ``rename``: replace these bytes of
    a header name by those (any bytes, as a producer other than aiokafka may send),
    keeping the CRC valid."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i in range(n):
        b.append(i, timestamp=1, key=b"k%d" % (base + i), value=b"v",
                 headers=(headers or {}).get(base + i, []))
    raw = bytearray(b.build())
    raw[0:8] = base.to_bytes(8, "big")  # the base offset (the CRC does not cover it)
    if rename is not None:
        old, new = rename
        assert len(old) == len(new)
        assert raw.count(old) == 1
        raw = bytearray(raw.replace(old, new))
        struct.pack_into(">I", raw, CRC_AT, calc_crc32c(bytes(raw[CRC_FROM:])))
    return bytes(raw)


@dataclass
class _State:
    position: int
    paused: bool = False

    def consumed_to(self, offset: int) -> None:
        self.position = offset


class _Assignment:
    """What FetchResult asks of the consumer's assignment: the partition is assigned,
    not paused, at ``position``."""

    active = True

    def __init__(self, position: int) -> None:
        self.state = _State(position)

    def state_value(self, tp: TopicPartition) -> _State:
        return self.state


def drain(raw: bytes) -> tuple[list[int], tuple[int, str] | None, int]:
    """The offsets handed over, the halt, and the partition's position after, for a
    consumer that checks CRCs and reads committed records (as kstate's do)."""
    assignment = _Assignment(0)
    records = PartitionRecords(TP, MemoryRecords(raw), [], 0, None, None, True,
                               READ_COMMITTED)
    result = FetchResult(TP, assignment=assignment, partition_records=records, backoff=0)
    got, halt = _getall(result, None)
    return [r.offset for r in got], halt, assignment.state.position


def test_a_record_the_decoder_fails_on_stops_the_partition_at_that_record():
    # a batch of 0-1, then one of 2-4 whose record 3 has a header name not in UTF-8
    raw = batch(0, 2) + batch(2, 3, {3: [("QZQZ", b"v")]}, rename=(b"QZQZ", b"\xff\xfeQZ"))
    offsets, halt, position = drain(raw)
    assert offsets == [0, 1, 2]  # record 2 too, though its batch holds the bad one
    assert halt is not None
    assert halt[0] == 3
    assert "UnicodeDecodeError" in halt[1]
    assert position == 3


def test_a_batch_that_cannot_be_read_stops_the_partition_at_its_first_offset():
    raw = bytearray(batch(0, 2) + batch(2, 3))
    raw[-1] ^= 0xFF  # the second batch's last byte: its CRC no longer holds
    offsets, halt, position = drain(bytes(raw))
    assert offsets == [0, 1]
    assert halt is not None
    assert halt[0] == 2
    assert "CorruptRecord" in halt[1]
    assert position == 2
