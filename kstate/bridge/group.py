"""(asyncio side) Group membership: the consumer in kstate's group, its assignor and
its rebalance listener.

- :class:`Assignor` puts each member's url and the partitions it holds into JoinGroup;
  the leader plans stickily (kstate.core.assignment) and ships the full routing table
  to every member.
- :class:`Listener` turns aiokafka's rebalance callbacks into :class:`Revoked` /
  :class:`Assigned` messages for trio and awaits trio's answer, so a revoke completes
  before the group moves on, and no partition is fetched before it was sought where
  the state owner says.
- :class:`GroupConsumer` owns the aiokafka consumer: start, fetch (one batch per
  crossing; a partition whose next batch cannot be decoded is paused and reported in
  ``Batch.halted``: kstate/bridge/undecodable.py), end offsets, leave.

aiokafka rebalances eagerly (every member revokes everything each time); kstate keeps
its own positions and never commits offsets (a new owner rebuilds from the beginning).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import ConsumerStoppedError, KafkaConnectionError, KafkaError
from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest, SyncGroupRequest

from kstate.bridge import authz
from kstate.bridge.config import KafkaConfig
from kstate.bridge.errors import (
    BrokerUnavailable,
    InstanceFenced,
    PartitionsChanged,
    TopicDeleted,
)
from kstate.bridge.lease import Lease
from kstate.bridge.membership import GROUP_MAX_SIZE_REACHED, StaticHeartbeat, refusal
from kstate.bridge.portal import ask_trio
from kstate.bridge.security import client_args
from kstate.bridge.stopping import stop_client
from kstate.bridge.undecodable import Undecodable
from kstate.core.assignment import (
    Claim,
    decode_claim,
    decode_table,
    encode_claim,
    encode_table,
    plan,
)
from kstate.core.messages import (
    Assigned,
    Batch,
    BridgeEvent,
    Record,
    Revoked,
    RoutingTable,
    Targets,
)

log = logging.getLogger(__name__)

# Every reader of the topic reads committed records only: records of a transaction a
# producer aborted are never applied or streamed, and end offsets are last stable
# offsets (a catch-up target, a fence).
ISOLATION = "read_committed"

# Prefetch bounds of the group consumer: large enough to replay at full speed, small
# enough that buffered raw batches do not stay in the process's memory high-water mark.
FETCH_MAX_BYTES = 8 * 1024 * 1024
PARTITION_FETCH_BYTES = 1024 * 1024
# A fetch waits for a full MiB or FETCH_WAIT_MS: while writes flow, one fetch carries many
# records instead of one fetch per record (a fetch costs ~0.3 ms of CPU in aiokafka, as
# much as the write itself). Nothing waits on it for this node's own writes (the writer
# applies them: kstate/core/table.py own_ahead); others' records appear up to this later.
FETCH_MIN_BYTES = 1024 * 1024
FETCH_WAIT_MS = 20
# Rejoins a member asks for, at most MAX_REJOINS in any REJOIN_WINDOW seconds: because
# its assignment's routing table names another url for its partitions (see
# Listener._check_table), or because a marker of a higher epoch took over a partition
# still assigned to it (request_rejoin). One is enough unless the group (or the topic)
# keeps misbehaving; the bound keeps a rejoin loop out. A rate, not a count for the
# process's life: a node that spent its rejoins long ago must still get a partition
# taken over served again.
MAX_REJOINS = 3
REJOIN_WINDOW = 600.0
# Seconds an assignment waits for fresh metadata (the topic's partition count).
METADATA_WAIT = 5.0
# Fresh metadata answers, a second apart, that must all lack the topic before a node
# takes it as deleted (Listener._topic_gone).
TOPIC_GONE_LOOKS = 2
# Seconds one attempt at a partition's end offset may take (a partition without a
# leader, its broker down, is not answered within it), and the pause between attempts
# while one is still not known (Listener._late_targets).
END_OFFSETS_ATTEMPT = 2.0
END_OFFSETS_BACKOFF = 0.2
# A static member refused for a full group (GROUP_MAX_SIZE_REACHED) asks again every
# PLACE_RETRY seconds for a session timeout plus PLACE_MARGIN (GroupConsumer._await_place).
PLACE_RETRY = 1.0
PLACE_MARGIN = 5.0


class Assignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """kstate's assignor: claims in JoinGroup, sticky plan, full table to everyone."""

    name = "kstate-sticky"
    version = 0

    def __init__(self, topic: str, url: str, owned: Callable[[], frozenset[int]]) -> None:
        self._topic = topic
        self._url = url
        self._owned = owned
        self.table_bytes = b""
        self.rejoins = 0  # rejoins asked for (GroupConsumer.ask_rejoin)

    def metadata(self, topics: Any) -> ConsumerProtocolMemberMetadata:
        claim = Claim(url=self._url, owned=self._owned(), rejoin=self.rejoins)
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

    def stale(self, table: RoutingTable, assigned: frozenset[int]) -> list[int]:
        """The partitions assigned to this member that ``table`` gives another url (or
        none), plus -1 if the table does not list this member's url at all."""
        out = sorted(p for p in assigned if table.owners.get(p) != self._url)
        if self._url not in table.members.values():
            out.append(-1)
        return out


