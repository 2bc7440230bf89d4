"""(asyncio side) Records aiokafka's decoder refuses that Kafka's Java consumer reads,
read as the Java consumer reads them.

Kafka's record format leaves three things to the reader that the broker never checks
(it reads them as the Java consumer does), and aiokafka reads them otherwise:

- a header *name* is a string, but any bytes pass: a producer other than kstate
  (franz-go takes any bytes for a name) can write one that is not UTF-8. The Java
  consumer reads it with each bad sequence replaced by U+FFFD; aiokafka's decoder raises
  ``UnicodeDecodeError``. Such a name can never be one of kstate's (they are ASCII), so
  the record is an ordinary record with a foreign header;
- a record's *attributes* are an int8 the format does not use: the Java consumer reads
  one byte and ignores it, aiokafka reads a varint, so from 0x80 on it reads the rest
  of the record shifted: mostly it raises ``CorruptRecordException``, but a record can
  be laid out so that the shifted reading adds up, every length check passing, to
  another key, value, offset or headers than the Java consumer reads;
- a record's lengths, counts and offset delta are int32 varints to the Java consumer
  (at most 5 bytes, the bits past 32 falling away), int64 ones to aiokafka: a length
  written with bits past 32 makes aiokafka's decoder fail, an offset delta so written
  is to it an offset 2**31 away or more, without an error.

A failure would stop the partition there for good (kstate/bridge/undecodable.py), a
misreading apply what the Java consumer does not read. Instead, :func:`records_after`
decodes, from the bytes of one fetch, the record batch that holds a given offset the
way the Java consumer does, by Kafka's record batch format (v2; older formats have
none of these), CRC checked: the record rule then applies to its records as to any
other, live and on replay alike. It is called once aiokafka's decoder has failed in a
batch, and for a batch in which :func:`read_alike` finds what aiokafka would misread
before aiokafka's decoder reads it (kstate/bridge/undecodable.py); what the Java
consumer refuses too (a bad CRC, a record whose fields do not add up, a codec this
machine lacks) still raises, and the partition stops as before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import CorruptRecordException
from aiokafka.record.util import calc_crc32c

# Record batch v2: baseOffset int64, batchLength int32, partitionLeaderEpoch int32,
# magic int8, crc uint32, attributes int16, lastOffsetDelta int32, baseTimestamp int64,
# maxTimestamp int64, producerId int64, producerEpoch int16, baseSequence int32,
# records count int32, then the records (compressed as a whole when a codec is set).
_HEAD = struct.Struct(">qiibIhiqqqhii")
_LENGTH = struct.Struct(">i")
_LENGTH_AT = 8  # batchLength: the bytes after it (the first 12 are offset and length)
_MAGIC_AT = 16
_CRC_FROM = 21  # the CRC covers the batch from its attributes on
_CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_CONTROL = 0x20
_DECODERS = {1: gzip_decode, 2: snappy_decode, 3: lz4_decode, 4: zstd_decode}


@dataclass(frozen=True, slots=True)
class LenientRecord:
    """What aiokafka's fetcher reads of a decoded record (it builds the ConsumerRecord)."""
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


def records_after(fetched: bytes | memoryview, offset: int) -> tuple[list[LenientRecord], int]:
    """The records at or after ``offset`` of the batch in ``fetched`` that holds it (the
    first batch that ends past it), and the offset after that batch. Raises
    ``CorruptRecordException`` when there is no such v2 batch or it does not parse."""
    data = memoryview(fetched)
    pos = 0
    while pos + _HEAD.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, pos + _LENGTH_AT)
        end = pos + _LENGTH_AT + 4 + length
        if length <= 0 or end > len(data):
            break
        if data[pos + _MAGIC_AT] >= 2:
            head = _HEAD.unpack_from(data, pos)
            base, last_delta = head[0], head[6]
            if base + last_delta + 1 > offset:
                if calc_crc32c(data[pos + _CRC_FROM:end].tobytes()) != head[4]:
                    raise CorruptRecordException(f"record batch at {base}: invalid CRC")
                return _batch_records(head, data[pos + _HEAD.size:end], offset), \
                    base + last_delta + 1
        pos = end
    raise CorruptRecordException(f"no record batch holds offset {offset}")


def decompressed(fetched: bytes, start: int, end: int) -> bytes | None:
    """The records of the compressed v2 batch ``fetched[start:end]``, decompressed as
    aiokafka's decoder does (the same codec functions); None when they cannot be (a
    codec missing, bytes no codec takes): aiokafka's decoder is then left to fail on
    the batch itself."""
    attributes = fetched[start + _CRC_FROM] << 8 | fetched[start + _CRC_FROM + 1]
    try:
        return bytes(_DECODERS[attributes & _CODEC_MASK](fetched[start + _HEAD.size:end]))
    except Exception:  # whatever the codec raises: aiokafka's decoder raises it too
        return None


