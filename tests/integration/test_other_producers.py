"""Records from producers that are not kstate (tools/producers: Kafka's Java client and
franz-go with the seed app's defaults), against a real broker: every codec, 0-byte and
null deletes, records kstate cannot use (null and past-int64 header values too, an
owner-epoch marker no claim could go above), a record in the wrong partition, an
aborted transaction next to committed ones, a franz-go burst (header names that are
not UTF-8 in it) followed by 0-byte deletes, and a batch written with Kafka's protocol
itself whose record attributes byte (unused by the format) aiokafka cannot read.

A node that is live while they arrive and a node that replays the topic afterwards both
serve exactly the committed, non-deleted users (every key read back over HTTP), report
the same counts in /readyz, stay up, and their feeds (live from the start; from the
beginning) show the deletes as deletes and nothing of the aborted transaction. The live
node writes with ``compression=zstd``: Kafka's batch headers say so. Java or Go missing
fails these tests (tools/producers raises ToolError); nothing skips."""

from __future__ import annotations

import asyncio
import base64
import struct

import httpx
import orjson
import pytest
import trio
from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.errors import CorruptRecordException
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c, encode_varint
from trio_websocket import WebSocketConnection, open_websocket_url

from kstate.bridge.java_reading import decode_varint
from kstate.core.partitioner import partition_for
from tools.procs import Node, wait_ready
from tools.producers.run import Codec, franz_produce, java_audit, java_consume, java_produce

PARTITIONS = 4
CODECS: list[Codec] = ["gzip", "snappy", "lz4", "zstd"]
UNUSABLE = {"value is not JSON": 1, "name and email must be strings": 1,
            "key does not match email": 1, "key is not an email": 1,
            "malformed kstate header": 2}

pytestmark = pytest.mark.timeout(600)  # a fresh machine first builds franz-go


def email(tag: str, i: int) -> str:
    return f"{tag}-{i}@example.com"


def user(mail: str, name: str) -> bytes:
    return orjson.dumps({"name": name, "email": mail})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Model:
    """What the producers wrote, as the users that must exist and the keys that must not."""

    def __init__(self) -> None:
        self.users: dict[str, bytes] = {}
        self.gone: set[str] = set()
        self.deleted: set[str] = set()  # keys whose delete the feeds must show
        self.aborted: set[str] = set()  # keys only an aborted transaction wrote

    def put(self, mail: str, name: str) -> str:
        self.users[mail] = user(mail, name)
        self.gone.discard(mail)
        return f"put {mail} {name}"

    def delete(self, mail: str) -> None:
        self.users.pop(mail, None)
        self.gone.add(mail)
        self.deleted.add(mail)


