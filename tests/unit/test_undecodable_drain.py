"""Where a partition stops on what it cannot decode (kstate/bridge/undecodable.py,
``_getall``), with aiokafka's own decoder over real record batches: a batch it cannot
read at all (a bad CRC) stops the partition at the batch's first offset; a record the
decoder fails on (in a batch whose CRC holds) stops it at that record, the records
before it in its batch handed over. What Kafka's Java consumer reads is not such a
failure (a header name that is not UTF-8: each bad sequence U+FFFD; a record attributes
byte from 0x80 on): the batch is read as the Java consumer reads it
(kstate/bridge/java_reading.py), compressed or not, and the partition goes on.
README ("Operating") and docs/design.md say so."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c, encode_varint

from kstate.bridge.java_reading import decode_varint, records_after
from kstate.bridge.undecodable import KeptRecords, _getall

TP = TopicPartition("t", 0)
CRC_AT = struct.calcsize(">qiib")  # Kafka's record batch v2: the CRC's place,
CRC_FROM = struct.calcsize(">qiibI")  # and where the bytes it covers start


def batch(base: int, n: int, headers: dict[int, list[tuple[str, bytes]]] | None = None,
          rename: tuple[bytes, bytes] | None = None, codec: int = 0) -> bytes:
    """A batch of ``n`` records from offset ``base``; ``rename``: replace these bytes of
    a header name by those (any bytes, as a producer other than aiokafka may send),
    keeping the CRC valid; ``codec``: Kafka's compression attribute (1 gzip, 2 snappy,
    3 lz4, 4 zstd)."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i in range(n):
        b.append(i, timestamp=1, key=b"k%d" % (base + i), value=b"v",
                 headers=(headers or {}).get(base + i, []))
    if rename is not None and codec:
        return _compressed(base, n, headers or {}, rename, codec)
    raw = bytearray(b.build())
    raw[0:8] = base.to_bytes(8, "big")  # the base offset (the CRC does not cover it)
    if rename is not None:
        old, new = rename
        assert len(old) == len(new)
        assert raw.count(old) == 1
        raw = bytearray(raw.replace(old, new))
        struct.pack_into(">I", raw, CRC_AT, calc_crc32c(bytes(raw[CRC_FROM:])))
    return bytes(raw)


def _compressed(base: int, n: int, headers: dict[int, list[tuple[str, bytes]]],
                rename: tuple[bytes, bytes], codec: int) -> bytes:
    """The batch compressed with ``codec`` after the rename: its records are built
    uncompressed, renamed, compressed, and the batch's header and CRC made again."""
    plain = bytearray(batch(base, n, headers, rename))
    head = 61  # a v2 batch's header; the records follow
    records = bytes(plain[head:])
    from aiokafka.codec import gzip_encode, lz4_encode, snappy_encode, zstd_encode
    encode = {1: gzip_encode, 2: snappy_encode, 3: lz4_encode, 4: zstd_encode}[codec]
    body = encode(records)
    out = bytearray(plain[:head]) + body
    struct.pack_into(">i", out, 8, len(out) - 12)  # batchLength: what follows it
    attributes_at = struct.calcsize(">qiibI")
    struct.pack_into(">h", out, attributes_at,
                     struct.unpack_from(">h", out, attributes_at)[0] | codec)
    struct.pack_into(">I", out, CRC_AT, calc_crc32c(bytes(out[CRC_FROM:])))
    return bytes(out)


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


def drain_records(raw: bytes, position: int = 0
                  ) -> tuple[list[Any], tuple[int, str] | None, int]:
    """The records handed over, the halt, and the partition's position after, for a
    consumer that checks CRCs and reads committed records (as kstate's do), fetching
    from ``position``: what the fetcher builds (kstate's KeptRecords: aiokafka's records
    and the fetched bytes)."""
    assignment = _Assignment(position)
    records = PartitionRecords(TP, KeptRecords(raw), [], position, None, None, True,
                               READ_COMMITTED)
    result = FetchResult(TP, assignment=assignment, partition_records=records, backoff=0)
    got, halt = _getall(result, None)
    return got, halt, assignment.state.position