def read_alike(buf: bytes, pos: int, end: int) -> bool:
    """Whether aiokafka's decoder reads the records ``buf[pos:end]`` (a v2 batch's,
    uncompressed) as Kafka's Java consumer does, where the two may differ without
    aiokafka's failing. False when a record has
    - an attributes byte from 0x80 on: aiokafka reads that byte as a varint, so it reads
      the rest of the record shifted, and a record can be laid out so that the shifted
      reading adds up, every length check passing, to another key, value, offset or
      headers than the Java consumer reads;
    - an offset delta in 5 bytes or more: the Java consumer reads an int32, the bits
      past 32 falling away, aiokafka an int64, an offset 2**31 away or more (and it
      then skips the batch's later records as read already).
    (Lengths and counts read so differ too, but aiokafka's decoder fails on those.)
    Such a batch is read by :func:`records_after` instead. Only each record's length,
    attributes byte and offset delta are looked at (this runs for every record a
    consumer reads); True for records it cannot walk, which aiokafka's decoder fails
    on."""
    try:
        while pos < end:
            raw = buf[pos]  # the record's length, a zigzag varint: inline up to 2 bytes
            if raw < 0x80:
                pos += 1
            elif buf[pos + 1] < 0x80:
                raw = (raw & 0x7F) | buf[pos + 1] << 7
                pos += 2
            else:
                length, pos = decode_varint(buf, pos)
                raw = max(length, 0) << 1
            # a negative length is taken for a positive one, not checked (it costs): the
            # walk moves on all the same, and such a record no reading accepts
            if buf[pos] >= 0x80:
                return False
            at = pos + 1  # the timestamp delta, then the offset delta
            while buf[at] >= 0x80:
                at += 1
            if buf[at + 1] >= 0x80 and buf[at + 2] >= 0x80 and buf[at + 3] >= 0x80 \
                    and buf[at + 4] >= 0x80:
                return False
            pos += raw >> 1
    except (IndexError, CorruptRecordException):  # past the end: aiokafka fails on it
        return True
    return True


def _batch_records(head: tuple[int, ...], body: memoryview,
                   offset: int) -> list[LenientRecord]:
    base, attributes, first_ts, max_ts, count = head[0], head[5], head[7], head[8], head[12]
    if attributes & _CONTROL:  # a transaction's marker: the broker's, never data
        raise CorruptRecordException(f"control batch at {base}")
    codec = attributes & _CODEC_MASK
    if codec:
        decoder = _DECODERS.get(codec)
        if decoder is None:
            raise CorruptRecordException(f"unknown compression codec {codec}")
        buf = bytes(decoder(body.tobytes()))
    else:
        buf = body.tobytes()
    log_append = bool(attributes & _LOG_APPEND_TIME)
    ts_type = 1 if log_append else 0
    out: list[LenientRecord] = []
    pos = 0
    try:
        for _ in range(count):
            length, pos = decode_varint32(buf, pos)
            end = pos + length
            pos += 1  # the record's attributes: one byte, unused by the format so far
            ts_delta, pos = decode_varint(buf, pos)
            offset_delta, pos = decode_varint32(buf, pos)
            key, pos = _nullable_bytes(buf, pos)
            value, pos = _nullable_bytes(buf, pos)
            n_headers, pos = decode_varint32(buf, pos)
            if n_headers < 0:
                raise CorruptRecordException(f"{n_headers} record headers")
            headers: list[tuple[str, bytes | None]] = []
            for _ in range(n_headers):
                name_len, pos = decode_varint32(buf, pos)
                if name_len < 0:
                    raise CorruptRecordException(f"header name of length {name_len}")
                if pos + name_len > len(buf):
                    raise CorruptRecordException("a header name runs past its record")
                name = buf[pos:pos + name_len].decode("utf-8", "replace")
                pos += name_len
                header_value, pos = _nullable_bytes(buf, pos)
                headers.append((name, header_value))
            if pos != end:
                raise CorruptRecordException(
                    f"record of {length} bytes read as {pos - end + length}")
            if base + offset_delta >= offset:
                out.append(LenientRecord(base + offset_delta,
                                         max_ts if log_append else first_ts + ts_delta,
                                         ts_type, key, value, headers))
    except IndexError as exc:
        raise CorruptRecordException(f"record batch at {base}: {exc!r}") from exc
    if pos != len(buf):
        raise CorruptRecordException(f"{len(buf) - pos} bytes after the records of batch {base}")
    return out


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos`` read as Kafka's Java consumer reads a varlong (the
    timestamp delta), an int64, and the position after it. aiokafka's compiled one reads
    past the end of a buffer; this raises IndexError."""
    return _zigzag(buf, pos, 64)


def decode_varint32(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos`` read as Kafka's Java consumer reads one (a length, a
    count, the offset delta): at most 5 bytes, an int32, the bits past 32 falling away
    (aiokafka keeps them: the same bytes give it another number), and the position
    after it."""
    return _zigzag(buf, pos, 32)


def _zigzag(buf: bytes, pos: int, bits: int) -> tuple[int, int]:
    """A zigzag varint of at most ``bits`` bits (Java's readVarint / readVarlong: at
    most ceil(bits / 7) bytes, the bits past ``bits`` falling away)."""
    last_shift = 7 * (-(-bits // 7) - 1)
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            value &= (1 << bits) - 1
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > last_shift:
            raise CorruptRecordException(f"a varint longer than {last_shift // 7 + 1} bytes")


def _nullable_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint32(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise CorruptRecordException("a field runs past its record")
    return buf[pos:pos + length], pos + length