class RejoinBudget:
    """At most ``limit`` rejoins in any ``window`` seconds (times from the caller's
    clock)."""

    def __init__(self, limit: int = MAX_REJOINS, window: float = REJOIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._asked: deque[float] = deque()

    def take(self, now: float) -> bool:
        """Spend one rejoin at ``now`` if the window has one left; whether it had."""
        while self._asked and now - self._asked[0] >= self.window:
            self._asked.popleft()
        if len(self._asked) >= self.limit:
            return False
        self._asked.append(now)
        return True


def record_of(m: Any) -> Record:
    """A fetched aiokafka record as the actors see it (headers kept, in order)."""
    headers = tuple((str(k), None if v is None else bytes(v))
                    for k, v in m.headers) if m.headers else ()
    return Record(m.offset, m.key, m.value, headers)


def known_positions(consumer: AIOKafkaConsumer | None) -> dict[int, int]:
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


class GroupConsumer:
    """The node's consumer in kstate's group. Methods run on the asyncio loop."""

    def __init__(self, config: KafkaConfig, token: trio.lowlevel.TrioToken) -> None:
        self.config = config
        self.token = token
        self.lease = Lease(config.session_timeout_ms)
        self.consumer: AIOKafkaConsumer | None = None
        self.assignor: Assignor | None = None
        self.events: trio.MemorySendChannel[BridgeEvent] | None = None
        self.epoch = 0  # revocations so far: a batch of an older epoch is stale
        self.closing = False  # leaving: rebalance callbacks send trio nothing
        # Leaving: until when (time.monotonic()) a revoke callback waits for the node to
        # leave (see begin_leaving), and set once it does.
        self.drain_until = 0.0
        self.left = asyncio.Event()
        self.failure: BaseException | None = None  # the listener failed: stop the node
        self.undecodable: Undecodable | None = None  # partitions stopped at a bad batch
        self.first_assigned: float | None = None  # time.monotonic() of the 1st assignment
        self.rejoin_asked: int | None = None  # the generation a rejoin was last asked in
        self.budget = RejoinBudget()
        self.clock: Callable[[], float] = time.monotonic  # the budget's clock
        # From a revoke callback until the assignment callback that follows is done: a
        # rebalance under way, whose assignment settles every partition anew.
        self.rebalancing = False
        self._kept: tuple[str, int] | None = None  # (why, generation) logged as kept
        # Asks the end offsets Kafka could not say at the last assignment (partitions
        # without a leader) until it can: Listener._late_targets. Cancelled by the
        # next revoke, and when the node leaves.
        self.late: asyncio.Task[None] | None = None
        self._deferred: str | None = None  # why the last superseded rejoin was put off
        self.num_partitions: int | None = None  # the topic's count when the node started
        # the coordinator said the node must stop (refused, or replaced by a process
        # with its instance id)
        self.refused = False

    def claim_after(self, now: float) -> float:
        """Until when (``time.monotonic()``; 0: no wait) a claim of a partition assigned
        at ``now`` must wait. Only a static member's process waits, and only for what
        it is assigned within a session timeout of its first assignment: it may have
        replaced a live incarnation of itself (same instance id) which the coordinator
        never asked to revoke (KIP-345) and whose read lease may last until its last
        answered heartbeat + Lease.window; that heartbeat was answered before the
        coordinator took our JoinGroup, so before our first assignment arrived. The
        session timeout covers the window with a margin for the two processes' clock
        rates (docs/design.md, "Static membership: a replaced incarnation")."""
        if not self.config.instance_id:
            return 0.0
        if self.first_assigned is None:
            self.first_assigned = now
        until = self.first_assigned + self.config.session_timeout_ms / 1000
        return until if now < until else 0.0

    async def start(self, url: str, owned: Callable[[], frozenset[int]],
                    events: trio.MemorySendChannel[BridgeEvent],
                    num_partitions: int | None = None) -> None:
        c = self.config
        self.events = events
        self.num_partitions = num_partitions
        if self.closing:
            # SIGTERM came before the node joined: it has left already (leave() found no
            # consumer to stop), so a join now would hand it partitions after its leave
            return
        self.assignor = Assignor(c.topic, url, owned)
        consumer = AIOKafkaConsumer(
            **client_args(c), group_id=c.group, group_instance_id=c.instance_id or None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            partition_assignment_strategy=(self.assignor,),
            session_timeout_ms=c.session_timeout_ms, heartbeat_interval_ms=c.heartbeat_ms,
            rebalance_timeout_ms=max(c.session_timeout_ms, 30_000),
            max_poll_records=c.max_batch, fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES, isolation_level=ISOLATION,
            fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=FETCH_WAIT_MS)
        # Published only once started and only if the node is not leaving by then: a
        # leave() while start() connected found no consumer, so this one is stopped
        # here, before it subscribes (it would join after the node's leave, and the
        # others would wait a session timeout for its partitions).
        try:
            await consumer.start()
        except KafkaConnectionError as exc:  # Kafka gone since the topic check
            raise BrokerUnavailable(f"the group consumer could not start: {exc!r}") from exc
        if self.closing:
            await stop_client(consumer, "consumer")
            return
        self.consumer = consumer
        self.undecodable = Undecodable(consumer, "group")
        self._watch_membership(consumer)
        consumer.subscribe([c.topic], listener=Listener(self))

    def _watch_membership(self, consumer: AIOKafkaConsumer) -> None:
        """Read every answer of the coordinator to this member: renew the read lease
        (kstate/bridge/lease.py) with every heartbeat or SyncGroup answered without
        error, and keep an answer after which the node must stop (a refusal, or fenced
        by a process with its instance id: kstate/bridge/membership.py) for the next
        fetch to raise. A static member's heartbeats name its instance id, so that the
        coordinator says when it was replaced. aiokafka does not say when a heartbeat
        succeeded, so its coordinator's one request path is wrapped."""
        coordinator = consumer._coordinator
        send = coordinator._send_req
        lease = self.lease
        instance_id = self.config.instance_id

        async def send_req(request: Any) -> Any:
            sent = time.monotonic()
            renews = isinstance(request, (HeartbeatRequest, SyncGroupRequest))
            if isinstance(request, HeartbeatRequest) and instance_id:
                request = StaticHeartbeat(request._group, request._generation_id,
                                          request._member_id, instance_id)
            resp = await send(request)
            code = getattr(resp, "error_code", None)
            if code == GROUP_MAX_SIZE_REACHED and instance_id \
                    and isinstance(request, JoinGroupRequest):
                resp = await self._await_place(send, request, resp)
                code = getattr(resp, "error_code", None)
            if code == 0 and renews:
                lease.renew(sent)
            elif code and isinstance(request, (HeartbeatRequest, StaticHeartbeat,
                                               JoinGroupRequest, SyncGroupRequest)):
                self._refused(code)
            return resp

        coordinator._send_req = send_req

    async def _await_place(self, send: Callable[[Any], Awaitable[Any]], request: Any,
                           resp: Any) -> Any:
        """The coordinator's answer to a static member's JoinGroup once it is no longer
        GROUP_MAX_SIZE_REACHED, or once it has been for a session timeout (plus
        PLACE_MARGIN), asking again every PLACE_RETRY seconds. A static member restarted
        at once (kill -9, a pod rescheduled) finds its old incarnation still in the
        group until that one's session expires, and Kafka counts the places before it
        replaces a member: in a group at ``group.max.size`` the new process was refused
        as if the group were full and exited 2, for good under a supervisor that
        restarts no node on exit 2. Asked again here, not by aiokafka, which would
        stop the node at its next fetch, and rejoin with no pause meanwhile."""
        until = time.monotonic() + self.config.session_timeout_ms / 1000 + PLACE_MARGIN
        log.warning("event=group_full_waiting seconds=%.1f", until - time.monotonic())
        while getattr(resp, "error_code", None) == GROUP_MAX_SIZE_REACHED \
                and not self.closing and time.monotonic() < until:
            await asyncio.sleep(PLACE_RETRY)
            resp = await send(request)
        return resp

    def _refused(self, code: int) -> None:
        """The coordinator answered ``code``: if the node must stop for it, keep why
        for the next fetch (aiokafka raises a bare KafkaError from it, or rejoins). A
        fenced member's lease ends at once: the process that replaced it owns its
        partitions. While leaving, nothing is kept: the node stops anyway."""
        c = self.config
        refused = refusal(code, c.group, c.instance_id, c.session_timeout_ms)
        if refused is None and code in authz.CODES:
            # the group's ACL is missing or was revoked: the coordinator will not keep
            # this member, so nothing it holds can be confirmed any more
            refused = authz.for_code(c, code, "Describe", "joining the group")
            self.lease.end()
        if refused is None:
            return
        self.refused = True
        if isinstance(refused, InstanceFenced):
            self.lease.end()
        if self.failure is None and not self.closing:
            log.error("event=group_refused code=%d detail=%r", code, str(refused))
            self.failure = refused

    async def fetch(self, timeout_ms: int) -> Batch:
        consumer = self.consumer
        if self.failure is not None:
            raise self.failure
        if consumer is None:  # left the group (shutdown): nothing more to read
            await asyncio.sleep(timeout_ms / 1000)
            return Batch(epoch=self.epoch, records={}, positions={})
        try:
            got = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.config.max_batch)
        except ConsumerStoppedError:
            if not self.closing:
                raise
            return Batch(epoch=self.epoch, records={}, positions={})
        except KafkaError as exc:
            # the coordinator's refusal, raised by aiokafka as it understood it
            # (_watch_membership kept what it means)
            if self.failure is not None:
                raise self.failure from None
            # replaced, or refused (a static member asking for a place), while leaving:
            # nothing to read
            if self.closing and self.refused:
                await asyncio.sleep(timeout_ms / 1000)
                return Batch(epoch=self.epoch, records={}, positions={})
            # an ACL missing or revoked (the topic's Read, the group's): the node can
            # no longer read what it serves
            refused = authz.not_authorized(exc, self.config, "Describe and Read",
                                           "reading the topic as a group member")
            if refused is not None:
                self.lease.end()
                raise refused from None
            raise
        records = {tp.partition: [record_of(m) for m in msgs] for tp, msgs in got.items()}
        # A partition whose next batch cannot be decoded was paused where it stopped:
        # the state owner stops it (Batch.halted); the others keep flowing.
        halted = self.undecodable.take() if self.undecodable is not None else {}
        return Batch(epoch=self.epoch, records=records, positions=known_positions(self.consumer),
                     halted=halted)

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        assert self.consumer is not None
        tps = [TopicPartition(self.config.topic, p) for p in partitions]
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: int(off) for tp, off in ends.items()}

    def generation(self) -> int:
        assert self.consumer is not None
        return int(self.consumer._coordinator.generation)

    def ask_rejoin(self, consumer: AIOKafkaConsumer, why: str, generation: int,
                   partitions: list[int]) -> bool:
        """Ask the coordinator for a rebalance (log ``event=<why>_rejoin``), with a claim
        that differs from the one it stored (``Claim.rejoin``): it rebalances a known
        member's JoinGroup only if its metadata changed (or it leads), so this is one
        rebalance, a new generation and a fresh table. Once per generation (the next
        assignment settles every reason at once) and at most MAX_REJOINS in any
        REJOIN_WINDOW (RejoinBudget), else ``event=<why>_kept`` (once per generation).
        Whether a rejoin is asked for in this generation (now or before)."""
        assert self.assignor is not None
        if self.rejoin_asked == generation:
            return True
        if not self.budget.take(self.clock()):
            if self._kept != (why, generation):
                self._kept = (why, generation)
                log.error("event=%s_kept generation=%d partitions=%s rejoins=%d "
                          "window_s=%.0f", why, generation, partitions, self.budget.limit,
                          self.budget.window)
            return False
        self.assignor.rejoins += 1
        self.rejoin_asked = generation
        log.warning("event=%s_rejoin generation=%d partitions=%s rejoin=%d", why,
                    generation, partitions, self.assignor.rejoins)
        consumer._coordinator.request_rejoin()
        return True

    async def request_rejoin(self, why: str, partitions: list[int]) -> bool:
        """:meth:`ask_rejoin` from trio (kstate/bridge/bridge.py) for ``partitions``
        the state owner still serves, only while a rejoin can help, so that no ask
        spends the budget for nothing. Returns True when nothing is left to ask: a
        rebalance is asked for (now or before), pending or under way (its assignment
        settles the partitions), or the node is leaving. False when it should be
        asked again later: the node is not a member of the group now (generation -1:
        expelled, or joining), its read lease does not hold (the group may be moving
        the partitions on without it), its consumer no longer holds them (revoked
        meanwhile: the state owner has not applied that yet), or the budget is spent
        for now."""
        consumer = self.consumer
        if self.closing or consumer is None:
            return True
        coordinator = consumer._coordinator
        generation = int(coordinator.generation)
        held = {tp.partition for tp in consumer.assignment()}
        mine = [p for p in partitions if p in held]
        if generation < 0:
            return self._defer(why, "not_a_member", partitions, False)
        if not self.lease.valid():
            return self._defer(why, "lease_lapsed", partitions, False)
        if (self.rebalancing or coordinator._rejoin_needed_fut.done()
                or consumer._subscription.reassignment_in_progress):
            return self._defer(why, "rebalance_pending", partitions, True)
        if not mine:
            return self._defer(why, "not_held", partitions, False)
        asked = self.ask_rejoin(consumer, why, generation, mine)
        if asked:
            self._deferred = None
        return asked

    def _defer(self, why: str, reason: str, partitions: list[int], settled: bool) -> bool:
        """A rejoin for ``why`` not asked now, for ``reason`` (logged when it changes:
        the caller asks again while the partitions stay taken over)."""
        if self._deferred != reason:
            self._deferred = reason
            log.info("event=rejoin_deferred cause=%s reason=%s partitions=%s", why, reason,
                     partitions)
        return settled

    async def ask_trio(self, make: Callable[[Any], BridgeEvent]) -> Any:
        assert self.events is not None
        return await ask_trio(self.token, self.events, make)

    def begin_leaving(self, drain: float) -> None:
        """(from trio) The node is leaving: it revokes everything locally and waits
        for its writes in flight, then calls :meth:`leave`. From now on rebalance
        callbacks send trio nothing (the shutdown revoke is the last word), but a
        revoke callback still holds the group until the node leaves, at most ``drain``
        seconds: the longest the node can still acknowledge a write (its HTTP
        drain)."""
        self.drain_until = time.monotonic() + drain
        self.closing = True

    async def wait_left(self) -> None:
        """A revoke while leaving: return once the node leaves, or its drain is over.
        A rebalance another member started must not complete while this node may
        still acknowledge a write it produced before its shutdown revoke: that write
        may land after the new owner read its catch-up target (docs/design.md,
        "Consistency rules", 2). Asks trio nothing, so a node whose trio side failed
        holds the group no longer than the drain."""
        remaining = self.drain_until - time.monotonic()
        if remaining <= 0 or self.left.is_set():
            return
        log.info("event=revoke_held_while_leaving seconds=%.3f", remaining)
        try:
            await asyncio.wait_for(self.left.wait(), remaining)
        except TimeoutError:
            log.warning("event=revoke_released_at_drain_end seconds=%.3f", remaining)

    async def stop_late(self) -> None:
        """Stop the task that waits for end offsets of the last assignment, if any."""
        late, self.late = self.late, None
        if late is not None and not late.done():
            late.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await late

    async def leave(self) -> None:
        """Stop the consumer (LeaveGroup unless static); rebalance callbacks send trio
        nothing from now on: the caller has already revoked everything locally, and
        its writes in flight are finished (a revoke callback waiting for that returns).
        The read lease ends before LeaveGroup is sent: once it is, others may own the
        partitions."""
        self.closing = True
        self.left.set()
        self.lease.end()
        await self.stop_late()
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await stop_client(consumer, "consumer")


