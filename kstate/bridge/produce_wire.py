"""The frames between the node and its producer process (kstate/bridge/producer_link.py),
with no I/O: bytes in, values out. Both ends are this code, over a private socketpair,
so a frame that does not parse is a bug and raises ``WireError``.

Request: ``>I id, >i partition, >i key length, >i value length (-1: null), >H header
count``, the key, the value, then per header ``>H name length, >I value length``, name
(UTF-8), value. A negative partition is a ping: no record, answered at once with
offset 0. Reply: ``>I id, >B status, >q n``: status 0 means acknowledged at offset
``n``; status 1 means not acknowledged, and ``n`` bytes of UTF-8 text follow (why);
status 3 is the same, for a record Kafka refused as too large (so not written).
Status 2 is no reply but a log line of the process, for the node's log (one format,
one stream): the id field holds its level, and ``n`` bytes of UTF-8 text follow, the
logger's name, a NUL, the message. The first frame each way is different: the node
sends the pickled KafkaConfig as ``>I length`` + bytes, and the process answers with a
reply of id 0 (0: started)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

Headers = tuple[tuple[str, bytes], ...]

# Once the node's end closes, the process sends what it holds for at most this long,
# then exits without it, whether or not the node is still there: a node killed with
# kill -9 while Kafka is unreachable leaves nobody to kill it. The node itself kills a
# process that has not exited PROCESS_EXIT_S after it closed its end.
PRODUCER_GIVES_UP_S = 12.0
PROCESS_EXIT_S = 15.0

_REQUEST = struct.Struct(">IiiiH")
_HEADER = struct.Struct(">HI")
_REPLY = struct.Struct(">IBq")
_SIZE = struct.Struct(">I")
OK, FAILED, LOG, TOO_LARGE = 0, 1, 2, 3


class WireError(Exception):
    """A frame that does not parse (a bug on one of the two ends)."""


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    partition: int
    key: bytes
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    offset: int | None  # None: not acknowledged
    error: str = ""
    too_large: bool = False  # refused as larger than the topic takes: not written


@dataclass(frozen=True, slots=True)
class LogLine:
    level: int  # logging's number (WARNING is 30)
    logger: str
    message: str


def encode_request(r: Request) -> bytes:
    parts = [_REQUEST.pack(r.id, r.partition, len(r.key),
                           -1 if r.value is None else len(r.value), len(r.headers)), r.key]
    if r.value is not None:
        parts.append(r.value)
    for name, value in r.headers:
        raw = name.encode()
        parts += (_HEADER.pack(len(raw), len(value)), raw, value)
    return b"".join(parts)


def encode_reply(r: Reply) -> bytes:
    if r.offset is not None:
        return _REPLY.pack(r.id, OK, r.offset)
    text = r.error.encode()
    return _REPLY.pack(r.id, TOO_LARGE if r.too_large else FAILED, len(text)) + text


def encode_log(line: LogLine) -> bytes:
    text = f"{line.logger}\0{line.message}".encode(errors="replace")
    return _REPLY.pack(line.level, LOG, len(text)) + text


def encode_sized(payload: bytes) -> bytes:
    return _SIZE.pack(len(payload)) + payload


class _Buffer:
    """Bytes received and not parsed yet."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) - self._pos < n:
            return None
        out = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return out


class RequestReader(_Buffer):
    """The producer process's side: requests out of the bytes fed so far."""

    def sized(self) -> bytes | None:
        """The first frame (the config), or None until all of it is here."""
        start = self._pos
        head = self._take(_SIZE.size)
        if head is None:
            return None
        body = self._take(_SIZE.unpack(head)[0])
        if body is None:
            self._pos = start
        return body

    def requests(self) -> list[Request]:
        out: list[Request] = []
        while (r := self._one()) is not None:
            out.append(r)
        return out

    def _one(self) -> Request | None:
        start = self._pos
        head = self._take(_REQUEST.size)
        if head is None:
            return None
        rid, partition, key_len, value_len, count = _REQUEST.unpack(head)
        if key_len < 0 or value_len < -1:
            raise WireError(f"request {rid}: lengths {key_len}, {value_len}")
        key = self._take(key_len)
        value = b"" if value_len < 0 else self._take(value_len)
        headers = []
        for _ in range(count):
            if key is None or value is None:
                break
            h = self._take(_HEADER.size)
            if h is None:
                key = None
                break
            name_len, v_len = _HEADER.unpack(h)
            name, v = self._take(name_len), self._take(v_len)
            if name is None or v is None:
                key = None
                break
            headers.append((name.decode(), v))
        if key is None or value is None:
            self._pos = start  # incomplete: wait for more
            return None
        return Request(rid, partition, key, None if value_len < 0 else value, tuple(headers))


class ReplyReader(_Buffer):
    """The node's side: replies out of the bytes fed so far."""

    def replies(self) -> list[Reply | LogLine]:
        out: list[Reply | LogLine] = []
        while True:
            start = self._pos
            head = self._take(_REPLY.size)
            if head is None:
                return out
            rid, status, n = _REPLY.unpack(head)
            if status == OK:
                out.append(Reply(rid, n))
                continue
            if status not in (FAILED, LOG, TOO_LARGE) or n < 0:
                raise WireError(f"reply {rid}: status {status}, length {n}")
            raw = self._take(n)
            if raw is None:
                self._pos = start
                return out
            text = raw.decode(errors="replace")
            if status != LOG:
                out.append(Reply(rid, None, text, too_large=status == TOO_LARGE))
            else:
                logger, _, message = text.partition("\0")
                out.append(LogLine(rid, logger, message))
