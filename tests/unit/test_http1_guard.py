"""The guard of handed-over connections (web/http1/guard.py) as a plain function of the
bytes it is fed: whatever the read boundaries, it passes well-formed requests on byte
for byte (an h2c upgrade request among them: it reads on after one), stops exactly
after a request that ends the connection, and puts a stand-in exactly where a refused
head was, the HTTP/2 preface's included; after a websocket handshake it holds what
comes until the handshake's answer, then passes it on (a 101) or drops it."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from web.http1.guard import DROP, HANDSHAKE, PASS, Guard, Refusals


@st.composite
def request(draw: st.DrawFn) -> bytes:
    path = b"/p" + draw(st.binary(min_size=0, max_size=8)).hex().encode()
    body = draw(st.binary(max_size=40))
    kind = draw(st.sampled_from(["none", "length", "chunked", "h2c"]))
    head = b"PUT " + path + b" HTTP/1.1\r\nHost: h\r\n"
    if kind == "none":
        return b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    if kind == "h2c":  # an upgrade hypercorn is kept from making: plain HTTP/1.1
        return (b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, "
                b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    if kind == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                      for i in range(0, len(body), 7))
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


def feed_in_pieces(guard: Guard, data: bytes, cuts: list[int]) -> bytes:
    out, start = [], 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        out.append(guard.feed(data[start:cut]) if cut > start else b"")
        start = max(start, cut)
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(request(), min_size=1, max_size=6), st.lists(st.integers(0, 4000)))
def test_well_formed_requests_pass_byte_for_byte_however_they_are_read(requests, cuts):
    data = b"".join(requests)
    guard = Guard(Refusals(), 16384)
    assert feed_in_pieces(guard, data, cuts) == data
    assert guard.mode != DROP


@settings(max_examples=200, deadline=None)
@given(st.lists(request(), max_size=4), st.binary(max_size=60), st.lists(st.integers(0, 4000)))
def test_nothing_after_a_request_that_ends_the_connection_is_passed_on(before, junk, cuts):
    last = b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    data = b"".join(before) + last
    guard = Guard(Refusals(), 16384)
    assert feed_in_pieces(guard, data + junk, cuts) == data
    assert guard.mode == DROP


CHUNKED_PUT = b"PUT /users/a@b.c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(request(), max_size=4), st.binary(max_size=20),
       st.sampled_from([b"10000000000000000", b"FFFFFFFFFFFFFFFFFFFF", b"0" + b"f" * 17]),
       st.lists(st.integers(0, 4000)))
def test_a_chunk_over_64_bits_becomes_a_line_hypercorn_refuses(before, chunk, size, cuts):
    """The lean path's parser refuses a chunk over 2^64 - 1 bytes; h11 would wait for
    it. What the guard passes on makes hypercorn's h11 fail where the line was, so it
    answers as for any malformed chunked framing (its answer is the front's JSON 400)."""
    good = b"".join(before) + CHUNKED_PUT + (b"%x\r\n%s\r\n" % (len(chunk), chunk)
                                            if chunk else b"")
    guard = Guard(Refusals(), 16384)
    out = feed_in_pieces(guard, good + size + b"\r\nabc\r\n0\r\n\r\n", cuts)
    assert out == good + b"-\r\n"
    assert guard.mode == DROP
    hypercorns = h11.Connection(h11.SERVER)
    hypercorns.receive_data(out[len(b"".join(before)):])
    with pytest.raises(h11.RemoteProtocolError):
        _events_until_more_is_needed(hypercorns)


def _events_until_more_is_needed(conn: h11.Connection) -> None:
    while conn.next_event() is not h11.NEED_DATA:
        pass


@pytest.mark.parametrize("size", [b"ffffffffffffffff", b"0" * 19 + b"3"])
def test_a_chunk_within_64_bits_passes(size):
    data = CHUNKED_PUT + size + b"\r\nabc"
    guard = Guard(Refusals(), 16384)
    assert guard.feed(data) == data
    assert guard.mode != DROP


@settings(max_examples=200, deadline=None)
@given(st.lists(request(), max_size=4), st.lists(st.integers(0, 4000)))
def test_a_refused_head_is_replaced_by_its_stand_in_after_the_requests_before_it(before, cuts):
    refusals = Refusals()
    guard = Guard(refusals, 16384)
    good = b"".join(before)
    bad = b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nz"
    out = feed_in_pieces(guard, good + bad + b"GET / HTTP/1.1\r\n\r\n", cuts)
    assert out.startswith(good)
    stand_in = out[len(good):]
    assert stand_in.startswith(b"GET /.front-refusal/")
    assert stand_in.endswith(b"\r\nconnection: close\r\n\r\n")
    assert len(refusals) == 1
    guard.close()
    assert len(refusals) == 0  # the connection ended before hypercorn asked for it


@settings(max_examples=100, deadline=None)
@given(st.lists(request(), max_size=4), st.lists(st.integers(0, 4000)))
def test_the_http2_preface_is_refused_after_the_requests_before_it(before, cuts):
    refusals = Refusals()
    guard = Guard(refusals, 16384)
    good = b"".join(before)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    out = feed_in_pieces(guard, good + preface, cuts)
    assert out.startswith(good)
    assert out[len(good):].startswith(b"GET /.front-refusal/")
    assert guard.mode == DROP
    [(status, code, _, _)] = refusals._waiting.values()
    assert (status, code) == (400, "http2_not_supported")


WEBSOCKET = (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked "Hello" (RFC 6455 §5.7)


@settings(max_examples=100, deadline=None)
@given(st.lists(request(), max_size=4), st.binary(min_size=1, max_size=40))
def test_bytes_sent_with_a_websocket_handshake_replace_it_by_a_stand_in(before, after):
    """Bytes read together with a handshake's head, so before its answer (which RFC
    6455 §4.1 forbids): the handshake is refused in its turn."""
    refusals = Refusals()
    guard = Guard(refusals, 16384)
    good = b"".join(before)
    out = guard.feed(good + WEBSOCKET + after)
    assert out.startswith(good)
    assert out[len(good):].startswith(b"GET /.front-refusal/")
    assert guard.mode == DROP
    [(status, code, _, _)] = refusals._waiting.values()
    assert (status, code) == (400, "bad_websocket_handshake")


SWITCHED = b"HTTP/1.1 101 \r\nupgrade: WebSocket\r\n\r\n"
REFUSED = b"HTTP/1.1 403 \r\ncontent-length: 0\r\n\r\n"


@pytest.mark.parametrize("answer", [SWITCHED, REFUSED], ids=["switched", "refused"])
def test_bytes_after_a_websocket_handshake_wait_for_its_answer(answer):
    """Passed on after its 101; after a refusal (hypercorn closes the connection) held
    for good, never read as frames or as a request."""
    guard = Guard(Refusals(), 16384)
    assert guard.feed(WEBSOCKET) == WEBSOCKET
    assert guard.mode == HANDSHAKE
    assert not guard.holding
    assert guard.feed(FRAME[:4]) == b""
    assert guard.feed(FRAME[4:]) == b""
    assert guard.holding
    switched = answer == SWITCHED
    assert guard.answered(memoryview(answer)) == (FRAME if switched else b"")
    assert guard.mode == (PASS if switched else HANDSHAKE)
    assert guard.holding is not switched
    assert guard.feed(FRAME) == (FRAME if switched else b"")


def test_the_answer_to_a_request_before_a_websocket_handshake_is_not_its_answer():
    """A request pipelined before the handshake is answered first: the bytes held for
    the websocket wait on for its 101 (they were dropped at that first answer, and
    every frame after the 101 with them)."""
    guard = Guard(Refusals(), 16384)
    health = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"
    assert guard.feed(health + WEBSOCKET) == health + WEBSOCKET
    assert guard.feed(FRAME) == b""
    assert guard.answered(b"HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\n") == b""
    assert guard.answered(b"{}") == b""
    assert (guard.mode, guard.holding) == (HANDSHAKE, True)
    assert guard.answered(SWITCHED) == FRAME
    assert guard.mode == PASS
    assert guard.feed(FRAME) == FRAME


@settings(max_examples=200, deadline=None)
@given(st.lists(request(), max_size=3),
       st.sampled_from([b"2\n{}\n0\n\n", b"2\r\n{}\r\n0\r\n\n", b"0\r\n\n",
                        b"2\r\n{}\r\n0\r\nX-T: 1\n\r\n", b"2 \r\n{}\r\n0\r\n\r\n"]),
       st.lists(st.integers(0, 4000)))
def test_chunked_framing_llhttp_refuses_makes_hypercorn_fail_however_it_is_read(
        before, body, cuts):
    """What the guard passes on of a chunked body whose framing the lean path's parser
    refuses (bare LFs, whitespace after a chunk-size) makes hypercorn's h11 fail, and
    never lets it finish the request, wherever the reads cut it."""
    good = b"".join(before)
    guard = Guard(Refusals(), 16384)
    out = feed_in_pieces(guard, good + CHUNKED_PUT + body + b"GET / HTTP/1.1\r\n\r\n", cuts)
    assert out.startswith(good + CHUNKED_PUT)
    # (PASS: h11 fails on it itself, hypercorn's alike)
    assert guard.mode in (DROP, PASS)
    hypercorns = h11.Connection(h11.SERVER)
    hypercorns.receive_data(out[len(good):])
    assert isinstance(hypercorns.next_event(), h11.Request)
    with pytest.raises(h11.RemoteProtocolError):
        _events_until_the_request_ends(hypercorns)


def _events_until_the_request_ends(conn: h11.Connection) -> None:
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        assert event is not h11.NEED_DATA