async def produce_everything(bootstrap: str, topic: str, model: Model) -> None:
    for codec in CODECS:
        await java_produce(bootstrap, topic,
                           [model.put(email(codec, i), f"{codec} {i}") for i in range(6)],
                           codec=codec)
    wrong = "wrong@example.com"
    elsewhere = (partition_for(wrong.encode(), PARTITIONS) + 1) % PARTITIONS
    model.gone.add(wrong)
    lines = [f"delete-empty {email('gzip', 0)}", f"delete-null {email('snappy', 0)}",
             f"raw {email('lz4', 0)} {b64(b'not json')}",
             f"raw {email('lz4', 1)} {b64(orjson.dumps({'name': 1, 'email': email('lz4', 1)}))}",
             f"raw {email('zstd', 0)} {b64(user('other@example.com', 'X'))}",
             f"rawkey {b64(b'not-an-email')} {b64(user('not-an-email', 'N'))}",
             f"partition {elsewhere}", f"put {wrong} Wrong", "partition auto",
             # Kafka allows a null header value: another program's is nothing to us, a
             # null or past-int64 kstate header is malformed (it used to stop the node)
             "header-null trace", model.put("nullheader@example.com", "Null Header"),
             "header-null kstate-epoch", "put nullepoch@example.com Null Epoch",
             "header kstate-version 9300000000000000000", "put bigversion@example.com Big"]
    model.gone |= {"nullepoch@example.com", "bigversion@example.com"}
    for key in ("gzip", 0), ("snappy", 0), ("lz4", 0), ("lz4", 1), ("zstd", 0):
        model.delete(email(*key))
    await java_produce(bootstrap, topic, lines)
    tx = ["begin", *(model.put(email("txc", i), f"txc {i}") for i in range(3)), "commit",
          "begin", *(f"put {email('txa', i)} aborted" for i in range(3)),
          f"delete-empty {email('gzip', 1)}", "abort",
          "begin", model.put(email("txc", 3), "txc 3"), "commit"]
    model.aborted = {email("txa", i) for i in range(3)}
    model.gone |= model.aborted
    await java_produce(bootstrap, topic, tx, transactional_id=f"tx-{topic}")
    # franz-go takes any bytes for a header name: names that are not UTF-8 (one of them
    # kstate's but for its last byte) are foreign headers, read as Kafka's Java consumer
    # reads them; they used to stop their partitions for good
    not_utf8 = {8: "\udcff\udcfetrace", 9: "kstate-epoch\udcff", 10: "x\udcc3y"}
    burst: list[str] = []
    for i in range(20):
        if i in not_utf8:
            burst.append(f"header {not_utf8[i]} 1")
        burst.append(model.put(email("franz", i), f"franz {i}"))
    deletes = [f"delete-empty {email('franz', i)}" for i in range(5)]
    for i in range(5):
        model.delete(email("franz", i))
    await franz_produce(bootstrap, topic, [*burst, "flush", *deletes, "flush"])


async def check_served(client: httpx.AsyncClient, node: Node, model: Model,
                       within: float = 30.0) -> None:
    """Every user the producers left is served with their exact bytes; every other key
    is 404 (polled: other producers' records carry no read-your-writes)."""
    with trio.fail_after(within):
        while True:
            wrong = []
            for mail, value in sorted(model.users.items()):
                r = await client.get(f"{node.base}/users/{mail}")
                if r.status_code != 200 or r.content != value:
                    wrong.append((mail, r.status_code, r.text))
            for mail in sorted(model.gone):
                r = await client.get(f"{node.base}/users/{mail}")
                if r.status_code != 404:
                    wrong.append((mail, r.status_code, r.text))
            if not wrong:
                return
            await trio.sleep(0.3)


def counts(ready: dict) -> tuple[dict[str, int], int]:
    unusable: dict[str, int] = {}
    wrong = 0
    for stats in ready["partitions"].values():
        for reason, n in stats["unusable"].items():
            unusable[reason] = unusable.get(reason, 0) + n
        wrong += stats["wrong_partition"]
    return unusable, wrong


async def read_feed(ws: WebSocketConnection, model: Model) -> dict[str, object]:
    """Changes until every user and every delete of the model was seen, then 1.5 s of
    whatever else comes; checks each message and returns the state they build."""
    state: dict[str, object] = {}
    seen: set[str] = set()
    want = set(model.users) | model.deleted
    with trio.fail_after(30):
        while not want <= seen:
            seen.add(take(state, orjson.loads(await ws.get_message()), model))
    with trio.move_on_after(1.5):
        while True:
            take(state, orjson.loads(await ws.get_message()), model)
    return state


def take(state: dict[str, object], change: dict, model: Model) -> str:
    assert set(change) == {"key", "value", "partition", "offset"}, change
    key = change["key"]
    assert key not in model.aborted, change  # nothing of the aborted transaction
    assert key != "wrong@example.com", change  # a record in the wrong partition
    if change["value"] is None:
        state.pop(key, None)
    else:
        state[key] = change["value"]
    return str(key)


