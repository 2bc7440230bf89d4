"""The supervisor: the one place where a reader sees the whole node.

It opens every channel and the root nursery, and starts the actors in dependency order
with ``nursery.start``::

    bridge (asyncio thread) ──events──► rebalance ──Revoke/Assign──► state ◄──Batch── consumer
                                            │                           ▲ reads/waits
                                            ├──RoutingTable──► router ──┘
                                            └─ waits writer idle        │ Write
                                                                        ▼
    HTTP (hypercorn + quart-trio) ──► router / proxy              writer ──produce──► bridge

Any actor that raises cancels the node (one-cancels-all); ``run_node`` re-raises and the
CLI exits non-zero. ``stop`` set (SIGTERM/SIGINT) drains HTTP, leaves the group, returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial

import trio

from actors import consumer, feed, rebalance, router, standby, state, writer
from actors.kafka import KafkaAuthFailed, KafkaBridge, TopicInfo, open_bridge
from actors.messages import BridgeEvent, ReplyBox, Revoked, RouterIn, StateIn, WriterIn
from actors.router import RouterHandle
from actors.settings import Settings
from web.app import Handles, create_app
from web.fast import fast_path
from web.proxy import Proxy
from web.server import serve

log = logging.getLogger(__name__)

STATE_INBOX = 16  # batches queued for the state owner (each up to max_batch records)
WRITE_INBOX = 256  # writes queued for the writer
EVENTS_INBOX = 4  # rebalance events: at most one is outstanding (each awaits its ack)
ROUTER_INBOX = 4
FEED_BUFFER = 1024  # changes queued per live feed subscriber before it is cut off
TOPIC_WAIT = 60.0  # seconds the node waits for Kafka at start before it gives up
SHUTDOWN_EPOCH = 1 << 62  # the last epoch: batches fetched after shutdown are stale
HTTP_DRAIN = 3.0  # seconds in-flight HTTP requests get to finish on shutdown


@dataclass(frozen=True, slots=True)
class NodeInfo:
    url: str
    topic: TopicInfo


async def _ensure_topic(bridge: KafkaBridge, settings: Settings) -> TopicInfo:
    deadline = trio.current_time() + TOPIC_WAIT
    while True:
        try:
            return await bridge.ensure_topic()
        except KafkaAuthFailed:
            raise  # wrong credentials or TLS setup: waiting cannot help
        except Exception as exc:  # any Kafka error while the broker starts
            if trio.current_time() > deadline:
                raise RuntimeError(f"Kafka at {settings.bootstrap} did not answer: {exc!r}") \
                    from exc
            log.warning("event=kafka_wait bootstrap=%s error=%r", settings.bootstrap, exc)
            await trio.sleep(1.0)


async def _leave(bridge: KafkaBridge, events: trio.MemorySendChannel[BridgeEvent],
                 held: frozenset[int]) -> None:
    """Shutdown, in the order that keeps the promise: stop serving every partition and
    let in-flight writes finish (through the rebalance listener, like a real revoke),
    then leave the group so the others take over at once."""
    with trio.CancelScope(shield=True):
        bridge.begin_shutdown()
        box: ReplyBox[None] = ReplyBox()
        async with events:
            await events.send(Revoked(SHUTDOWN_EPOCH, held, box))
            await box.wait()
        await bridge.leave_group()
        log.info("event=left_group partitions=%s", sorted(held))


async def run_node(settings: Settings, *, stop: trio.Event,
                   task_status: trio.TaskStatus[NodeInfo] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one kstate node until ``stop`` is set. Reports its url and topic once the
    HTTP server listens and the consumer has joined (or is joining) the group."""
    started = time.monotonic()
    async with open_bridge(settings) as bridge:
        topic: TopicInfo | None = None
        async with trio.open_nursery() as startup:  # SIGTERM while Kafka is not there yet

            async def _give_up_on_stop() -> None:
                await stop.wait()
                startup.cancel_scope.cancel()

            startup.start_soon(_give_up_on_stop)
            topic = await _ensure_topic(bridge, settings)
            startup.cancel_scope.cancel()
        if topic is None or stop.is_set():
            log.info("event=node_stopped_before_start")
            return
        log.info("event=topic name=%s partitions=%d created=%s configs=%s", topic.name,
                 topic.partitions, topic.created, topic.configs)
        if not topic.created and topic.configs.get("cleanup.policy") != "compact":
            log.warning("event=topic_not_compacted name=%s cleanup.policy=%s: deleted users "
                        "may come back after retention; kstate uses the topic as it is",
                        topic.name, topic.configs.get("cleanup.policy"))
        await bridge.start_producer()

        state_send, state_recv = trio.open_memory_channel[StateIn](STATE_INBOX)
        events_send, events_recv = trio.open_memory_channel[BridgeEvent](EVENTS_INBOX)
        router_send, router_recv = trio.open_memory_channel[RouterIn](ROUTER_INBOX)
        writes_send, writes_recv = trio.open_memory_channel[WriterIn](WRITE_INBOX)

        proxy = Proxy(settings.proxy_timeout)
        async with trio.open_nursery() as root:
            state_h = await root.start(partial(state.run, inbox=state_recv))
            writer_h = await root.start(partial(
                writer.run, bridge, state_h, inbox=writes_recv,
                write_timeout=settings.write_timeout, catchup_timeout=settings.catchup_timeout))
            standby_h = (await root.start(partial(standby.run, bridge,
                                                  partitions=topic.partitions))
                         if settings.standby else None)
            router_h = RouterHandle(settings.advertised_url, topic.partitions, state_h,
                                    writes_send, settings.catchup_timeout, bridge.fence_offset,
                                    standby_h)
            await root.start(partial(router.run, router_h, inbox=router_recv))
            await root.start(partial(
                rebalance.run, events=events_recv, state=state_send.clone(), router=router_send,
                writer=writer_h, drain_timeout=settings.write_timeout))

            feed_h = await root.start(partial(feed.run, bridge, buffer=FEED_BUFFER))
            handles = Handles(settings=settings, topic=topic.name, router=router_h,
                              state=state_h, writer=writer_h, proxy=proxy, started_at=started,
                              feed=feed_h, bridge=bridge)
            app = fast_path(create_app(handles), handles)

            left = trio.Event()

            async def _serve(task_status: trio.TaskStatus[str]) -> None:
                await serve(app, settings.listen, shutdown_trigger=stop.wait,
                            graceful_timeout=HTTP_DRAIN, task_status=task_status)
                log.info("event=http_drained")
                await left.wait()
                root.cancel_scope.cancel()  # HTTP is done and we left: stop the actors

            async def _shutdown() -> None:
                await stop.wait()
                log.info("event=shutdown_started")
                await _leave(bridge, shutdown_events, state_h.held())
                feed_h.close_all()  # live feed websockets end now, not at the drain deadline
                left.set()

            shutdown_events = events_send.clone()
            root.start_soon(_shutdown)

            bound = await root.start(_serve)
            url = settings.advertise or bound
            router_h.url = url
            await bridge.start_consumer(url, state_h.held, events_send)
            await root.start(partial(consumer.run, bridge, outbox=state_send))
            log.info("event=node_started url=%s listen=%s group=%s topic=%s partitions=%d",
                     url, bound, settings.group, topic.name, topic.partitions)
            task_status.started(NodeInfo(url=url, topic=topic))
        with trio.CancelScope(shield=True):
            await proxy.aclose()
        await writes_send.aclose()
    log.info("event=node_stopped seconds=%.3f", time.monotonic() - started)
