"""The Kafka bridge: aiokafka on its own asyncio loop, reached from trio through anyio.

This is the only module that imports aiokafka (shared/DESIGN.md §3). aiokafka runs on
an asyncio event loop in a worker thread started by
``anyio.from_thread.start_blocking_portal("asyncio")``. Every aiokafka object is
created, used and stopped on that loop (:class:`_Loop` holds them). The trio side
(:class:`KafkaBridge`) submits coroutines with ``portal.start_task_soon`` and awaits the
``concurrent.futures.Future`` without blocking trio: the future's done-callback wakes
trio through ``TrioToken.run_sync_soon``. One crossing per batch, never per record.

Rebalance callbacks run on the asyncio thread; they hand a :class:`Revoked` or
:class:`Assigned` to trio (``run_sync_soon`` into a channel with room for it) and await
the trio side's answer as an asyncio future, so a revoke completes before the group
moves on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.from_thread
import trio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocol,
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ConsumerStoppedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from actors.assignment import Claim, decode_claim, decode_table, encode_claim, encode_table, plan
from actors.messages import Assigned, Batch, BridgeEvent, Record, Revoked
from actors.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


# Prefetch bounds of the group consumer: large enough to replay at full speed, small
# enough that buffered raw batches do not stay in the process's memory high-water mark.
FETCH_MAX_BYTES = 8 * 1024 * 1024
PARTITION_FETCH_BYTES = 1024 * 1024

TOPIC_METADATA_WAIT = 10.0  # seconds a new topic's partitions may take to show up


class BrokerUnavailable(Exception):
    """Kafka did not answer in time (or refused); the request may be retried."""


class KafkaAuthFailed(Exception):
    """Kafka refused this node's credentials or TLS setup: retrying cannot help."""


# What a broker answers to a login it refuses (not: a broker that is not up yet).
_AUTH_ERRORS = (SaslAuthenticationFailed, AuthenticationFailedError,
                AuthenticationMethodNotSupported, UnsupportedSaslMechanismError,
                ssl.SSLCertVerificationError)


def partition_for(key: bytes, num_partitions: int) -> int:
    """Kafka's default partitioner (murmur2, positive, modulo): what every Kafka client
    computes for a keyed record, so any producer of the topic agrees with us."""
    return int(murmur2(key) & 0x7FFFFFFF) % num_partitions


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: int
    created: bool
    configs: dict[str, str]


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_host: str
    url: str
    partitions: list[int]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    state: str
    protocol: str
    members: list[GroupMember]


def _common(settings: Settings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.bootstrap.split(","), "client_id": "kstate",
            **_security(settings)}


@functools.lru_cache(maxsize=4)
def _ssl_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(
        cafile=cafile or None, certfile=certfile or None, keyfile=keyfile or None)
    return context


def _security(s: Settings) -> dict[str, Any]:
    """aiokafka's security arguments from the settings (the password included: never
    log what this returns)."""
    out: dict[str, Any] = {"security_protocol": s.security_protocol}
    if s.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = _ssl_context(s.ssl_cafile, s.ssl_certfile, s.ssl_keyfile)
    if s.security_protocol.startswith("SASL_"):
        out.update(sasl_mechanism=s.sasl_mechanism, sasl_plain_username=s.sasl_username,
                   sasl_plain_password=s.sasl_password)
    return out


async def _check_access(s: Settings) -> None:
    """Log in to the first bootstrap server that answers. Raises KafkaAuthFailed if
    one refuses the credentials or the TLS handshake; a server that does not answer
    is left to the caller's retries."""
    kwargs = _security(s)
    for server in s.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await create_conn(host, int(port), client_id="kstate",
                                     request_timeout_ms=10_000, **kwargs)
        except _AUTH_ERRORS as exc:
            log.error("event=kafka_auth_failed server=%s protocol=%s mechanism=%s user=%s "
                      "error=%r", server, s.security_protocol, s.sasl_mechanism,
                      s.sasl_username, exc)
            raise KafkaAuthFailed(
                f"Kafka at {server} refused this node ({s.security_protocol}, "
                f"user {s.sasl_username!r}): {exc}") from None
        except (TimeoutError, OSError, KafkaError):
            continue
        conn.close()
        return