async def test_records_of_any_producer_live_and_replayed(make_node, client, kafka_bootstrap,
                                                         names):
    topic = names["topic"]
    model = Model()
    live = make_node(KSTATE_PARTITIONS=str(PARTITIONS), KSTATE_COMPRESSION="zstd")
    await wait_ready(client, live)
    base = live.base.replace("http://", "ws://")
    async with open_websocket_url(f"{base}/changes") as feed:
        assert orjson.loads(await feed.get_message())["type"] == "hello"
        await produce_everything(kafka_bootstrap, topic, model)
        mine = email("node", 0)
        r = await client.put(f"{live.base}/users/{mine}", json={"name": "written by kstate"})
        assert r.status_code == 201, r.text
        model.put(mine, "written by kstate")
        etag = r.headers["ETag"].strip('"').split("-")
        await check_served(client, live, model)
        state = await read_feed(feed, model)
    want = {k: orjson.loads(v) for k, v in model.users.items()}
    assert state == want
    ready = (await client.get(f"{live.base}/readyz")).json()
    assert counts(ready) == (UNUSABLE, 1)
    assert ready["halted"] == {}
    assert live.alive()

    # the broker's view: every codec really used, and the node's own write is zstd
    consumed, batches = await java_audit(kafka_bootstrap, topic)
    assert {b.compression for b in batches} >= {*CODECS, "none"}
    p, off = int(etag[0]), int(etag[1])
    (own,) = [b for b in batches if b.partition == p and b.base_offset <= off <= b.last_offset]
    assert own.compression == "zstd"
    assert not any(c.key is not None and c.key.decode().startswith("txa") for c in consumed)

    # a node that replays the topic afterwards (the live one left the group)
    live.stop_now()
    replay = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    ready = await wait_ready(client, replay, timeout=60)
    assert counts(ready) == (UNUSABLE, 1)
    await check_served(client, replay, model, within=10)
    base = replay.base.replace("http://", "ws://")
    async with open_websocket_url(f"{base}/changes?from=beginning") as feed:
        assert orjson.loads(await feed.get_message())["type"] == "hello"
        assert await read_feed(feed, model) == want
    assert replay.alive()


async def test_a_foreign_marker_at_the_top_of_int64_leaves_its_partition_writable(
        make_node, client, kafka_bootstrap, names):
    """Another producer writes an owner-epoch marker of epoch 2**63 - 1 (key and header
    as kstate writes them): had it raised the partition's epoch, no claim above it
    would fit in an int64 and the partition would answer 503 claiming for ever. It is
    a malformed record; the node claims the partition and writes it."""
    topic = names["topic"]
    top = str(2**63 - 1)
    await java_produce(kafka_bootstrap, topic, [
        "partition 0", f"header kstate-epoch {top}",
        f"rawkey {b64(f'kstate:epoch:0:{top}'.encode())} -"],
        create_partitions=PARTITIONS)
    node = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    await wait_ready(client, node)
    mail = next(m for i in range(1000)
                if partition_for((m := email("top", i)).encode(), PARTITIONS) == 0)
    r = await client.put(f"{node.base}/users/{mail}", json={"name": "after the marker"})
    assert r.status_code == 201, r.text
    ready = (await client.get(f"{node.base}/readyz")).json()
    assert ready["partitions"]["0"]["unusable"] == {"malformed kstate header": 1}


def batch_with_attributes(users: list[str], index: int, attributes: int) -> bytes:
    """A record batch (v2, uncompressed) of ``users`` whose record ``index`` has the
    record attributes byte ``attributes``, its CRC valid: what a producer that writes
    Kafka's record format itself may send (the format does not use the byte)."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for i, mail in enumerate(users):
        builder.append(i, timestamp=None, key=mail.encode(), value=user(mail, "A"),
                       headers=[])
    raw = bytearray(builder.build())
    pos = 61  # a v2 batch's header; then each record: its length, its attributes, ...
    for _ in range(index):
        length, pos = decode_varint(raw, pos)
        pos += length
    _, pos = decode_varint(raw, pos)
    raw[pos] = attributes
    struct.pack_into(">I", raw, 17, calc_crc32c(bytes(raw[21:])))  # the CRC, of what follows
    return bytes(raw)


def raw_produce(bootstrap: str, topic: str, partition: int, batch: bytes) -> None:
    """Send ``batch`` as it is in a Produce request (acks all), as a producer that writes
    Kafka's protocol itself does; no client library rewrites it."""

    async def send() -> None:
        client = AIOKafkaClient(bootstrap_servers=bootstrap)
        await client.bootstrap()
        try:
            await client.force_metadata_update()
            leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            resp = await client.send(leader, ProduceRequest(None, -1, 30_000,
                                                            [(topic, [(partition, batch)])]))
            ((_, ((_, error, *_),)),) = resp.topics
            assert error == 0, resp
        finally:
            await client.close()

    asyncio.run(send())


