"""Prometheus metrics at ``GET /metrics``, from a registry owned by one app.

Two sources, both in the app's own :class:`CollectorRegistry` (never the process-global
one, so a process may build several apps, as the tests do):

- request metrics, counted by before/after-request hooks (web/app.py) and by the lean
  front's handler (web/hot.py): requests by route template, method and status; latency
  histograms split by ``kind`` — ``local`` (answered here) or ``proxied`` (the owner's
  answer, forwarded: the routes say so, from web/decide.py's answer);
- :class:`NodeCollector`, which reads the actors' ``statistics()`` and counters at
  scrape time: nothing in the actors is instrumented for Prometheus.

Counters read at scrape time from the state owner (rebalances, records that did not
apply as written: unusable, wrong_partition, fenced, expect_failed) are
kept by the node itself and may reset when the process restarts, as every counter does.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from actors.feed import FeedHandle
from actors.router import RouterHandle
from actors.state import StateHandle
from actors.writer import WriterHandle
from kstate.core.durability import REASONS
from web.loop_lag import STEP, LoopLag
from web.nonces import NonceCache
from web.proxy import Proxy

# Local GETs take about a millisecond; proxied ones and writes (produce, acks=all,
# apply) take several; catch-up gates and timeouts take seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
UNMATCHED = "unmatched"  # the route label of a request no route matched (404/405)


def _garbage_collector() -> Iterator[Metric]:
    """Python's garbage collector: full passes (generation 2) stall the node, and the
    objects frozen at start (kstate/node.py, freeze_startup_heap) are what they skip."""
    collections = CounterMetricFamily("kstate_gc_collections",
                                      "garbage collector passes since start, by generation",
                                      labels=["generation"])
    for generation, stats in enumerate(gc.get_stats()):
        collections.add_metric([str(generation)], stats["collections"])
    yield collections
    yield GaugeMetricFamily("kstate_gc_frozen_objects",
                            "objects frozen at start: never walked by a garbage collector pass",
                            value=gc.get_freeze_count())


class NodeCollector:
    """Reads the node's handles when Prometheus scrapes; holds no state of its own."""

    def __init__(self, url: str, topic: str, group: str, started_at: float, *,
                 router: RouterHandle, state: StateHandle, writer: WriterHandle,
                 proxy: Proxy, feed: FeedHandle | None, nonces: NonceCache | None = None,
                 durability: tuple[str, ...] = (), loop_lag: LoopLag | None = None,
                 producer_starts: Callable[[], int] | None = None) -> None:
        self._url, self._topic, self._group_name = url, topic, group
        self._loop_lag = loop_lag
        self._producer_starts = producer_starts
        self._started_at = started_at
        self._router, self._state, self._writer = router, state, writer
        self._proxy, self._feed_h = proxy, feed
        self._nonces, self._durability = nonces, durability

    def collect(self) -> Iterable[Metric]:
        yield from self._group()
        yield from self._partitions()
        yield from self._traffic()
        yield from self._feed()
        yield from self._trust()
        yield from self._load()

    def _load(self) -> Iterator[Metric]:
        yield from _garbage_collector()
        if self._producer_starts is not None:
            yield CounterMetricFamily(
                "kstate_producer_process_starts",
                "producer processes started (docs/design.md, \"The producer process\"): "
                "1, plus one for each that died and was replaced",
                value=self._producer_starts())
        if self._loop_lag is None:
            return
        yield GaugeMetricFamily("kstate_event_loop_lag_seconds",
                                f"how late the event loop ran a {STEP} s sleep, latest: "
                                "every timer (HTTP deadlines, feed stall cuts) is as late",
                                value=self._loop_lag.latest)
        yield GaugeMetricFamily("kstate_event_loop_lag_max_seconds",
                                "the worst event loop lateness since the node started",
                                value=self._loop_lag.worst)

    def _trust(self) -> Iterator[Metric]:
        durability = GaugeMetricFamily(
            "kstate_topic_durability_warnings",
            "1 for each way the topic can lose acknowledged writes, as found at start "
            "(reason: replication_factor_1, min_insync_replicas_below_2, "
            "unclean_leader_election, finite_retention, min_compaction_lag_below_1h)",
            labels=["reason"])
        for reason in REASONS:
            durability.add_metric([reason], 1 if reason in self._durability else 0)
        yield durability
        if self._nonces is None:
            return
        st = self._nonces.statistics()
        yield GaugeMetricFamily("kstate_cluster_auth_nonces",
                                "nonces of node signatures remembered (replay cache)",
                                value=st.size)
        yield GaugeMetricFamily("kstate_cluster_auth_nonces_capacity",
                                "most nonces the replay cache holds", value=st.capacity)
        yield CounterMetricFamily("kstate_cluster_auth_replays",
                                  "forwarded writes refused: their signature was used before",
                                  value=st.replayed)
        yield CounterMetricFamily("kstate_cluster_auth_cache_full",
                                  "forwarded writes refused 503: the replay cache was full",
                                  value=st.full)

    def _group(self) -> Iterator[Metric]:
        table = self._router.table
        info = GaugeMetricFamily("kstate_node_info", "this node: advertised url, topic, group",
                                 labels=["url", "topic", "group"])
        info.add_metric([self._url, self._topic, self._group_name], 1)
        yield info
        yield GaugeMetricFamily("kstate_uptime_seconds", "seconds since the node started",
                                value=max(0.0, time.monotonic() - self._started_at))
        yield GaugeMetricFamily("kstate_group_generation",
                                "consumer group generation of the current routing table "
                                "(-1: not in the group yet)", value=table.generation)
        yield GaugeMetricFamily("kstate_group_members", "members in the current routing table",
                                value=len(table.members))
        yield CounterMetricFamily("kstate_rebalances", "group rebalances this node went "
                                  "through (each starts with a revoke)",
                                  value=self._state.table.epoch)
        owned = sum(1 for url in table.owners.values() if url == self._url)
        yield GaugeMetricFamily("kstate_partitions_owned",
                                "partitions the routing table gives this node", value=owned)

    def _partitions(self) -> Iterator[Metric]:
        stats = {pid: asdict(st) for pid, st in self._state.statistics().items()}
        label = ["partition"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "serving": GaugeMetricFamily("kstate_partition_serving",
                                         "1 if this node serves the partition", labels=label),
            "caught_up": GaugeMetricFamily("kstate_partition_caught_up",
                                           "1 once position >= catch-up target", labels=label),
            "position": GaugeMetricFamily("kstate_partition_position",
                                          "next offset the state owner will apply",
                                          labels=label),
            "target": GaugeMetricFamily("kstate_partition_end_offset",
                                        "end offset read right after the assignment (the "
                                        "catch-up target)", labels=label),
            "lag": GaugeMetricFamily("kstate_partition_lag",
                                     "records between position and catch-up target",
                                     labels=label),
            "keys": GaugeMetricFamily("kstate_partition_keys", "keys held in memory",
                                      labels=label),
            "replayed": GaugeMetricFamily("kstate_partition_replayed_records",
                                          "records applied since the assignment",
                                          labels=label),
            "catchup_seconds": GaugeMetricFamily(
                "kstate_partition_catchup_seconds",
                "seconds the partition took to catch up after its current assignment",
                labels=label),
            "invalid": CounterMetricFamily("kstate_partition_invalid_records",
                                           "records kstate cannot use (each deleted its "
                                           "key; by reason: "
                                           "kstate_partition_unusable_records)", labels=label),
            "wrong_partition": CounterMetricFamily(
                "kstate_partition_wrong_partition_records",
                "records in a partition other than their key's: ignored", labels=label),
            "fenced": CounterMetricFamily("kstate_partition_fenced_records",
                                          "writes of an older owner epoch (a zombie): ignored",
                                          labels=label),
            "expect_failed": CounterMetricFamily(
                "kstate_partition_expect_failed_records",
                "conditional writes whose condition failed when applied: ignored",
                labels=label),
        }
        unusable = CounterMetricFamily("kstate_partition_unusable_records",
                                       "records kstate cannot use, by reason (each deleted "
                                       "its key)", labels=["partition", "reason"])
        halted = GaugeMetricFamily("kstate_partition_halted",
                                   "1 if the partition stopped at a batch this node cannot "
                                   "decode (README, Operating)", labels=label)
        keys = 0
        for pid, st in stats.items():
            keys += int(st["keys"] or 0)
            for name, family in families.items():
                value = st.get(name)
                if value is None:
                    continue  # catchup_seconds before the partition caught up
                family.add_metric([str(pid)], float(value))
            for reason, count in sorted(st["unusable"].items()):
                unusable.add_metric([str(pid), reason], count)
            halted.add_metric([str(pid)], 0 if st["halted"] is None else 1)
        yield from families.values()
        yield unusable
        yield halted
        yield GaugeMetricFamily("kstate_partitions_halted",
                                "held partitions stopped at a batch this node cannot decode",
                                value=sum(1 for st in stats.values() if st["halted"]))
        yield GaugeMetricFamily("kstate_keys", "keys held in memory, all partitions",
                                value=keys)
        # A gauge: the sum over the partitions held now falls when one moves away.
        yield GaugeMetricFamily("kstate_invalid_records",
                                "records skipped as invalid, summed over the partitions "
                                "this node holds now", value=self._state.table.invalid_total())

    def _traffic(self) -> Iterator[Metric]:
        proxy = self._proxy.statistics()
        yield CounterMetricFamily("kstate_proxy_forwarded",
                                  "requests forwarded to their owner that got an answer",
                                  value=proxy.forwarded)
        yield CounterMetricFamily("kstate_proxy_failures",
                                  "requests whose owner did not answer (503 to the client)",
                                  value=proxy.failures)
        yield CounterMetricFamily("kstate_proxy_not_reached",
                                  "forwarded requests that certainly did not reach their "
                                  "owner (503 owner_not_reached)", value=proxy.not_reached)
        yield CounterMetricFamily("kstate_proxy_no_answer",
                                  "forwarded requests sent to their owner without a complete "
                                  "answer (503 owner_no_answer: a write may have applied)",
                                  value=proxy.no_answer)
        yield CounterMetricFamily("kstate_proxy_dropped_headers",
                                  "client headers not forwarded: not sendable as they are",
                                  value=proxy.dropped_headers)
        yield CounterMetricFamily("kstate_proxy_pipelined",
                                  "forwarded GETs answered on a pipelined link to their owner",
                                  value=proxy.pipelined)
        yield CounterMetricFamily("kstate_proxy_went_around",
                                  "forwarded GETs that left a stalled or failed link and were "
                                  "sent on a connection of their own", value=proxy.went_around)
        yield CounterMetricFamily("kstate_proxy_links_failed",
                                  "pipelined links to owners dropped for an error",
                                  value=proxy.links_failed)
        router = CounterMetricFamily("kstate_router_events",
                                     "router decisions: local_reads, fenced_reads (held "
                                     "partitions read during a rebalance), writes, unavailable "
                                     "(503: no owner, rebalancing, catching up, too many "
                                     "hops)", labels=["event"])
        for name, count in sorted(self._router.counters.snapshot().items()):
            router.add_metric([name], count)
        yield router
        w = self._writer.statistics()
        yield CounterMetricFamily("kstate_writer_produced", "records produced and applied",
                                  value=w.produced)
        yield CounterMetricFamily("kstate_writer_failed",
                                  "writes answered 503 (broker unavailable or timeout)",
                                  value=w.failed)
        yield GaugeMetricFamily("kstate_writer_inflight", "writes being produced now",
                                value=w.inflight)

    def _feed(self) -> Iterator[Metric]:
        if self._feed_h is None:
            return
        st = self._feed_h.statistics()
        yield GaugeMetricFamily("kstate_feed_subscribers", "live /changes subscribers",
                                value=st.subscribers)
        yield CounterMetricFamily("kstate_feed_dropped_subscribers",
                                  "subscribers cut off for lagging (their queue full, or "
                                  "they took nothing for feed_stall_timeout seconds)",
                                  value=st.dropped_subscribers)
        yield CounterMetricFamily("kstate_feed_published", "changes read by the feed",
                                  value=st.published)
        yield CounterMetricFamily("kstate_feed_delivered",
                                  "changes queued to subscribers", value=st.delivered)
        yield CounterMetricFamily("kstate_feed_invalid_records",
                                  "records kstate cannot use, streamed as deletes of their "
                                  "key (none with no key, a non-UTF-8 one or a marker's)",
                                  value=st.invalid)
        yield CounterMetricFamily("kstate_feed_skipped_records",
                                  "records that change nothing (markers, wrong partition, "
                                  "fenced, failed conditions): not streamed", value=st.skipped)
        yield GaugeMetricFamily("kstate_feed_halted_partitions",
                                "partitions the feed stopped at a batch it cannot decode",
                                value=len(st.halted))
        lim = self._feed_h.limits.statistics()
        yield GaugeMetricFamily("kstate_feed_connections",
                                "/changes websockets admitted and not yet gone (live, "
                                "replaying, or being cut off)", value=lim.subscribers)
        yield GaugeMetricFamily("kstate_feed_resumed_readers",
                                "/changes subscribers replaying with a Kafka reader of their "
                                "own", value=lim.resumed)
        yield CounterMetricFamily("kstate_feed_refused",
                                  "/changes subscribers refused (503) at the node's bounds",
                                  value=lim.refused)
        yield CounterMetricFamily("kstate_feed_stalled_subscribers",
                                  "/changes subscribers cut off for taking nothing for "
                                  "feed_stall_timeout seconds", value=lim.stalled)