def drain(raw: bytes, position: int = 0) -> tuple[list[int], tuple[int, str] | None, int]:
    got, halt, position = drain_records(raw, position)
    return [r.offset for r in got], halt, position


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_a_header_name_that_is_not_utf8_is_read_as_the_java_consumer_reads_it(codec):
    # a batch of 0-1, then one of 2-5 whose record 3 has a header name not in UTF-8
    # beside a well-formed one, then a batch of 6: every record is handed over, the
    # batch after the one read leniently too, and the partition's position is past it
    raw = (batch(0, 2) + batch(2, 4, {3: [("QZQZ", b"v"), ("trace", b"t")]},
                               rename=(b"QZQZ", b"\xff\xfeQZ"), codec=codec)
           + batch(6, 1))
    got, halt, position = drain_records(raw)
    assert halt is None
    assert [r.offset for r in got] == [0, 1, 2, 3, 4, 5, 6]
    assert position == 7
    bad = got[3]
    assert (bad.key, bad.value) == (b"k3", b"v")
    assert bad.headers == (("\ufffd\ufffdQZ", b"v"), ("trace", b"t"))
    assert (bad.timestamp, bad.topic, bad.partition) == (1, "t", 0)
    assert [r.key for r in got] == [b"k%d" % i for i in range(7)]


@pytest.mark.parametrize("bad", [3, 5])
def test_a_header_name_read_leniently_when_the_fetch_starts_inside_its_batch(bad):
    # fetched from offset 4 (the batch starts at 2; Kafka sends the whole batch): the
    # records before 4 are not handed over, whether the bad one is before 4 (aiokafka
    # decodes it on the way) or after
    raw = batch(2, 4, {bad: [("QZQZ", b"v")]}, rename=(b"QZQZ", b"Q\xc3QZ"))
    assert drain(raw, 4) == ([4, 5], None, 6)


def test_a_record_the_decoder_fails_on_stops_the_partition_at_that_record():
    # a batch of 0-1, then one of 2-4 whose record 3 has a header value whose length
    # says one byte less than it has (the record's size no longer adds up; CRC valid)
    raw = batch(0, 2) + batch(2, 3, {3: [("QZQZ", b"vv")]}, rename=(b"QZQZ\x04vv", b"QZQZ\x02vv"))
    offsets, halt, position = drain(raw)
    assert offsets == [0, 1, 2]  # record 2 too, though its batch holds the bad one
    assert halt is not None
    assert halt[0] == 3
    assert "CorruptRecord" in halt[1]
    assert position == 3


def test_a_bad_header_name_in_a_record_broken_otherwise_still_stops_the_partition():
    # the name is not UTF-8 and the record's size does not add up: the lenient reading
    # fails too, and the halt names the decoder's own error
    raw = batch(0, 2) + batch(2, 3, {3: [("QZQZ", b"vv")]},
                              rename=(b"QZQZ\x04vv", b"\xffZQZ\x02vv"))
    offsets, halt, position = drain(raw)
    assert offsets == [0, 1, 2]
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


def test_a_header_name_read_leniently_hands_over_no_more_than_max_records_at_a_time():
    # max_records bounds what one getmany decodes and hands over (a resumed feed's reader
    # relies on it: actors/feed_resume.py READER_MAX_RECORDS), also past a header name
    # read leniently (here two batches have one), and the fetch's later batches are read on
    raw = (batch(0, 2) + batch(2, 6, {3: [("QZQZ", b"v")]}, rename=(b"QZQZ", b"\xff\xfeQZ"))
           + batch(8, 3, {9: [("QZQZ", b"v")]}, rename=(b"QZQZ", b"QZ\xc3Z")))
    assignment = _Assignment(0)
    records = PartitionRecords(TP, KeptRecords(raw), [], 0, None, None, True,
                               READ_COMMITTED)
    result = FetchResult(TP, assignment=assignment, partition_records=records, backoff=0)
    drains: list[list[int]] = []
    while result.has_more():
        got, halt = _getall(result, 2)
        assert halt is None
        drains.append([r.offset for r in got])
    assert all(len(d) <= 2 for d in drains), drains
    assert [o for d in drains for o in d] == list(range(11))  # none skipped or repeated
    assert assignment.state.position == 11


def test_a_broken_batch_after_one_read_leniently_stops_the_partition_at_its_first_offset():
    bad = bytearray(batch(6, 2))
    bad[-1] ^= 0xFF  # its CRC no longer holds
    raw = batch(2, 4, {3: [("QZQZ", b"v")]}, rename=(b"QZQZ", b"\xff\xfeQZ")) + bytes(bad)
    offsets, halt, position = drain(raw, 2)
    assert offsets == [2, 3, 4, 5]
    assert halt is not None
    assert halt[0] == 6
    assert "CorruptRecord" in halt[1]
    assert position == 6


