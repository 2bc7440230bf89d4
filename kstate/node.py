"""The composition root: the one place where a reader sees the whole node.

It binds the HTTP socket (so the node knows its url before anything is built; bound,
it refuses connections until the HTTP server listens, once the actors run), opens
the Kafka bridge, every channel and the root nursery, and starts the actors in
dependency order with ``nursery.start``. Channels and who holds each end::

    bridge (asyncio thread) ──events──► rebalance ──state──► state ◄──state── consumer
      (group listener: send end)          │  (Revoke/Assign)  ▲ reads, waits  (Batch)
                                          ├──router──► router ┤
                                          └ waits writer idle │ writes
                                                              ▼
    HTTP (web/: lean front + quart) ──► decision ──► router ──writes──► writer ──► bridge
    feed (group-less reader) ──► websocket subscribers      standby (group-less reader)

- ``state``  (StateIn: Batch, Revoke, Assign): senders consumer and rebalance; reader
  the state owner.
- ``events`` (BridgeEvent: Revoked, Assigned): sender the bridge's rebalance listener
  (and the shutdown here); reader the rebalance listener actor.
- ``router`` (RoutingTable): sender rebalance; reader the router.
- ``writes`` (Write, Claim): senders the router (for the HTTP layer) and rebalance
  (claims after an assignment); reader the writer.
- the writer also sends on ``state`` (Own: its records applied at once; Bump).

Any actor that raises cancels the node (one-cancels-all); ``run_node`` re-raises and the
CLI exits non-zero. ``stop`` set (SIGTERM/SIGINT) stops serving, finishes in-flight
writes, leaves the group, drains HTTP, and returns; set before the node armed that
shutdown (it serves nothing yet), it abandons the start, whatever step waits.
"""

from __future__ import annotations

import gc
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import trio

from actors import consumer, feed, rebalance, router, standby, state, writer
from actors.feed_limits import FeedLimits
from actors.replies import ReplyBox
from actors.router import RouterHandle
from kstate.bridge import (
    BrokerUnavailable,
    KafkaAuthFailed,
    KafkaBridge,
    KafkaNotAuthorized,
    TopicInfo,
    TopicRefused,
    open_bridge,
)
from kstate.bridge.produce_wire import PRODUCER_GIVES_UP_S
from kstate.core import durability
from kstate.core.exception_groups import lone_error
from kstate.core.messages import BridgeEvent, Revoked, RouterIn, StateIn, WriterIn
from kstate.settings import Settings
from web import tls
from web.app import create_app
from web.auth import serving_start, signer
from web.loop_lag import LoopLag
from web.proxy import Proxy
from web.server import FrontSettings, bind, bound_address, build_front, serve
from web.services import HttpConfig, build_services

log = logging.getLogger(__name__)

STATE_INBOX = 16  # batches queued for the state owner (each up to max_batch records)
WRITE_INBOX = 256  # writes queued for the writer
EVENTS_INBOX = 4  # rebalance events: at most one is outstanding (each awaits its ack)
ROUTER_INBOX = 4
FEED_BUFFER = 1024  # changes queued per live feed subscriber before it is cut off
TOPIC_WAIT = 60.0  # seconds the node waits for Kafka at start before it gives up
SHUTDOWN_EPOCH = 1 << 62  # the last epoch: batches fetched after shutdown are stale
# Seconds in-flight HTTP requests get to finish on shutdown: at least HTTP_DRAIN, and
# write_timeout + HTTP_DRAIN_MARGIN, since a local write in flight is answered by
# write_timeout (at worst 503, "may or may not apply"). A forwarded request may take up
# to the proxy deadline (about 2 x write_timeout + catchup_timeout), longer than a
# shutdown should wait: whatever is still in flight at the drain deadline is cancelled
# and answered 503 with what is known of it (web/hot.py, cut_off), the answers sent
# within HTTP_CUT_OFF more seconds.
HTTP_DRAIN = 3.0
HTTP_DRAIN_MARGIN = 1.0
HTTP_CUT_OFF = 1.0
LEAVE_MARGIN = 2.0  # leaving the group and stopping Kafka clients (seconds, generous)


