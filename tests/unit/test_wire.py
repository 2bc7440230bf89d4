"""The wire contract (kstate/core/wire.py) and the partitioner: the names, formats and
quoting every node, peer and client shares."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kstate.core import wire
from kstate.core.partitioner import murmur2, partition_for

REPO = Path(__file__).resolve().parents[2]

# Kafka's own test vectors for Utils.murmur2 (clients/src/test/.../UtilsTest.java).
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), sorted(KAFKA_MURMUR2.items()))
def test_murmur2_matches_kafkas_vectors(data, expected):
    assert murmur2(data) == expected


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=1000))
def test_partition_is_in_range(key, n):
    assert 0 <= partition_for(key, n) < n
    assert -(2**31) <= murmur2(key) < 2**31


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=2**62))
def test_etag_round_trips(partition, offset):
    tag = wire.etag(partition, offset)
    assert tag == f'"{partition}-{offset}"'
    assert wire.parse_etag(tag) == (partition, offset)


@pytest.mark.parametrize("bad", ["", '""', '"1-"', '"-1"', "1-2", '"a-1"', '"1-2"x',
                                 '"\u0661-2"', '"1--2"', "'1-2'", "*",
                                 # int() refuses over 4,300 digits: no ValueError here
                                 pytest.param('"0-' + "1" * 5000 + '"', id="long-offset"),
                                 pytest.param('"' + "1" * 5000 + '-0"', id="long-partition"),
                                 '"1-' + "9" * 20 + '"', '"' + "9" * 11 + '-1"'])
def test_parse_etag_refuses_what_is_not_one(bad):
    assert wire.parse_etag(bad) is None


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60))
def test_user_path_is_one_segment_that_decodes_back(email):
    path = wire.user_path(email)
    assert path.startswith(wire.REST_PREFIX)
    segment = path[len(wire.REST_PREFIX):]
    assert "/" not in segment
    assert "?" not in segment
    assert "#" not in segment
    assert urllib.parse.unquote(segment) == email


@pytest.mark.parametrize(("decoded", "sent"), [
    ("/users/a@b.c", "/users/a@b.c"),
    ("/users/a%41@b.c", "/users/a%2541@b.c"),  # a literal %41 stays that key
    ("/users/a?b@c.d", "/users/a%3Fb@c.d"),
    ("/users/a#b@c.d", "/users/a%23b@c.d"),
    ("/users/é@b.c", "/users/%C3%A9@b.c"),
    ("/user", "/user"),
])
def test_quote_path_keeps_the_key(decoded, sent):
    assert wire.quote_path(decoded) == sent
    assert urllib.parse.unquote(sent) == decoded


@pytest.mark.parametrize(("raw", "hops"), [
    (None, 0), ("", 0), ("0", 0), ("2", 2), (" 3 ", 3), ("-1", 0), ("x", 0), ("²", 0),
    ("1_0", 0), ("99999999999999999999", 10**18)])
def test_parse_hops(raw, hops):
    assert wire.parse_hops(raw) == hops


@pytest.mark.parametrize(("raw", "generation"), [
    (None, None), ("", None), ("7", 7), ("-1", -1), ("x", None), ("²", None),
    ("1" * 19, None), ("0x5", None)])
def test_parse_generation(raw, generation):
    assert wire.parse_generation(raw) == generation


def test_error_body_is_the_one_json_shape():
    assert orjson.loads(wire.error_body("not_found", "no user")) == {
        "error": "not_found", "message": "no user"}
    assert wire.retry_after_value(0.2) == "1"
    assert wire.retry_after_value(2.4) == "2"


def _python_sources() -> list[Path]:
    return [p for top in ("kstate", "actors", "web") for p in (REPO / top).rglob("*.py")]


@pytest.mark.parametrize("literal", [
    wire.HOPS_HEADER, wire.GENERATION_HEADER, wire.CLUSTER_AUTH_HEADER, wire.REST_PREFIX,
    wire.SEGMENT_SAFE])
def test_each_wire_name_is_spelled_in_one_module(literal):
    """A header name, prefix or quoting rule is defined once (kstate/core/wire.py);
    the server, the proxy and the client import it."""
    pattern = re.compile(re.escape(f'"{literal}"') + "|" + re.escape(f"'{literal}'"))
    spelled = sorted(str(p.relative_to(REPO)) for p in _python_sources()
                     if pattern.search(p.read_text()))
    assert spelled == ["kstate/core/wire.py"], spelled