@pytest.mark.parametrize("codec", [0, 4])
def test_a_record_attributes_byte_kafka_leaves_unused_is_read_as_the_java_consumer_reads_it(
        codec):
    # Kafka's record format has an int8 of record attributes, unused: the broker takes
    # any value, Kafka's Java consumer reads one byte and ignores it, aiokafka reads a
    # varint and, from 0x80 on, the rest of the record shifted (CorruptRecordException).
    # Record 3 (in a batch of 2-4) has 0x80 there: every record is handed over.
    raw = (batch(0, 2)
           + batch(2, 3, rename=(b"\x00\x00\x02\x04k3", b"\x80\x00\x02\x04k3"), codec=codec)
           + batch(5, 1))
    got, halt, position = drain_records(raw)
    assert halt is None
    assert [(r.offset, r.key, r.value) for r in got] == [(i, b"k%d" % i, b"v") for i in range(6)]
    assert position == 6


def test_a_batch_whose_crc_fails_is_not_read_as_the_java_consumer_reads_it_either():
    # its records parse, but a value byte is not what the producer sent (the CRC says
    # so): no reading hands it over, the partition stops at the batch
    raw = bytearray(batch(0, 2) + batch(2, 3))
    assert raw[-2:] == b"v\x00"  # the last record's value, then its header count
    raw[-2] = ord("w")
    offsets, halt, position = drain(bytes(raw))
    assert offsets == [0, 1]
    assert halt is not None
    assert halt[0] == 2
    assert "CRC" in halt[1]
    assert position == 2


def test_a_control_batch_is_never_read_as_records():
    # a transaction's marker is the broker's; were aiokafka's decoder to fail on one,
    # reading it as the Java consumer reads batches must not hand its record over as data
    raw = bytearray(batch(2, 1))
    attributes_at = struct.calcsize(">qiibI")
    struct.pack_into(">h", raw, attributes_at, 0x30)  # transactional, control
    struct.pack_into(">I", raw, CRC_AT, calc_crc32c(bytes(raw[CRC_FROM:])))
    with pytest.raises(CorruptRecordException):
        records_after(bytes(raw), 2)


def varint(n: int) -> bytes:
    out = bytearray()
    encode_varint(n, out.append)
    return bytes(out)


def read_two_ways(base: int, victim: bytes, codec: int = 0) -> bytes:
    """A batch from ``base`` whose last record has the attributes byte 0x80 and is laid
    out so that aiokafka's varint reading of that byte adds up, every length check
    passing (tests/integration/test_other_producers.py batch_read_two_ways tells how):
    read so, it is a tombstone of ``victim``; read as Kafka's Java consumer reads it
    (one byte), a tombstone of a key that holds ``victim`` and more."""
    java_key = varint(len(victim)) + victim + varint(-1) + varint(1) + varint(0) + varint(2)
    n = len(java_key)
    plain = bytearray(batch(base, n + 1))
    pos = 61
    for _ in range(n):
        length, pos = decode_varint(plain, pos)
        pos += length
    body = b"\x80" + varint(0) + varint(n) + varint(n) + java_key + varint(-1) + varint(0)
    plain = plain[:pos] + varint(len(body)) + body
    if codec:
        from aiokafka.codec import gzip_encode, lz4_encode, snappy_encode, zstd_encode
        encode = {1: gzip_encode, 2: snappy_encode, 3: lz4_encode, 4: zstd_encode}[codec]
        plain = plain[:61] + encode(bytes(plain[61:]))
        attributes_at = struct.calcsize(">qiibI")
        struct.pack_into(">h", plain, attributes_at, codec)
    struct.pack_into(">i", plain, 8, len(plain) - 12)
    struct.pack_into(">I", plain, CRC_AT, calc_crc32c(bytes(plain[CRC_FROM:])))
    return bytes(plain)


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("position", [0, 3, 10])
def test_a_record_attributes_byte_aiokafka_misreads_without_failing_is_read_as_java_reads_it(
        codec, position):
    # aiokafka's own decoder reads the crafted record without an error, as a tombstone
    # of the victim; the Java consumer's reading (records_after) as a tombstone of
    # another key. What is handed over is the Java consumer's reading, the records
    # around it aiokafka's, whether the fetch starts before the batch or inside it.
    victim = b"victim@example.com"
    crafted = read_two_ways(2, victim, codec)
    misread = list(DefaultRecordBatch(crafted))[-1]
    assert (misread.key, misread.value) == (victim, None)
    n = len(victim) + 5
    java, after = records_after(crafted, 2 + n)
    assert after == 3 + n
    assert [(r.offset, r.value) for r in java] == [(2 + n, None)]
    assert java[0].key != victim
    # a fetch holds the batches from the one that holds its position on
    raw = (batch(0, 2) if position < 2 else b"") + crafted + batch(3 + n, 2)
    got, halt, end = drain_records(raw, position)
    assert halt is None
    assert [r.offset for r in got] == list(range(position, 5 + n))
    assert [(r.key, r.value) for r in got if r.offset == 2 + n] == [(java[0].key, None)]
    assert all((r.key, r.value) == (b"k%d" % r.offset, b"v")
               for r in got if r.offset != 2 + n)
    assert end == 5 + n


