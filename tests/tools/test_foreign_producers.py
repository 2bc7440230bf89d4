"""The foreign producers (tools/producers) against a real broker: what Kafka's Java client
and franz-go write is exactly what a non-aiokafka consumer reads back, with the codec,
batching and transaction markers claimed. kstate's own tests rely on these facts."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tools.producers import build
from tools.producers.run import (
    Batch,
    Codec,
    Consumed,
    Sent,
    ToolError,
    create_topic,
    franz_produce,
    java_audit,
    java_consume,
    java_produce,
)

CODECS: list[Codec] = ["none", "gzip", "snappy", "lz4", "zstd"]
NAMES = ['Ann "Q" Lee', "Back\\slash", "Tab\there", "Zoë Ünïcode", "<b> & co", "plain"]

Record = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]


def _topic(tag: str) -> str:
    return f"t-foreign-{tag}-{uuid.uuid4().hex[:8]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _user(email: str, name: str) -> bytes:
    return json.dumps({"name": name, "email": email}, separators=(",", ":"),
                      ensure_ascii=False).encode()


@dataclass
class Script:
    """Script lines and, for each line that sends a record, the record it must become."""

    lines: list[str] = field(default_factory=list)
    expect: dict[int, Record] = field(default_factory=dict)  # 1-based line -> record
    _headers: list[tuple[str, bytes | None]] = field(default_factory=list)

    def add(self, line: str, key: bytes | None = None, value: bytes | None = None,
            record: bool = True) -> None:
        self.lines.append(line)
        if record:
            self.expect[len(self.lines)] = (key, value, tuple(self._headers))
            self._headers = []

    def put(self, email: str, name: str) -> None:
        self.add(f"put {email} {name}", email.encode(), _user(email, name))

    def header(self, name: str, value: str) -> None:
        self.add(f"header {name} {value}", record=False)
        self._headers.append((name, value.encode()))

    def command(self, line: str) -> None:
        self.add(line, record=False)

    def placed(self, sent: list[Sent]) -> dict[tuple[int, int], Record]:
        """Where each record landed, as the producer was told."""
        assert [s.line for s in sent] == sorted(self.expect)
        return {(s.partition, s.offset): self.expect[s.line] for s in sent}


def _read(got: list[Consumed]) -> dict[tuple[int, int], Record]:
    return {(c.partition, c.offset): (c.key, c.value, c.headers) for c in got}


@pytest.mark.parametrize("codec", CODECS)
async def test_java_burst_reads_back_exactly_and_is_compressed(kafka_bootstrap: str,
                                                               codec: Codec) -> None:
    topic = _topic(codec)
    s = Script()
    users = [(f"u{i}-{codec}@example.com", NAMES[i % len(NAMES)]) for i in range(24)]
    for email, name in users:
        s.put(email, name)
    s.header("origin", "java producer")
    s.add(f"delete-empty {users[0][0]}", users[0][0].encode(), b"")
    s.add(f"delete-null {users[1][0]}", users[1][0].encode(), None)
    bad = b"\xff\xfe not json"
    s.add(f"raw bad@example.com {_b64(bad)}", b"bad@example.com", bad)
    s.add(f"rawkey {_b64(b'01')} -", b"01", b"")
    s.add(f"rawkey {_b64(bytes([0, 2]))} null", bytes([0, 2]), None)
    s.command("partition 2")
    s.put("wrong-partition@example.com", "Placed by hand")
    s.command("partition auto")
    s.command("flush")
    s.put("late@example.com", "After the flush")

    sent = await java_produce(kafka_bootstrap, topic, s.lines, codec=codec,
                              create_partitions=3)
    got, batches = await java_audit(kafka_bootstrap, topic)

    assert _read(got) == s.placed(sent)
    wrong = [x for x in sent if s.expect[x.line][0] == b"wrong-partition@example.com"]
    assert [x.partition for x in wrong] == [2]
    assert {b.compression for b in batches} == {codec}
    assert max(b.count for b in batches) >= 5, batches  # the burst shared batches
    assert sum(b.count for b in batches) == len(sent)


@pytest.mark.timeout(600)  # on a fresh machine this first builds franz-go (minutes, 2 cores)
async def test_franz_default_burst_reads_back_and_is_snappy(kafka_bootstrap: str) -> None:
    topic = _topic("franz")
    await create_topic(kafka_bootstrap, topic, partitions=3)
    users = [(f"f{i}@example.com", NAMES[i % len(NAMES)]) for i in range(30)]
    lines = [f"put {email} {name}" for email, name in users]
    bad = b"\xff not json"
    lines += [f"delete-empty {users[0][0]}", f"delete-null {users[1][0]}",
              f"raw bad@example.com {_b64(bad)}", "flush",
              f"raw solo@example.com {_b64(b'x')}"]

    sent = await franz_produce(kafka_bootstrap, topic, lines)
    got, batches = await java_audit(kafka_bootstrap, topic)

    assert [x.line for x in sent] == [*range(1, 34), 35]
    by_place = _read(got)
    assert len(by_place) == len(sent)
    for x in sent[:30]:
        email, name = users[x.line - 1]
        key, value, headers = by_place[x.partition, x.offset]
        assert (key, headers) == (email.encode(), ())
        assert value is not None
        assert json.loads(value) == {"name": name, "email": email}
        if "<" in name:  # Go's json.Marshal escapes HTML characters: bytes differ from orjson
            assert b"\\u003cb\\u003e \\u0026 co" in value
    assert by_place[sent[30].partition, sent[30].offset][:2] == (users[0][0].encode(), b"")
    assert by_place[sent[31].partition, sent[31].offset][:2] == (users[1][0].encode(), None)
    assert by_place[sent[32].partition, sent[32].offset][1] == bad

    # franz-go's default codec is snappy ...
    burst = [b for b in batches if b.count > 1]
    assert {b.compression for b in burst} == {"snappy"}, batches
    assert sum(b.count for b in burst) == 33  # the whole burst went out in shared batches
    # ... but it sends a batch uncompressed when snappy does not make it smaller.
    solo = sent[33]
    [lone] = [b for b in batches if b.base_offset == solo.offset
              and b.partition == solo.partition]
    assert (lone.count, lone.compression) == (1, "none")


async def test_transactions_committed_seen_aborted_only_uncommitted(kafka_bootstrap: str) -> None:
    topic = _topic("tx")
    s = Script()
    s.command("begin")
    s.put("c1@example.com", "Committed one")
    s.put("c2@example.com", "Committed two")
    s.command("commit")
    s.command("begin")
    s.put("a1@example.com", "Aborted one")
    s.add("delete-empty c1@example.com", b"c1@example.com", b"")
    s.add("delete-null c2@example.com", b"c2@example.com", None)
    s.command("abort")
    s.command("begin")
    s.put("c3@example.com", "Committed three")
    s.command("commit")
    aborted = {6, 7, 8}

    sent = await java_produce(kafka_bootstrap, topic, s.lines, codec="snappy",
                              transactional_id=f"tx-{topic}", create_partitions=3)
    placed = s.placed(sent)
    committed = {p: r for p, r in placed.items()
                 if not any(x.line in aborted and (x.partition, x.offset) == p for x in sent)}
    audit: list[tuple[list[Consumed], list[Batch]]] = []
    uncommitted: list[Consumed] = []

    async def read_committed() -> None:
        audit.append(await java_audit(kafka_bootstrap, topic, "read_committed"))

    async def read_uncommitted() -> None:
        uncommitted.extend(await java_consume(kafka_bootstrap, topic, "read_uncommitted"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_committed)
        nursery.start_soon(read_uncommitted)

    [(got, batches)] = audit
    assert len(committed) == 3
    assert _read(got) == committed
    assert _read(uncommitted) == placed
    assert all(b.transactional for b in batches)
    # One commit or abort marker in each partition that each transaction wrote to.
    transactions = [{2, 3}, aborted, {11}]
    markers = sum(len({x.partition for x in sent if x.line in tx}) for tx in transactions)
    assert sum(b.control for b in batches) == markers
    assert sum(b.count for b in batches if not b.control) == len(sent)


async def test_java_producer_error_raises_with_the_brokers_reason(kafka_bootstrap: str) -> None:
    # A compacted topic refuses a record without a key: kstate can never meet one.
    with pytest.raises(ToolError, match=r"line 2: send failed: .*without key"):
        await java_produce(kafka_bootstrap, _topic("nullkey"), ["# one bad record",
                           f"nullkey {_b64(b'{}')}"], create_partitions=1)


def test_missing_java_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr(build, "_java", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java, no mvn
    with pytest.raises(ToolError, match=r"(java not found on PATH|kafka.sh fetch failed)"):
        build.build_java()