class _FutureReply:
    """A :class:`actors.messages.Reply` that resolves an asyncio future from trio."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> None:
        self._loop = loop
        self._fut = fut

    def send(self, value: Any) -> None:
        def _set() -> None:
            if not self._fut.done():
                self._fut.set_result(value)

        self._loop.call_soon_threadsafe(_set)


class _Assignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """kstate's assignor: claims in JoinGroup, sticky plan, full table to everyone."""

    name = "kstate-sticky"
    version = 0

    def __init__(self, topic: str, url: str, owned: Callable[[], frozenset[int]]) -> None:
        self._topic = topic
        self._url = url
        self._owned = owned
        self.table_bytes = b""

    def metadata(self, topics: Any) -> ConsumerProtocolMemberMetadata:
        claim = Claim(url=self._url, owned=self._owned())
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), encode_claim(claim))

    def assign(self, cluster: Any, members: Any) -> dict[str, Any]:
        claims = {mid: decode_claim(meta.user_data) for mid, meta in members.items()}
        partitions = cluster.partitions_for_topic(self._topic) or set()
        assignment = plan(len(partitions), claims)
        table = encode_table(assignment, claims)
        log.info("event=assign members=%d plan=%s", len(claims),
                 {claims[m].url: parts for m, parts in assignment.items()})
        return {
            mid: ConsumerProtocolMemberAssignment(self.version, [(self._topic, parts)], table)
            for mid, parts in assignment.items()
        }

    def on_assignment(self, assignment: Any) -> None:
        self.table_bytes = assignment.user_data or b""