async def test_a_record_attributes_byte_the_format_leaves_unused_is_read_as_java_reads_it(
        make_node, client, kafka_bootstrap, names):
    """Kafka's record format has an int8 of record attributes that it does not use; the
    broker takes any value and Kafka's Java consumer ignores it. aiokafka reads a varint
    there, so from 0x80 on it read the rest of the record shifted and its partition
    stopped for good (503 partition_undecodable). A batch of three users whose middle
    record has 0x80 there: a node live while it lands, its standby copy, its feed from
    the beginning, and a node that replays it afterwards read all three."""
    topic = names["topic"]
    live = make_node(KSTATE_PARTITIONS=str(PARTITIONS), KSTATE_STANDBY="true")
    await wait_ready(client, live)
    mails = [m for i in range(200)
             if partition_for((m := email("attr", i)).encode(), PARTITIONS) == 0][:3]
    model = Model()
    for mail in mails:
        model.put(mail, "A")
    batch = batch_with_attributes(mails, 1, 0x80)
    with pytest.raises(CorruptRecordException):  # aiokafka's own decoder refuses it
        list(DefaultRecordBatch(batch))
    await trio.to_thread.run_sync(raw_produce, kafka_bootstrap, topic, 0, batch)
    consumed = [c for c in await java_consume(kafka_bootstrap, topic) if c.partition == 0]
    assert [(c.key, c.value) for c in consumed if c.key in {m.encode() for m in mails}] == [
        (m.encode(), user(m, "A")) for m in mails]  # Kafka's Java consumer reads them

    await check_served(client, live, model)
    with trio.fail_after(30):
        while True:
            ready = (await client.get(f"{live.base}/readyz")).json()
            if ready["standby"]["caught_up"]:
                break
            await trio.sleep(0.2)
    assert ready["halted"] == {}
    assert ready["standby"]["halted"] == {}
    base = live.base.replace("http://", "ws://")
    async with open_websocket_url(f"{base}/changes?from=beginning") as feed:
        assert orjson.loads(await feed.get_message())["type"] == "hello"
        assert await read_feed(feed, model) == {m: orjson.loads(v)
                                                for m, v in model.users.items()}
    live.stop_now()
    replay = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    ready = await wait_ready(client, replay, timeout=60)
    assert ready["halted"] == {}
    await check_served(client, replay, model, within=10)


def varint(n: int) -> bytes:
    """Kafka's zigzag varint of ``n``."""
    out = bytearray()
    encode_varint(n, out.append)
    return bytes(out)