# The methods a request is counted under by name; any other word a client sends (the
# parsers take any token as a method) is counted as OTHER_METHOD: a label per word
# would let one client grow the registry, and every scrape, without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                     "PATCH"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


class Metrics:
    """The node's registry, its request metrics and the collector of its actors."""

    def __init__(self, url: str, topic: str, group: str, started_at: float, *,
                 router: RouterHandle, state: StateHandle, writer: WriterHandle,
                 proxy: Proxy, feed: FeedHandle | None, nonces: NonceCache | None = None,
                 durability: tuple[str, ...] = (), loop_lag: LoopLag | None = None,
                 producer_starts: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("kstate_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("kstate_http_request_duration_seconds",
                                 "time to answer an HTTP request; kind=local|proxied",
                                 ["route", "method", "kind"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self._children: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}
        self.registry.register(NodeCollector(url, topic, group, started_at, router=router,
                                             state=state, writer=writer, proxy=proxy,
                                             feed=feed, nonces=nonces,
                                             durability=durability, loop_lag=loop_lag,
                                             producer_starts=producer_starts))

    def observe(self, route: str, method: str, status: int, kind: str, seconds: float) -> None:
        """Count one answered request."""
        # the labelled children, found once: prometheus_client's labels() costs more
        # than a hot read's lookup
        children = self._children.get((route, method, status, kind))
        if children is None:
            method = method_label(method)
            children = self._children.get((route, method, status, kind))
            if children is None:
                children = self._children[(route, method, status, kind)] = (
                    self.requests.labels(route, method, str(status)),
                    self.latency.labels(route, method, kind))
        children[0].inc()
        children[1].observe(seconds)

    def count(self, route: str, method: str, status: int) -> None:
        """Count one answered request whose latency is not measured."""
        self.requests.labels(route, method_label(method), str(status)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
