"""The node <-> producer process frames (kstate/bridge/produce_wire.py): whatever the
records and however the socket splits the bytes, each side reads back exactly what the
other wrote, in order."""

from __future__ import annotations

import itertools
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kstate.bridge.config import KafkaConfig
from kstate.bridge.produce_wire import (
    LogLine,
    Reply,
    ReplyReader,
    Request,
    RequestReader,
    WireError,
    encode_log,
    encode_reply,
    encode_request,
    encode_sized,
)

requests = st.builds(
    Request,
    id=st.integers(1, 2**32 - 1),
    partition=st.integers(0, 2**31 - 1),
    key=st.binary(max_size=64),
    value=st.none() | st.binary(max_size=256),
    headers=st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=16)),
                     max_size=3).map(tuple),
)
replies = st.builds(Reply, id=st.integers(0, 2**32 - 1), offset=st.integers(0, 2**63 - 1)) | \
    st.builds(Reply, id=st.integers(0, 2**32 - 1), offset=st.none(), error=st.text(max_size=80),
              too_large=st.booleans())
log_lines = st.builds(LogLine, level=st.integers(0, 50),
                      logger=st.text(max_size=20).filter(lambda t: "\0" not in t),
                      message=st.text(max_size=200))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.lists(requests, max_size=6), st.lists(st.integers(0, 10_000), max_size=8))
def test_requests_read_back_in_order_however_split(sent: list[Request], cuts: list[int]
                                                   ) -> None:
    config = KafkaConfig(bootstrap="h:1", topic="t", sasl_password="secret")
    data = encode_sized(pickle.dumps(config)) + b"".join(encode_request(r) for r in sent)
    reader = RequestReader()
    got: list[Request] = []
    first = None
    for chunk in _chunks(data, cuts):
        reader.feed(chunk)
        if first is None:
            first = reader.sized()
            if first is None:
                continue
        got += reader.requests()
    assert first is not None
    assert pickle.loads(first) == config
    assert got == sent


@given(st.lists(replies | log_lines, max_size=6),
       st.lists(st.integers(0, 10_000), max_size=8))
def test_replies_and_log_lines_read_back_in_order_however_split(
        sent: list[Reply | LogLine], cuts: list[int]) -> None:
    data = b"".join(encode_reply(r) if isinstance(r, Reply) else encode_log(r) for r in sent)
    reader = ReplyReader()
    got: list[Reply | LogLine] = []
    for chunk in _chunks(data, cuts):
        reader.feed(chunk)
        got += reader.replies()
    assert got == sent


def test_a_null_value_and_an_empty_one_stay_apart() -> None:
    reader = RequestReader()
    reader.feed(encode_request(Request(1, 0, b"k", None, ())) +
                encode_request(Request(2, 0, b"k", b"", ())))
    assert [r.value for r in reader.requests()] == [None, b""]


def test_a_frame_that_cannot_be_ours_raises() -> None:
    reader = ReplyReader()
    reader.feed(b"\x00\x00\x00\x01\x07" + b"\x00" * 8)  # status 7: neither ok nor failed
    with pytest.raises(WireError):
        reader.replies()