def batch_read_two_ways(users: list[str], victim: str) -> bytes:
    """A record batch (v2, uncompressed, CRC valid) of ``users`` and then one record
    whose attributes byte is 0x80, laid out so that reading that byte as a varint (as
    aiokafka does) is *not* a failure: the two readings consume the same bytes, and both
    pass every length check. Kafka's Java consumer (attributes: one byte) reads a
    tombstone whose key is ``victim`` inside bytes that are not an email; the varint
    reading swallows the timestamp delta, takes the offset delta for the timestamp
    delta, the key's length for the offset delta (one record per byte of that key
    precedes it, so the offset comes out the same) and reads a tombstone of ``victim``
    itself, the rest of the key as a header."""
    mail = victim.encode()
    # what the varint reading takes for: key length, key, value length (null),
    # header count (1), header name length (0), header value length (2 bytes: the
    # Java reading's null value length and header count)
    java_key = varint(len(mail)) + mail + varint(-1) + varint(1) + varint(0) + varint(2)
    n = len(java_key)
    assert len(users) == n
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for i, m in enumerate(users):
        builder.append(i, timestamp=None, key=m.encode(), value=user(m, "A"), headers=[])
    builder.append(n, timestamp=None, key=b"placeholder", value=None, headers=[])
    raw = bytearray(builder.build())
    pos = 61  # a v2 batch's header; then each record: its length, then the rest
    for _ in range(n):
        length, pos = decode_varint(raw, pos)
        pos += length
    # attributes 0x80, timestamp delta 0, offset delta n, key, null value, no headers
    body = b"\x80" + varint(0) + varint(n) + varint(n) + java_key + varint(-1) + varint(0)
    raw = raw[:pos] + varint(len(body)) + body
    struct.pack_into(">i", raw, 8, len(raw) - 12)  # the batch's length, after its first 12
    struct.pack_into(">I", raw, 17, calc_crc32c(bytes(raw[21:])))
    return bytes(raw)


async def test_a_record_attributes_byte_aiokafka_misreads_without_failing_is_read_as_java_reads_it(
        make_node, client, kafka_bootstrap, names):
    """A record whose attributes byte (0x80) aiokafka's varint reading gets through
    without an error, reading other key, value and headers than Kafka's Java consumer
    reads (batch_read_two_ways): kstate read the varint way and deleted a user that the
    Java consumer's reading (a tombstone of a key that is not an email) leaves alone.
    A node live while it lands, its standby copy, its feed and a node that replays the
    topic afterwards read it as the Java consumer does: the user stays, the record is
    counted as one kstate cannot use."""
    topic = names["topic"]
    live = make_node(KSTATE_PARTITIONS=str(PARTITIONS), KSTATE_STANDBY="true")
    await wait_ready(client, live)
    on_zero = [m for i in range(2000)
               if partition_for((m := email("twoway", i)).encode(), PARTITIONS) == 0]
    victim, others = on_zero[0], on_zero[1:]
    model = Model()
    r = await client.put(f"{live.base}/users/{victim}", json={"name": "Victim"})
    assert r.status_code == 201, r.text
    model.users[victim] = r.content
    batch = batch_read_two_ways(others[:len(victim) + 5], victim)
    for mail in others[:len(victim) + 5]:
        model.put(mail, "A")
    misread = list(DefaultRecordBatch(batch))[-1]  # aiokafka's own decoder: no error,
    assert (misread.key, misread.value) == (victim.encode(), None)  # a delete of victim
    await trio.to_thread.run_sync(raw_produce, kafka_bootstrap, topic, 0, batch)
    consumed = [c for c in await java_consume(kafka_bootstrap, topic) if c.partition == 0]
    java_last = consumed[-1]  # Kafka's Java consumer: a tombstone of another key
    assert java_last.value is None
    assert java_last.key != victim.encode()
    assert victim.encode() in java_last.key
    assert consumed[-2].key == others[len(victim) + 4].encode()
    assert java_last.offset == consumed[-2].offset + 1

    await check_served(client, live, model)
    with trio.fail_after(30):
        while True:
            ready = (await client.get(f"{live.base}/readyz")).json()
            if ready["standby"]["caught_up"]:
                break
            await trio.sleep(0.2)
    assert ready["halted"] == {}
    assert ready["standby"]["halted"] == {}
    assert ready["partitions"]["0"]["unusable"] == {"key is not an email": 1}
    base = live.base.replace("http://", "ws://")
    async with open_websocket_url(f"{base}/changes?from=beginning") as feed:
        assert orjson.loads(await feed.get_message())["type"] == "hello"
        assert await read_feed(feed, model) == {m: orjson.loads(v)
                                                for m, v in model.users.items()}
    live.stop_now()
    replay = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    ready = await wait_ready(client, replay, timeout=60)
    assert ready["halted"] == {}
    await check_served(client, replay, model, within=10)
    ready = (await client.get(f"{replay.base}/readyz")).json()
    assert ready["partitions"]["0"]["unusable"] == {"key is not an email": 1}