def http_drain(settings: Settings) -> float:
    """How long a stopping node waits for the HTTP requests in flight."""
    return max(HTTP_DRAIN, settings.write_timeout + HTTP_DRAIN_MARGIN)


def longest_shutdown(settings: Settings) -> float:
    """The most a SIGTERM can take to end the node, Kafka unreachable included: the HTTP
    drain (which outlasts the writer's) and the answers to what it cut off, leaving,
    then the producer process giving up what Kafka did not take. A service manager's
    grace period must be longer."""
    return http_drain(settings) + HTTP_CUT_OFF + LEAVE_MARGIN + PRODUCER_GIVES_UP_S


class KafkaUnreachable(Exception):
    """No broker of ``bootstrap`` answered for TOPIC_WAIT seconds at start (nothing
    listening, a name that does not resolve, a network that drops it); the message is
    one line naming the setting (the CLI exits 2 with it)."""


class TopicNotDurable(Exception):
    """``require_durable`` is set and the topic can lose acknowledged writes; the
    message is one line naming every reason (the CLI exits 2 with it)."""


def _max_record_bytes(topic: TopicInfo) -> int | None:
    """The topic's max.message.bytes as described at start (None: not said)."""
    raw = topic.configs.get("max.message.bytes")
    return int(raw) if raw is not None and raw.isdigit() else None


def check_durability(topic: TopicInfo, require: bool) -> tuple[str, ...]:
    """Log each way ``topic`` can lose acknowledged writes; return their reasons. Raises
    TopicNotDurable when there is any and ``require`` is set."""
    found = durability.check(topic.replication, topic.configs)
    for w in found:
        log.warning("event=topic_durability_warning name=%s reason=%s replication=%d detail=%r",
                    topic.name, w.reason, topic.replication, w.message)
    if found and require:
        raise TopicNotDurable(
            f"topic {topic.name} can lose acknowledged writes and require_durable is set: "
            + "; ".join(w.message for w in found))
    return tuple(w.reason for w in found)


def freeze_startup_heap() -> int:
    """Move every object alive once the node is built out of the collector's passes;
    return how many.

    A full collection walks every object the collector tracks: after start about
    65,000 (modules, classes, functions, the app, the Kafka clients), whatever the
    data. One walk took 30-70 ms on a 2-core VM, and under write load Python ran one
    every few seconds: a stall of every request in flight, and of the asyncio thread
    (PUT p99 at c10, median of five runs: 41 ms with them, 16 ms without;
    docs/design.md, Performance). Those objects live as long as the process, so they
    are collected once and frozen (``gc.freeze``); later full passes walk only what was
    made since.
    Reference counting still frees a frozen object; only a cycle among them that turned
    to garbage later would stay. The process is the node (``kstate node``): a process
    running several nodes would freeze each one's startup objects for good."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What run_node reports once started: its url and topic."""
    url: str
    topic: TopicInfo


async def _ensure_topic(bridge: KafkaBridge, settings: Settings) -> TopicInfo:
    deadline = trio.current_time() + TOPIC_WAIT
    while True:
        try:
            return await bridge.ensure_topic()
        except (KafkaAuthFailed, KafkaNotAuthorized):
            raise  # wrong credentials or TLS setup, an ACL missing: waiting cannot help
        except TopicRefused as exc:
            # e.g. more replicas than brokers: passes once they have all started
            if exc.final or trio.current_time() > deadline:
                raise
            log.warning("event=kafka_wait bootstrap=%s error=%r", settings.bootstrap, str(exc))
            await trio.sleep(1.0)
        except Exception as exc:  # any Kafka error while the broker starts
            if trio.current_time() > deadline:
                raise KafkaUnreachable(
                    f"Kafka at {settings.bootstrap} (--bootstrap, KSTATE_BOOTSTRAP) did not "
                    f"answer for {TOPIC_WAIT:.0f} s: {exc}") from None
            log.warning("event=kafka_wait bootstrap=%s error=%r", settings.bootstrap, exc)
            await trio.sleep(1.0)