@pytest.mark.parametrize("codec", [0, 4])
@pytest.mark.parametrize(("wide", "delta"), [(bytes([0x82, 0x80, 0x80, 0x80, 0x10]), 1),
                                             (bytes([0x82, 0x80, 0x80, 0x80, 0x70]), 1),
                                             (bytes([0x82, 0x80, 0x80, 0x80, 0x00]), 1)],
                         ids=["bit 32", "bits 32-34", "no bit past 32"])
def test_an_offset_delta_past_32_bits_is_read_as_the_java_consumer_reads_it(codec, wide, delta):
    # record 3 (in a batch of 2-5) has its offset delta (1) in five bytes, with bits
    # past 32 set or not: the Java consumer reads an int32 (the bits past 32 fall away),
    # aiokafka an int64 (an offset 2**31 or more past, then the batch's later records
    # skipped as read already). Every record is handed over at the Java consumer's offset.
    plain = bytearray(batch(2, 4))
    pos = 61
    length, pos = decode_varint(plain, pos)
    pos += length  # record 2; record 3 follows
    length, body_at = decode_varint(plain, pos)
    body = plain[body_at:body_at + length]
    assert body[1:3] == bytes([0, 2 * delta])  # attributes; timestamp delta 0, offset delta
    body = body[:2] + wide + body[3:]
    raw = bytearray(plain[:pos] + varint(len(body)) + body + plain[body_at + length:])
    if codec:
        from aiokafka.codec import zstd_encode
        raw = raw[:61] + zstd_encode(bytes(raw[61:]))
        struct.pack_into(">h", raw, struct.calcsize(">qiibI"), codec)
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    struct.pack_into(">I", raw, CRC_AT, calc_crc32c(bytes(raw[CRC_FROM:])))
    got, halt, position = drain_records(batch(0, 2) + bytes(raw) + batch(6, 1))
    assert halt is None
    assert [(r.offset, r.key) for r in got] == [(i, b"k%d" % i) for i in range(7)]
    assert position == 7


def test_a_key_length_past_32_bits_is_read_as_the_java_consumer_reads_it():
    # record 3 (in a batch of 2-4) has its key's length (2) in five bytes with bit 32
    # set: the Java consumer reads an int32 (2), aiokafka an int64 and fails on a key
    # past the record's end; the Java consumer's reading used to fail the same way (the
    # partition halted), it reads the key now
    plain = bytearray(batch(2, 3))
    pos = 61
    length, pos = decode_varint(plain, pos)
    pos += length  # record 2; record 3 follows
    length, body_at = decode_varint(plain, pos)
    body = plain[body_at:body_at + length]
    assert body[1:6] == b"\x00\x02\x04k3"  # attributes, timestamp and offset deltas, key
    body = body[:3] + bytes([0x84, 0x80, 0x80, 0x80, 0x10]) + body[4:]
    raw = bytearray(plain[:pos] + varint(len(body)) + body + plain[body_at + length:])
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    struct.pack_into(">I", raw, CRC_AT, calc_crc32c(bytes(raw[CRC_FROM:])))
    got, halt, position = drain_records(batch(0, 2) + bytes(raw))
    assert halt is None
    assert [(r.offset, r.key, r.value) for r in got] == [(i, b"k%d" % i, b"v") for i in range(5)]
    assert position == 5
