"""The writer's size of a record (actors/writer.py record_bytes) is the size of the
batch Kafka checks against max.message.bytes when the record travels alone,
uncompressed: the same bytes as aiokafka's own batch builder, to the byte, so a
record just over the topic's limit is a 413 and not "retry"."""

from __future__ import annotations

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from actors.writer import _too_large, record_bytes
from kstate.core.outcomes import TooLarge

HEADERS = st.lists(st.tuples(st.text(min_size=1, max_size=40),
                             st.binary(max_size=300)), max_size=4).map(tuple)
VALUES = st.one_of(st.none(), st.binary(max_size=300),
                   st.integers(min_value=120, max_value=20_000).map(lambda n: b"v" * n))


def built(key: bytes, value: bytes | None, headers: tuple[tuple[str, bytes], ...]) -> int:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                  producer_id=1, producer_epoch=0, base_sequence=0,
                                  batch_size=10**7)
    b.append(0, timestamp=None, key=key, value=value, headers=list(headers))
    return len(b.build())


@given(st.binary(min_size=1, max_size=300), VALUES, HEADERS)
def test_record_bytes_is_the_batch_aiokafka_builds(key, value, headers):
    assert record_bytes(key, value, headers) == built(key, value, headers)


def test_a_record_one_byte_over_the_limit_is_too_large():
    key, value = b"k@example.com", b"x" * 4000
    headers = (("kstate-epoch", b"1048576"),)
    size = built(key, value, headers)
    assert isinstance(_too_large(record_bytes(key, value, headers), size - 1), TooLarge)
    assert not isinstance(_too_large(record_bytes(key, value, headers), size), TooLarge)