def batch_with_wide_offset_delta(users: list[str], index: int) -> bytes:
    """A record batch (v2, uncompressed, CRC valid) of ``users`` whose record ``index``
    has its offset delta written in five bytes with bit 32 set: Kafka's Java consumer
    reads the delta as an int32 (the bits past 32 fall away: the delta is ``index``),
    aiokafka as an int64 (``index`` + 2**31)."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for i, mail in enumerate(users):
        builder.append(i, timestamp=None, key=mail.encode(), value=user(mail, "A"),
                       headers=[])
    raw = bytearray(builder.build())
    pos = 61  # a v2 batch's header; then each record: its length, then the rest
    for _ in range(index):
        length, pos = decode_varint(raw, pos)
        pos += length
    length, body_at = decode_varint(raw, pos)
    body = raw[body_at:body_at + length]
    assert body[1:3] == bytes([0, 2 * index])  # attributes; timestamp delta 0, offset delta
    body = body[:2] + bytes([2 * index | 0x80, 0x80, 0x80, 0x80, 0x10]) + body[3:]
    raw = raw[:pos] + varint(len(body)) + body + raw[body_at + length:]
    struct.pack_into(">i", raw, 8, len(raw) - 12)  # the batch's length, after its first 12
    struct.pack_into(">I", raw, 17, calc_crc32c(bytes(raw[21:])))
    return bytes(raw)


async def test_an_offset_delta_past_32_bits_is_read_as_java_reads_it(
        make_node, client, kafka_bootstrap, names):
    """Kafka's Java consumer reads a record's offset delta as an int32; aiokafka as an
    int64, so a delta written in five bytes with bits past 32 (the broker takes it: its
    own reading is the Java one) gave that record an offset 2**31 past its own, and
    aiokafka then skipped the batch's later records as already read, without an error.
    A node live while the batch lands, its standby copy and a node that replays the
    topic serve every user of the batch at the offset the Java consumer reads."""
    topic = names["topic"]
    live = make_node(KSTATE_PARTITIONS=str(PARTITIONS), KSTATE_STANDBY="true")
    await wait_ready(client, live)
    mails = [m for i in range(200)
             if partition_for((m := email("wide", i)).encode(), PARTITIONS) == 0][:4]
    model = Model()
    for mail in mails:
        model.put(mail, "A")
    batch = batch_with_wide_offset_delta(mails, 1)
    read = list(DefaultRecordBatch(batch))  # aiokafka's own decoder: no error,
    assert read[1].offset == 1 + 2**31  # the offset 2**31 past
    await trio.to_thread.run_sync(raw_produce, kafka_bootstrap, topic, 0, batch)
    consumed = [c for c in await java_consume(kafka_bootstrap, topic) if c.partition == 0]
    at = {c.key.decode(): c.offset for c in consumed if c.key is not None}
    assert [at[m] for m in mails] == list(range(at[mails[0]], at[mails[0]] + 4))

    async def check(node: Node) -> None:
        await check_served(client, node, model)
        for mail in mails:
            r = await client.get(f"{node.base}/users/{mail}")
            assert r.headers["etag"] == f'"0-{at[mail]}"', (mail, r.headers)

    await check(live)
    with trio.fail_after(30):
        while True:
            ready = (await client.get(f"{live.base}/readyz")).json()
            if ready["standby"]["caught_up"]:
                break
            await trio.sleep(0.2)
    assert ready["halted"] == {}
    assert ready["standby"]["halted"] == {}
    live.stop_now()
    replay = make_node(KSTATE_PARTITIONS=str(PARTITIONS))
    ready = await wait_ready(client, replay, timeout=60)
    assert ready["halted"] == {}
    await check(replay)
