"""Kafka's default partitioner: murmur2 of the key, made positive, modulo the partition
count: where the Java client, franz-go and aiokafka put a keyed record by default, and
so where kstate looks for a key. Not every client does by default: librdkafka's
``consistent_random`` hashes with CRC32 and Sarama's hash partitioner with FNV-1a; a
producer using either writes most keys to another partition, where every node ignores
them (README, "Other producers"). Pure Python: the public client and the router use it
without pulling in a Kafka client.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
# Unpackers of n little-endian 32-bit words, for keys up to 1 KiB (longer keys build theirs).
_WORDS = [struct.Struct(f"<{n}I") for n in range(257)]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (``org.apache.kafka.common.utils.Utils.murmur2``)
    as a signed 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    unpack = _WORDS[words] if words < len(_WORDS) else struct.Struct(f"<{words}I")
    for k in unpack.unpack_from(data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, num_partitions: int) -> int:
    """The partition of a keyed record among ``num_partitions`` (Kafka's rule:
    ``toPositive(murmur2(key)) % numPartitions``)."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