@contextmanager
def _kafka_at_start(settings: Settings, step: str) -> Iterator[None]:
    """A step of the start after the topic check that gave up on Kafka (gone since:
    the producer process or a reader could not connect) ends the node as a Kafka
    unreachable from the start does (KafkaUnreachable: exit 2, one line), not as a crash.
    A supervisor that restarts it tries again."""
    try:
        yield
    except BaseException as exc:
        gone = lone_error(exc)
        if not isinstance(gone, BrokerUnavailable):
            raise
        raise KafkaUnreachable(
            f"Kafka at {settings.bootstrap} (--bootstrap, KSTATE_BOOTSTRAP) stopped "
            f"answering while the node started ({step}): {gone}") from None


async def _sleep_until(wall: float) -> float:
    """Sleep until the wall clock reads ``wall``; return it."""
    await trio.sleep(max(0.0, wall - time.time()))
    return wall


async def _wait_topic(bridge: KafkaBridge, settings: Settings) -> TopicInfo:
    """The topic (created if missing), logged."""
    topic = await _ensure_topic(bridge, settings)
    log.info("event=topic name=%s partitions=%d created=%s configs=%s", topic.name,
             topic.partitions, topic.created, topic.configs)
    policy = topic.configs.get("cleanup.policy")
    if not topic.created and "compact" not in durability.cleanup_policies(topic.configs):
        # What retention deletes is a durability finding (check_durability): a user not
        # written again within it is lost at the next replay.
        log.warning("event=topic_not_compacted name=%s cleanup.policy=%s detail=%r",
                    topic.name, policy, "every record of a key is kept, not only its "
                    "latest: the topic and each replay grow with every write; kstate "
                    "uses the topic as it is")
    return topic


async def _leave(bridge: KafkaBridge, events: trio.MemorySendChannel[BridgeEvent],
                 num_partitions: int, held: frozenset[int], drain: float) -> None:
    """Shutdown, in the order that keeps the promise: stop serving every partition and
    let in-flight writes finish (through the rebalance listener, like a real revoke),
    then leave the group so the others take over at once. Closes ``events``.

    A rebalance another member starts meanwhile is held until this node leaves (at
    most ``drain``, past the HTTP drain: no write is acknowledged after it): the group must
    not hand a partition on while a write this node still acknowledges is in flight
    (kstate/bridge/group.py, wait_left).

    The revoke names every partition of the topic, not only ``held``: an assignment
    the bridge sent just before shutdown began may still be ahead of it in ``events``.
    One behind it is refused (its epoch is older: kstate/core/table.py assign).

    The revoke is not shielded: only an actor's failure cancels the root before the
    node left, and that took the rebalance actor, which answers it, with it (a
    shielded wait hung the node instead of exiting 1). Leaving is shielded."""
    bridge.begin_shutdown(drain)
    box: ReplyBox[None] = ReplyBox()
    try:
        async with events:
            await events.send(Revoked(SHUTDOWN_EPOCH, frozenset(range(num_partitions)), box))
            await box.wait()
    finally:
        with trio.CancelScope(shield=True):
            await bridge.leave_group()
    log.info("event=left_group partitions=%s", sorted(held))