async def end_offsets_each(consumer: AIOKafkaConsumer, tps: list[TopicPartition]
                    ) -> tuple[dict[TopicPartition, int], KafkaError | None]:
    """The end offset of each of ``tps`` Kafka answers for within END_OFFSETS_ATTEMPT
    (each asked on its own, at once: one without a leader must not hold up the
    others), and an error for those it did not answer (None: it answered for all)."""
    async def one(tp: TopicPartition) -> dict[TopicPartition, int]:
        # aiokafka's own bounded wait (it retries a missing leader within it)
        got = await consumer._fetcher.end_offsets([tp], int(END_OFFSETS_ATTEMPT * 1000))
        return {t: int(off) for t, off in got.items()}

    answers = await asyncio.gather(*(one(tp) for tp in tps), return_exceptions=True)
    ends: dict[TopicPartition, int] = {}
    error: KafkaError | None = None
    for tp, answer in zip(tps, answers, strict=True):
        if isinstance(answer, KafkaError):
            error = answer
        elif isinstance(answer, BaseException):
            raise answer
        elif tp in answer:
            ends[tp] = answer[tp]
        else:
            error = KafkaError(f"no end offset of partition {tp.partition} in the answer")
    return ends, error


def _heartbeat_meanwhile(consumer: AIOKafkaConsumer) -> None:
    """Start aiokafka's heartbeats now, not after the assignment callback returns.

    aiokafka starts them only once its assignment callback is done, and the coordinator
    expects one within the session timeout of the SyncGroup: a callback that waits
    longer (end offsets while a partition has no leader, fresh metadata) got the member
    expelled, and the group rebalanced without it while it went on assigning. The Java
    consumer heartbeats from its own thread during the callbacks. aiokafka's
    ``_start_heartbeat_task`` starts one only if none runs; the one started here is the
    one it stops before the next rejoin."""
    consumer._coordinator._start_heartbeat_task()


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's rebalance listener: revoke and assign, answered by trio."""
    def __init__(self, group: GroupConsumer) -> None:
        self.group = group

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        g = self.group
        g.epoch += 1
        await g.stop_late()  # the next assignment reads every target anew
        if g.closing:
            await g.wait_left()
            return
        g.rebalancing = True  # until the assignment that follows is answered
        parts = frozenset(tp.partition for tp in revoked)
        log.info("event=revoked epoch=%d partitions=%s", g.epoch, sorted(parts))
        epoch = g.epoch
        await self._guard(g.ask_trio(lambda reply: Revoked(epoch, parts, reply)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        g = self.group
        consumer = g.consumer
        if g.closing or consumer is None:
            return
        try:
            await self._guard(self._assigned(consumer, sorted(assigned)))
        finally:
            g.rebalancing = False

    async def _assigned(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        g = self.group
        claim_after = g.claim_after(time.monotonic())
        if tps:
            consumer.pause(*tps)  # no fetch before we seek where the state owner says
        _heartbeat_meanwhile(consumer)
        generation = consumer._coordinator.generation
        ends = await self._end_offsets(consumer, tps)
        if ends is None:
            return  # the group moved on: its next assignment settles every partition
        if g.closing:
            return  # began leaving meanwhile: the shutdown revoke must stay the last word
        if await self._partitions_changed(consumer):
            return  # the node stops (the next fetch raises); nothing assigned or fetched
        end_offsets = {tp.partition: int(off) for tp, off in ends.items()}
        assert g.assignor is not None
        table = decode_table(g.assignor.table_bytes, g.generation())
        parts = frozenset(tp.partition for tp in tps)
        log.info("event=assigned epoch=%d generation=%d partitions=%s", g.epoch,
                 table.generation, sorted(parts))
        if claim_after:
            log.info("event=claims_held until_s=%.3f", claim_after - time.monotonic())
        epoch = g.epoch
        seeks: dict[int, int | None] = await g.ask_trio(
            lambda reply: Assigned(epoch, parts, table, end_offsets, reply, claim_after))
        if g.closing:
            return  # refused by the state owner if it came after the shutdown revoke
        known = [tp for tp in tps if tp in ends]
        for tp in known:
            await self._seek(consumer, tp, seeks.get(tp.partition))
        if known:
            consumer.resume(*known)
        unknown = [tp for tp in tps if tp not in ends]
        if unknown:
            # each waits for its own leader, paused meanwhile (a seek to its beginning
            # would wait for the leader too); the others serve once caught up
            g.late = asyncio.get_running_loop().create_task(self._guard(
                self._late_targets(consumer, generation, epoch, unknown, seeks)))
        self._check_table(consumer, table, parts)

    @staticmethod
    async def _seek(consumer: AIOKafkaConsumer, tp: TopicPartition, where: int | None
                    ) -> None:
        if where is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, where)

    def _over(self, consumer: AIOKafkaConsumer, generation: int, epoch: int | None = None
              ) -> bool:
        """Whether the assignment of ``generation`` (and ``epoch``) is over: the node is
        leaving, the member left that generation (expelled), the group needs a rejoin
        (a member joined or left), or a revoke came; the next assignment settles every
        partition anew."""
        g = self.group
        coordinator = consumer._coordinator
        return (g.closing or g.consumer is not consumer
                or coordinator.generation != generation
                or coordinator._rejoin_needed_fut.done()
                or (epoch is not None and g.epoch != epoch))

    async def _end_offsets(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
                           ) -> dict[TopicPartition, int] | None:
        """The end offsets (the catch-up targets) of those of ``tps`` Kafka answers for
        within one attempt; None if this assignment is over first (see _over).

        A partition without a leader (its broker down, no replica to elect) has no end
        offset until it has one again, however long that takes. It is asked again after
        the assignment (_late_targets) and alone answers 503 meanwhile: the partitions
        Kafka answered for pass their own catch-up gates. (Waiting here for all of them
        held every partition of the assignment for as long as one had no leader;
        giving up after a deadline stopped the node, and every member assigned the
        partition next in turn.)"""
        generation = consumer._coordinator.generation
        ends, error = await end_offsets_each(consumer, tps)
        if error is None:
            return ends
        if self._over(consumer, generation):
            log.warning("event=assignment_abandoned generation=%d error=%r",
                        generation, error)
            return None
        log.warning("event=end_offsets_unknown generation=%d partitions=%s error=%r",
                    generation, sorted(tp.partition for tp in tps if tp not in ends), error)
        return ends

    async def _late_targets(self, consumer: AIOKafkaConsumer, generation: int, epoch: int,
                            tps: list[TopicPartition], seeks: dict[int, int | None]
                            ) -> None:
        """Ask the end offsets of ``tps`` (assigned in ``generation``, without one at
        the assignment) until Kafka says each; then seek each where the state owner
        said, let it be fetched, and hand its target to the state owner (Targets):
        only then can its gate open. Ends when the assignment is over (see _over)."""
        g = self.group
        waiting = list(tps)
        while waiting:
            await asyncio.sleep(END_OFFSETS_BACKOFF)
            if self._over(consumer, generation, epoch):
                return
            ends, error = await end_offsets_each(consumer, waiting)
            if self._over(consumer, generation, epoch):
                return
            if error is not None:
                log.warning("event=kafka_retry partitions=%s error=%r",
                            sorted(tp.partition for tp in waiting if tp not in ends), error)
            if not ends:
                continue
            try:
                for tp in ends:
                    await self._seek(consumer, tp, seeks.get(tp.partition))
                if self._over(consumer, generation, epoch):
                    return
                consumer.resume(*ends)
            except KafkaError:  # unassigned meanwhile (IllegalStateError)
                if self._over(consumer, generation, epoch):
                    return
                raise
            found = {tp.partition: int(off) for tp, off in ends.items()}
            await g.ask_trio(functools.partial(Targets, epoch, found))
            waiting = [tp for tp in waiting if tp not in ends]

    async def _partitions_changed(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether the topic's partition count (fresh metadata, asked at every
        assignment) differs from the one the node started with: partitions were added
        while it ran (README, "Operating": not supported). Every key's partition, in
        this node's routing and in its check of other producers' records, follows the
        old count, so it stops (exit 2, one line: PartitionsChanged) instead of routing
        keys where other clients and restarted nodes no longer put them; likewise when
        the topic is gone (TopicDeleted). A leader plans with the count it last saw,
        which may lag by aiokafka's metadata age; every member's own check asks Kafka
        now."""
        g = self.group
        if g.num_partitions is None:
            return False
        client = consumer._client
        try:
            fresh = await asyncio.wait_for(client.force_metadata_update(), METADATA_WAIT)
        except TimeoutError:
            fresh = False
        if not fresh:
            return False  # no answer now: checked again at the next assignment
        topic = g.config.topic
        count = len(client.cluster.partitions_for_topic(topic) or ())
        if count == 0 and await self._topic_gone(client):
            # Kafka answered and knows no such topic: deleted under the running node (the
            # group leader, seeing it gone, assigned nothing). Serving on from memory
            # would answer with records gone from Kafka, and for a topic created again
            # under the name, with records it never held; a restarted node replays the
            # topic as it is.
            log.error("event=topic_deleted topic=%s", topic)
            g.failure = TopicDeleted(
                f"topic {topic!r} was deleted while this node ran: the records its state "
                "came from are gone; a restarted node creates it if missing and serves "
                "it as it is; README, Operating")
            return True
        if count in (0, g.num_partitions):
            return False
        log.error("event=partitions_changed topic=%s started_with=%d now=%d",
                  g.config.topic, g.num_partitions, count)
        g.failure = PartitionsChanged(
            f"topic {g.config.topic!r} now has {count} partitions; this node started with "
            f"{g.num_partitions}: adding partitions to a running topic is not supported "
            "(keys move to other partitions, their records stay where they were); "
            "README, Operating")
        return True

    async def _topic_gone(self, client: Any) -> bool:
        """Whether the topic is still unknown to Kafka in TOPIC_GONE_LOOKS fresh
        metadata answers, a second apart (a broker that has not yet seen the creation
        of a topic made a moment ago would answer as for a deleted one)."""
        topic = self.group.config.topic
        for _ in range(TOPIC_GONE_LOOKS):
            if topic in client.cluster.unauthorized_topics \
                    or client.cluster.partitions_for_topic(topic):
                return False
            await asyncio.sleep(1.0)
            try:
                if not await asyncio.wait_for(client.force_metadata_update(), METADATA_WAIT):
                    return False
            except TimeoutError:
                return False
        return not client.cluster.partitions_for_topic(topic) \
            and topic not in client.cluster.unauthorized_topics

    def _check_table(self, consumer: AIOKafkaConsumer, table: RoutingTable,
                     parts: frozenset[int]) -> None:
        """A static member that rejoined under a new url without a rebalance (the
        coordinator hands it its predecessor's cached assignment, KIP-345) gets a table
        naming the old url for its partitions: every node would forward them there,
        possibly forever. Ask for a rejoin (GroupConsumer.ask_rejoin), which makes it a
        rebalance and the leader a fresh table."""
        g = self.group
        assert g.assignor is not None
        stale = g.assignor.stale(table, parts)
        if stale:
            g.ask_rejoin(consumer, "stale_table", table.generation, stale)

    async def _guard(self, work: Awaitable[Any]) -> None:
        # aiokafka logs and swallows listener errors; we make the next fetch raise so
        # the node stops instead of serving from a state it no longer understands.
        try:
            await work
        except Exception as exc:
            log.exception("event=rebalance_listener_failed")
            self.group.failure = exc