class _Loop:
    """Everything that lives on the asyncio loop. Methods run there only."""

    def __init__(self, settings: Settings, token: trio.lowlevel.TrioToken) -> None:
        self.settings = settings
        self.token = token
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.offsets: AIOKafkaConsumer | None = None  # group-less, never fetches
        self.offsets_lock = asyncio.Lock()
        self.assignor: _Assignor | None = None
        self.events: trio.MemorySendChannel[BridgeEvent] | None = None
        self.epoch = 0
        self.closing = False
        self.failure: BaseException | None = None

    # -- admin ---------------------------------------------------------------
    async def ensure_topic(self, create_configs: dict[str, str] | None = None) -> TopicInfo:
        s = self.settings
        await _check_access(s)
        admin = AIOKafkaAdminClient(**_common(s), request_timeout_ms=10_000)
        await admin.start()
        try:
            created = False
            if s.topic not in await admin.list_topics():
                configs = {"cleanup.policy": "compact",
                           "min.insync.replicas": str(min(2, s.replication)),
                           **(create_configs or {})}
                try:
                    await admin.create_topics(
                        [NewTopic(s.topic, s.partitions, s.replication, topic_configs=configs)])
                    created = True
                except TopicAlreadyExistsError:
                    pass  # another node won the race: use it as it is
            # Right after a create (ours or another node's), metadata may list the topic
            # with no partitions yet: a node that took 0 for the count would fail every
            # request. Wait (bounded) until the partitions are there.
            deadline = time.monotonic() + TOPIC_METADATA_WAIT
            while True:
                described = await admin.describe_topics([s.topic])
                partitions = len(described[0]["partitions"])
                if partitions > 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {s.topic} lists no partitions")
                await asyncio.sleep(0.1)
            resource = ConfigResource(ConfigResourceType.TOPIC, s.topic)
            desc = await admin.describe_configs([resource])
            configs_out: dict[str, str] = {}
            for resp in desc:
                for res in resp.resources:
                    for entry in res[4]:
                        if entry[0] in ("cleanup.policy", "min.insync.replicas",
                                        "retention.ms"):
                            configs_out[entry[0]] = entry[1]
            return TopicInfo(s.topic, partitions, created, configs_out)
        finally:
            await admin.close()

    async def describe_group(self, group: str) -> GroupInfo:
        admin = AIOKafkaAdminClient(**_common(self.settings))
        await admin.start()
        try:
            resp = await admin.describe_consumer_groups([group])
            g = resp[0].groups[0]
            members = []
            for m in g[5]:
                # v0-v3: member_id, client_id, client_host, metadata, assignment
                # (v4+ adds group_instance_id after member_id): count from the end.
                parts: list[int] = []
                if m[-1]:
                    assignment = ConsumerProtocol.ASSIGNMENT.decode(m[-1])
                    parts = sorted(tp.partition for tp in assignment.partitions())
                url = decode_claim(ConsumerProtocol.METADATA.decode(m[-2]).user_data).url \
                    if m[-2] else ""
                members.append(GroupMember(member_id=m[0], client_host=m[-3], url=url,
                                           partitions=parts))
            return GroupInfo(state=g[2], protocol=g[4], members=members)
        finally:
            await admin.close()

    # -- producer ------------------------------------------------------------
    async def start_producer(self) -> None:
        self.producer = AIOKafkaProducer(
            **_common(self.settings), acks="all", enable_idempotence=True, linger_ms=1,
            request_timeout_ms=int(self.settings.write_timeout * 1000))
        await self.producer.start()

    async def produce_bulk(self, records: Iterable[tuple[int, bytes, bytes | None]],
                           batch_bytes: int) -> int:
        """Produce ``records`` (partition, key, value) as pre-built per-partition
        batches, on a producer of their own, and wait until all are acknowledged
        (acks=all). No per-record future: what makes a Python producer slow. For
        loading data (bench, seeding), not for the node's writes."""
        producer = AIOKafkaProducer(**_common(self.settings), acks="all", linger_ms=5,
                                    max_batch_size=batch_bytes,
                                    max_request_size=4 * batch_bytes,
                                    request_timeout_ms=30_000)
        await producer.start()
        topic, count = self.settings.topic, 0
        pending: list[asyncio.Future[Any]] = []
        try:
            batches: dict[int, Any] = {}
            for partition, key, value in records:
                count += 1
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    batch.close()
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = batches[partition] = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError("a single record does not fit in a batch")
            for partition, batch in batches.items():
                if batch.record_count():
                    batch.close()
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*pending)
            await producer.flush()
        finally:
            await producer.stop()
        return count

    async def produce(self, partition: int, key: bytes, value: bytes | None) -> int:
        assert self.producer is not None
        md = await self.producer.send_and_wait(self.settings.topic, value, key=key,
                                               partition=partition)
        return int(md.offset)

    async def produce_many(self, records: list[tuple[int, bytes | None, bytes | None]]
                           ) -> list[int]:
        """Send every (partition, key, value) at once, then gather: one crossing."""
        assert self.producer is not None
        topic = self.settings.topic
        futures = [await self.producer.send(topic, value, key=key, partition=partition)
                   for partition, key, value in records]
        return [int(md.offset) for md in await asyncio.gather(*futures)]

    async def flush(self) -> None:
        if self.producer is not None:
            await self.producer.flush()

    # -- consumer ------------------------------------------------------------
    async def start_consumer(self, url: str, owned: Callable[[], frozenset[int]],
                             events: trio.MemorySendChannel[BridgeEvent]) -> None:
        s = self.settings
        self.events = events
        self.assignor = _Assignor(s.topic, url, owned)
        self.consumer = AIOKafkaConsumer(
            **_common(s), group_id=s.group, group_instance_id=s.instance_id or None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            partition_assignment_strategy=(self.assignor,),
            session_timeout_ms=s.session_timeout_ms, heartbeat_interval_ms=s.heartbeat_ms,
            rebalance_timeout_ms=max(s.session_timeout_ms, 30_000),
            max_poll_records=s.max_batch, fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
        await self.consumer.start()
        self.consumer.subscribe([s.topic], listener=_Listener(self))

    async def fetch(self, timeout_ms: int) -> Batch:
        consumer = self.consumer
        if self.failure is not None:
            raise self.failure
        if consumer is None:  # left the group (shutdown): nothing more to read
            await asyncio.sleep(timeout_ms / 1000)
            return Batch(epoch=self.epoch, records={}, positions={})
        try:
            got = await consumer.getmany(timeout_ms=timeout_ms,
                                         max_records=self.settings.max_batch)
        except ConsumerStoppedError:
            if not self.closing:
                raise
            return Batch(epoch=self.epoch, records={}, positions={})
        records = {tp.partition: [Record(m.offset, m.key, m.value) for m in msgs]
                   for tp, msgs in got.items()}
        return Batch(epoch=self.epoch, records=records, positions=self._positions())

    def _positions(self) -> dict[int, int]:
        return _known_positions(self.consumer)

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        assert self.consumer is not None
        tps = [TopicPartition(self.settings.topic, p) for p in partitions]
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}

    async def fence_offset(self, partition: int) -> int:
        """The end offset of ``partition`` asked on a connection of its own: the group
        consumer's connection may be parked behind a fetch long-poll (the broker
        answers one request per connection at a time, and a fetch waits up to
        fetch_max_wait_ms), and a fence must answer in milliseconds."""
        async with self.offsets_lock:
            if self.offsets is None:
                offsets = AIOKafkaConsumer(**_common(self.settings), group_id=None,
                                           enable_auto_commit=False)
                await offsets.start()
                self.offsets = offsets
        tp = TopicPartition(self.settings.topic, partition)
        ends = await self.offsets.end_offsets([tp])
        return int(ends[tp])

    def highwater(self, partition: int) -> int | None:
        assert self.consumer is not None
        hw = self.consumer.highwater(TopicPartition(self.settings.topic, partition))
        return None if hw is None else int(hw)

    def generation(self) -> int:
        assert self.consumer is not None
        return int(self.consumer._coordinator.generation)

    async def to_trio(self, make: Callable[[_FutureReply], BridgeEvent]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        msg = make(_FutureReply(loop, fut))
        events = self.events
        assert events is not None
        try:
            self.token.run_sync_soon(events.send_nowait, msg)
        except trio.RunFinishedError:
            fut.cancel()
        return await fut

    async def leave_group(self) -> None:
        """Stop the group consumer (LeaveGroup unless static); rebalance callbacks
        become no-ops first: the caller has already revoked everything locally."""
        self.closing = True
        if self.consumer is not None:
            try:
                await self.consumer.stop()
            except Exception:
                log.exception("event=kafka_stop_failed client=consumer")
            self.consumer = None

    async def stop(self) -> None:
        self.closing = True
        for client in (self.consumer, self.producer, self.offsets):
            if client is not None:
                try:
                    await client.stop()
                except Exception:
                    log.exception("event=kafka_stop_failed client=%s", type(client).__name__)
        self.consumer = self.producer = self.offsets = None


def _known_positions(consumer: AIOKafkaConsumer | None) -> dict[int, int]:
    """The consumer's position of every assigned, unpaused partition whose position is
    known (aiokafka's public position() may block to reset; we want the known ones)."""
    if consumer is None:  # stopped while the fetch returned (shutdown)
        return {}
    sub = consumer._subscription.subscription
    if sub is None or sub.assignment is None:
        return {}
    out: dict[int, int] = {}
    for tp in sub.assignment.tps:
        st = sub.assignment.state_value(tp)
        if st is not None and st.has_valid_position and not st.paused:
            out[tp.partition] = st.position
    return out


class _Reader:
    """A group-less consumer of every partition (the change feed). Lives on the loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self, start: dict[int, int | None] | None) -> dict[int, int]:
        """Assign all partitions; ``start`` maps partition -> next offset to read
        (None: the beginning); partitions not in it (or start None) begin at the end.
        Returns the starting position of every partition."""
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            **_common(s), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=s.max_batch)
        await self.consumer.start()
        parts = self.consumer.partitions_for_topic(s.topic)
        if parts is None:
            await self.consumer._client.force_metadata_update()
            parts = self.consumer.partitions_for_topic(s.topic) or set()
        tps = [TopicPartition(s.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        wanted = start or {}
        for tp in tps:
            where = wanted.get(tp.partition, -1)
            if where is None:
                await self.consumer.seek_to_beginning(tp)
            elif where < 0:
                await self.consumer.seek_to_end(tp)
            else:
                self.consumer.seek(tp, where)
        return {tp.partition: int(await self.consumer.position(tp)) for tp in tps}

    async def fetch(self, timeout_ms: int) -> dict[int, list[Record]]:
        assert self.consumer is not None
        got = await self.consumer.getmany(timeout_ms=timeout_ms,
                                          max_records=self.settings.max_batch)
        return {tp.partition: [Record(m.offset, m.key, m.value) for m in msgs]
                for tp, msgs in got.items()}

    async def end_offsets(self) -> dict[int, int]:
        assert self.consumer is not None
        ends = await self.consumer.end_offsets(sorted(self.consumer.assignment()))
        return {tp.partition: int(off) for tp, off in ends.items()}

    async def fetch_batch(self, timeout_ms: int) -> Batch:
        """:meth:`fetch`, with the positions reached (epoch 0: no group, no revokes)."""
        records = await self.fetch(timeout_ms)
        return Batch(epoch=0, records=records, positions=_known_positions(self.consumer))

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None


class Reader:
    """Trio-facing handle of a :class:`_Reader`; close it with ``aclose``."""

    def __init__(self, bridge: KafkaBridge, side: _Reader) -> None:
        self._bridge = bridge
        self._side = side

    async def fetch(self, timeout_ms: int = 500) -> dict[int, list[Record]]:
        return await self._bridge._call(functools.partial(self._side.fetch, timeout_ms))

    async def fetch_batch(self, timeout_ms: int = 500) -> Batch:
        return await self._bridge._call(functools.partial(self._side.fetch_batch, timeout_ms))

    async def end_offsets(self) -> dict[int, int]:
        """The end offset of every partition this reader reads."""
        return await self._bridge._call(self._side.end_offsets)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._bridge._call(self._side.stop)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, side: _Loop) -> None:
        self.side = side

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        side = self.side
        side.epoch += 1
        if side.closing:
            return
        parts = frozenset(tp.partition for tp in revoked)
        log.info("event=revoked epoch=%d partitions=%s", side.epoch, sorted(parts))
        await self._guard(side.to_trio(lambda reply: Revoked(side.epoch, parts, reply)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        side = self.side
        consumer = side.consumer
        if side.closing or consumer is None:
            return
        await self._guard(self._assigned(consumer, sorted(assigned)))

    async def _assigned(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        side = self.side
        if tps:
            consumer.pause(*tps)  # no fetch before we seek where the state owner says
        ends = await _retry(lambda: consumer.end_offsets(tps), side.settings.session_timeout_ms)
        end_offsets = {tp.partition: int(off) for tp, off in ends.items()}
        assert side.assignor is not None
        table = decode_table(side.assignor.table_bytes, side.generation())
        parts = frozenset(tp.partition for tp in tps)
        log.info("event=assigned epoch=%d generation=%d partitions=%s", side.epoch,
                 table.generation, sorted(parts))
        seeks: dict[int, int | None] = await side.to_trio(
            lambda reply: Assigned(side.epoch, parts, table, end_offsets, reply))
        for tp in tps:
            where = seeks.get(tp.partition)
            if where is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, where)
        if tps:
            consumer.resume(*tps)

    async def _guard(self, work: Awaitable[Any]) -> None:
        # aiokafka logs and swallows listener errors; we make the next fetch raise so
        # the node stops instead of serving from a state it no longer understands.
        try:
            await work
        except Exception as exc:
            log.exception("event=rebalance_listener_failed")
            self.side.failure = exc


async def _retry(fn: Callable[[], Awaitable[T]], budget_ms: int) -> T:
    deadline = time.monotonic() + budget_ms / 1000
    while True:
        try:
            return await fn()
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("event=kafka_retry error=%r", exc)
            await asyncio.sleep(0.2)


class KafkaBridge:
    """Trio-facing side of the bridge. Every method crosses to asyncio once."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, side: _Loop) -> None:
        self._portal = portal
        self._side = side

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        fut: concurrent.futures.Future[T] = self._portal.start_task_soon(fn, *args)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def _wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        fut.add_done_callback(_wake)
        try:
            await done.wait()
        finally:
            if not fut.done():
                fut.cancel()
        return fut.result()

    async def _sync(self, fn: Callable[..., T], *args: Any) -> T:
        async def _run() -> T:
            return fn(*args)

        return await self._call(_run)

    async def ensure_topic(self, create_configs: dict[str, str] | None = None) -> TopicInfo:
        """Create the topic if missing (compacted; ``create_configs`` override, e.g. for
        tests that need a topic someone else made differently); describe it."""
        return await self._call(self._side.ensure_topic, create_configs)

    async def describe_group(self, group: str) -> GroupInfo:
        return await self._call(self._side.describe_group, group)

    async def start_producer(self) -> None:
        await self._call(self._side.start_producer)

    async def produce(self, partition: int, key: bytes, value: bytes | None) -> int:
        """Produce one record (acks=all, idempotent); return its offset.
        Raises BrokerUnavailable on any Kafka error."""
        try:
            return await self._call(self._side.produce, partition, key, value)
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(repr(exc)) from None

    async def produce_many(self, records: list[tuple[int, bytes | None, bytes | None]]
                           ) -> list[int]:
        """Produce a batch of (partition, key, value) records in one crossing (loaders,
        tests, benchmarks); return their offsets in order. Raises BrokerUnavailable."""
        try:
            return await self._call(self._side.produce_many, records)
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(repr(exc)) from None

    async def flush(self) -> None:
        await self._call(self._side.flush)

    async def start_consumer(self, url: str, owned: Callable[[], frozenset[int]],
                             events: trio.MemorySendChannel[BridgeEvent]) -> None:
        await self._call(self._side.start_consumer, url, owned, events)

    async def fetch(self, timeout_ms: int = 200) -> Batch:
        return await self._call(functools.partial(self._side.fetch, timeout_ms))

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return await self._call(self._side.end_offsets, partitions)

    async def produce_bulk(self, records: Iterable[tuple[int, bytes, bytes | None]],
                           batch_bytes: int = 512 * 1024) -> int:
        """Load many records fast (see :meth:`_Loop.produce_bulk`); returns how many.
        ``records`` is consumed on the bridge's thread: a plain generator, no trio."""
        return await self._call(self._side.produce_bulk, records, batch_bytes)

    async def fence_offset(self, partition: int) -> int:
        """Kafka's end offset of ``partition`` now (a fence: RouterHandle.read)."""
        return await self._call(self._side.fence_offset, partition)

    async def highwater(self, partition: int) -> int | None:
        return await self._sync(self._side.highwater, partition)

    async def generation(self) -> int:
        return await self._sync(self._side.generation)

    @contextlib.asynccontextmanager
    async def open_reader(self, start: dict[int, int | None] | None = None
                          ) -> AsyncIterator[tuple[Reader, dict[int, int]]]:
        """A group-less reader of every partition and its starting positions; see
        :meth:`_Reader.start` for ``start``. Stopped on exit, even when cancelled."""
        side = _Reader(self._side.settings)
        reader = Reader(self, side)
        try:
            positions = await self._call(side.start, start)
            yield reader, positions
        finally:
            await reader.aclose()

    def begin_shutdown(self) -> None:
        """From now on rebalance callbacks do nothing (the node is leaving)."""
        self._side.closing = True

    async def leave_group(self) -> None:
        """Leave the consumer group now (fast failover for the others)."""
        with trio.CancelScope(shield=True):
            await self._call(self._side.leave_group)

    async def stop(self) -> None:
        """Stop consumer (LeaveGroup unless static) and producer; always runs."""
        with trio.CancelScope(shield=True):
            await self._call(self._side.stop)


@contextlib.asynccontextmanager
async def open_bridge(settings: Settings) -> AsyncIterator[KafkaBridge]:
    """Start the asyncio thread; on exit stop every aiokafka object, then the thread."""
    cm = anyio.from_thread.start_blocking_portal("asyncio")
    portal = await trio.to_thread.run_sync(cm.__enter__)
    side = _Loop(settings, trio.lowlevel.current_trio_token())
    bridge = KafkaBridge(portal, side)
    try:
        yield bridge
    finally:
        with trio.CancelScope(shield=True):
            await bridge.stop()
            await trio.to_thread.run_sync(cm.__exit__, None, None, None)