async def run_node(settings: Settings, *, stop: trio.Event,
                   task_status: trio.TaskStatus[NodeInfo] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one kstate node until ``stop`` is set. Reports its url and topic once the
    HTTP server listens and the consumer has joined (or is joining) the group."""
    started = time.monotonic()
    # No node signature made before bound_at is for this process; signatures carry
    # whole seconds, so a node that checks them binds at the start of one.
    bound_at = time.time()
    if settings.api_token:
        bound_at = await _sleep_until(serving_start(bound_at))
    sock = bind(settings.listen)
    url = settings.advertise or bound_address(sock, settings.listen)
    try:
        async with open_bridge(settings.kafka()) as bridge, trio.open_nursery() as startup:
            # Until the node can stop gracefully (_run_actors arms its shutdown), a stop
            # abandons the start: nothing is served, no write acknowledged, the group
            # not joined. Each step of the start may wait long for a Kafka that does
            # not answer (the topic up to TOPIC_WAIT, the producer process, a reader),
            # and SIGTERM must not wait for them: a service manager kills a node that
            # outlives its grace period.
            armed = trio.Event()

            async def _give_up_on_stop() -> None:
                await stop.wait()
                if not armed.is_set():
                    log.info("event=node_stopped_before_start")
                    startup.cancel_scope.cancel()

            startup.start_soon(_give_up_on_stop)
            await _start_and_run(settings, bridge, sock, url, started, bound_at, stop,
                                 armed, task_status)
            startup.cancel_scope.cancel()  # stopped: the watch too
    finally:
        sock.close()  # no-op once the HTTP server took it over
    log.info("event=node_stopped seconds=%.3f", time.monotonic() - started)


async def _start_and_run(settings: Settings, bridge: KafkaBridge, sock: socket.socket,
                         url: str, started: float, bound_at: float, stop: trio.Event,
                         armed: trio.Event, task_status: trio.TaskStatus[NodeInfo]) -> None:
    topic = await _wait_topic(bridge, settings)
    warnings = check_durability(topic, settings.require_durable)
    with _kafka_at_start(settings, "its producer process"):
        await bridge.start_producer()
    server_ssl = peer_ssl = None
    if settings.tls_certfile:  # the port speaks TLS only; peers are called over TLS
        server_ssl = tls.server_context(settings.tls_certfile, settings.tls_keyfile)
        peer_ssl = tls.peer_context(settings.tls_cafile)
    http = HttpConfig(
        url=url, topic=topic.name, group=settings.group, max_body=settings.max_body,
        api_token=settings.api_token, started_at=started, bound_at=bound_at,
        cluster_auth_window=settings.cluster_auth_window,
        cluster_auth_nonces=settings.cluster_auth_nonces,
        durability_warnings=warnings, peer_ssl=peer_ssl)
    await _run_actors(settings, bridge, topic, sock, http, server_ssl, stop, armed,
                      task_status)


async def _run_actors(settings: Settings, bridge: KafkaBridge, topic: TopicInfo,
                      sock: socket.socket, http: HttpConfig,
                      server_ssl: ssl.SSLContext | None, stop: trio.Event,
                      armed: trio.Event, task_status: trio.TaskStatus[NodeInfo]) -> None:
    url = http.url
    state_send, state_recv = trio.open_memory_channel[StateIn](STATE_INBOX)
    events_send, events_recv = trio.open_memory_channel[BridgeEvent](EVENTS_INBOX)
    router_send, router_recv = trio.open_memory_channel[RouterIn](ROUTER_INBOX)
    writes_send, writes_recv = trio.open_memory_channel[WriterIn](WRITE_INBOX)
    proxy = Proxy(settings.proxy_deadline, sign=signer(settings.api_token),
                  ssl_context=http.peer_ssl)
    try:
        async with trio.open_nursery() as root:
            await root.start(proxy.run)  # its pipelined links to the other members
            # the state owner reads `state`; the writer reads `writes`
            state_h = await root.start(partial(state.run, inbox=state_recv,
                                               num_partitions=topic.partitions))
            # the writer also sends on `state` (its own records, epoch bumps)
            # reads and writes answer from memory only while the read lease holds
            lease = None if settings.serve_isolated else bridge.lease.valid
            writer_h = await root.start(partial(
                writer.run, bridge.produce, state_h, inbox=writes_recv, own=state_send.clone(),
                write_timeout=settings.write_timeout, catchup_timeout=settings.catchup_timeout,
                lease=lease, max_record_bytes=_max_record_bytes(topic)))
            standby_h = None
            if settings.standby:
                with _kafka_at_start(settings, "the standby reader"):
                    standby_h = await root.start(partial(standby.run, bridge,
                                                         num_partitions=topic.partitions))
            # the router reads `router`; its handle sends on `writes` for the HTTP layer
            router_h = RouterHandle(url, topic.partitions, state_h, writes_send,
                                    settings.catchup_timeout, bridge.fence_offset, standby_h,
                                    lease)
            await root.start(partial(router.run, router_h, inbox=router_recv))
            # the rebalance listener reads `events`, sends on `state`, `router` and
            # `writes` (claims)
            await root.start(partial(
                rebalance.run, events=events_recv, state=state_send.clone(), router=router_send,
                writer=writer_h, claims=writes_send.clone(), drain_timeout=settings.write_timeout))
            limits = FeedLimits(max_subscribers=settings.feed_max_subscribers,
                                max_resumed=settings.feed_max_resumed,
                                stall_timeout=settings.feed_stall_timeout)
            with _kafka_at_start(settings, "the feed reader"):
                feed_h = await root.start(partial(feed.run, bridge, buffer=FEED_BUFFER,
                                                  url=url, limits=limits))
            loop_lag = LoopLag()
            await root.start(loop_lag.run)
            services = build_services(http, router=router_h, state=state_h, writer=writer_h,
                                      proxy=proxy, feed=feed_h, loop_lag=loop_lag,
                                      producer_starts=lambda: bridge.producer.starts)
            front = build_front(services, create_app(services), FrontSettings(
                max_connections=settings.http_max_connections,
                head_timeout=settings.http_head_timeout,
                body_timeout=settings.http_body_timeout,
                idle_timeout=settings.http_idle_timeout,
                send_timeout=settings.http_send_timeout,
                max_head_bytes=settings.http_max_head_bytes, max_body=settings.max_body,
                drain_timeout=http_drain(settings), cut_off_timeout=HTTP_CUT_OFF), server_ssl)
            left = trio.Event()

            async def _serve(task_status: trio.TaskStatus[str]) -> None:
                await serve(front, sock, shutdown_trigger=stop.wait, task_status=task_status)
                log.info("event=http_drained")
                await left.wait()
                root.cancel_scope.cancel()  # HTTP is done and we left: stop the actors

            async def _shutdown(events: trio.MemorySendChannel[BridgeEvent]) -> None:
                await stop.wait()
                log.info("event=shutdown_started")
                # Feed websockets end now, each with a clean close: waited for, they would
                # be cut by the HTTP drain when leaving takes longer (writes held by
                # Kafka). Their clients resume on another node with from=, losing nothing.
                feed_h.close_all()
                # the front's drain deadline starts a moment after this: a margin
                await _leave(bridge, events, topic.partitions, state_h.held(),
                             http_drain(settings) + LEAVE_MARGIN)
                left.set()

            root.start_soon(_shutdown, events_send.clone())
            armed.set()  # from now on a stop is a graceful shutdown (_shutdown)
            await root.start(_serve)
            # the bridge's group listener sends on `events`; the consumer on `state`
            with _kafka_at_start(settings, "the group consumer"):
                await bridge.start_consumer(url, state_h.held, events_send, topic.partitions)
                await root.start(partial(consumer.run, bridge, outbox=state_send))
            # a partition taken over while still assigned here asks for a rebalance
            root.start_soon(rebalance.rejoin_superseded, state_h, bridge.request_rejoin)
            frozen = freeze_startup_heap()
            log.info("event=node_started url=%s listen=%s group=%s topic=%s partitions=%d "
                     "heap_frozen=%d bound_at=%.3f", url, settings.listen, settings.group,
                     topic.name, topic.partitions, frozen, http.bound_at)
            task_status.started(NodeInfo(url=url, topic=topic))
    finally:
        with trio.CancelScope(shield=True):
            await proxy.aclose()
            await writes_send.aclose()
