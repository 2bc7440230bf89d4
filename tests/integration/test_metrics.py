"""/metrics of real nodes over real HTTP: the numbers move with local and proxied
reads and writes, records kstate cannot use or that are in the wrong partition, feed
subscribers, a dead owner and the rebalance that follows (halted partitions:
tests/integration/test_undecodable.py)."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from kstate.bridge.tooling import open_tooling
from kstate.core.partitioner import partition_for
from kstate.settings import Settings
from tests.support.owners import keys_of
from tools import topic as load
from tools.procs import Node, wait_ready, wait_stable

PARTITIONS = 10
USERS = "/users/<path:email>"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, node: Node) -> Samples:
    r = await client.get(f"{node.base}/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def wait_metric(client: httpx.AsyncClient, node: Node, check, seconds: float = 30.0
                      ) -> Samples:
    deadline = time.monotonic() + seconds
    while True:
        m = await scrape(client, node)
        if check(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics of {node.url} never met the condition")
        await trio.sleep(0.2)


async def test_metrics_move_with_traffic_and_rebalance(make_node, client, names,
                                                      kafka_bootstrap):
    a = make_node()
    await wait_ready(client, a)  # the first node creates the topic, then the second joins
    b = make_node()
    table = await wait_stable(client, [a, b], PARTITIONS)
    topic = names["topic"]
    (local_key,) = keys_of(a.url, table, 1, "local")
    # '?' and '%41' must survive the proxy hop: the owner stores this exact key.
    remote_key, remote_key2 = keys_of(b.url, table, 2, "re?mo%41te")
    a0, b0 = await scrape(client, a), await scrape(client, b)
    assert val(a0, "kstate_partitions_owned") + val(b0, "kstate_partitions_owned") == 10
    assert val(a0, "kstate_group_members") == 2
    assert val(a0, "kstate_rebalances_total") >= 1
    generation = val(a0, "kstate_group_generation")
    assert generation >= 1
    assert val(a0, "kstate_node_info", url=a.url, topic=topic, group=names["group"]) == 1
    # The node froze what it built at start (tens of thousands of objects: modules,
    # classes, the app): full collector passes skip them (kstate/node.py).
    assert val(a0, "kstate_gc_frozen_objects") > 10_000
    assert ("kstate_gc_collections_total", frozenset({("generation", "2")})) in a0

    for email in (local_key, remote_key):
        r = await client.put(f"{a.base}/users/{quote(email, safe='')}", json={"name": "M"})
        assert r.status_code == 201, r.text
        r = await client.get(f"{a.base}/users/{quote(email, safe='')}")
        assert r.status_code == 200, r.text
        assert r.content == load.user_bytes(email, "M")
    r = await client.get(f"{b.base}/user", params={"email": remote_key})
    assert r.content == load.user_bytes(remote_key, "M")  # stored under the exact key
    a1, b1 = await scrape(client, a), await scrape(client, b)

    def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
        return val(after, name, **labels) - val(before, name, **labels)

    assert delta(a0, a1, "kstate_http_requests_total", route=USERS, method="PUT",
                 status="201") == 2
    assert delta(a0, a1, "kstate_http_requests_total", route=USERS, method="GET",
                 status="200") == 2
    for method in ("PUT", "GET"):
        for kind in ("local", "proxied"):
            assert delta(a0, a1, "kstate_http_request_duration_seconds_count", route=USERS,
                         method=method, kind=kind) == 1, (method, kind)
            assert delta(a0, a1, "kstate_http_request_duration_seconds_bucket", route=USERS,
                         method=method, kind=kind, le="+Inf") == 1
    assert delta(a0, a1, "kstate_proxy_forwarded_total") == 2
    assert delta(b0, b1, "kstate_proxy_forwarded_total") == 0
    # The owner counts the forwarded requests as its own local ones.
    assert delta(b0, b1, "kstate_http_requests_total", route=USERS, method="PUT",
                 status="201") == 1
    assert delta(b0, b1, "kstate_http_request_duration_seconds_count", route=USERS,
                 method="PUT", kind="local") == 1
    assert delta(a0, a1, "kstate_writer_produced_total") == 1
    assert delta(b0, b1, "kstate_writer_produced_total") == 1
    assert delta(a0, a1, "kstate_keys") == 1
    assert delta(b0, b1, "kstate_keys") == 1
    p_local = str(partition_for(local_key.encode(), PARTITIONS))
    assert delta(a0, a1, "kstate_partition_position", partition=p_local) == 1
    assert delta(a0, a1, "kstate_partition_keys", partition=p_local) == 1
    assert val(a1, "kstate_partition_lag", partition=p_local) == 0
    assert val(a1, "kstate_partition_caught_up", partition=p_local) == 1
    assert ("kstate_partition_end_offset", frozenset({("partition", p_local)})) in a1
    assert delta(a0, a1, "kstate_router_events_total", event="local_reads") == 1
    r = await client.get(f"{a.base}/nothing-here")
    assert r.status_code == 404
    a2 = await scrape(client, a)
    assert delta(a1, a2, "kstate_http_requests_total", route="unmatched", method="GET",
                 status="404") == 1

    # A record kstate cannot use in a partition A owns deletes its key and is counted,
    # by reason; a record in a partition other than its key's is ignored and counted.
    p_other = next(str(p) for p in range(PARTITIONS)
                   if table[f"{topic}-{p}"] == a.url and str(p) != p_local)
    settings = Settings(bootstrap=kafka_bootstrap, topic=topic, group=names["group"])
    async with open_tooling(settings.kafka()) as bridge:
        await bridge.produce_many([(int(p_local), local_key.encode(), b"not json"),
                                   (int(p_other), remote_key.encode(),
                                    load.user_bytes(remote_key, "Wrong"))])
    m = await wait_metric(client, a, lambda m: val(m, "kstate_invalid_records") == 1
                          and val(m, "kstate_partition_invalid_records_total",
                                  partition=p_local) == 1
                          and val(m, "kstate_partition_wrong_partition_records_total",
                                  partition=p_other) == 1)
    assert val(m, "kstate_partition_unusable_records_total", partition=p_local,
               reason="value is not JSON") == 1
    assert val(m, "kstate_partition_fenced_records_total", partition=p_local) == 0
    assert ("kstate_partition_expect_failed_records_total",
            frozenset({("partition", p_local)})) in m
    assert val(m, "kstate_partition_halted", partition=p_local) == 0
    assert ("kstate_partition_halted", frozenset({("partition", p_local)})) in m
    assert val(m, "kstate_partitions_halted") == 0
    assert val(m, "kstate_feed_halted_partitions") == 0
    r = await client.get(f"{a.base}/users/{quote(local_key, safe='')}")
    assert r.status_code == 404, r.text  # the unusable record deleted the key

    # A live feed subscriber is counted while connected and sees changes.
    async with open_websocket_url(f"ws://{a.url}/changes") as ws:
        await ws.get_message()  # hello
        await wait_metric(client, a, lambda m: val(m, "kstate_feed_subscribers") == 1)
        published = val(await scrape(client, a), "kstate_feed_published_total")
        r = await client.put(f"{a.base}/users/{quote(local_key, safe='')}", json={"name": "N"})
        assert r.status_code == 201, r.text  # the invalid record deleted the key
        await ws.get_message()
        await wait_metric(client, a, lambda m: val(m, "kstate_feed_published_total")
                          > published and val(m, "kstate_feed_delivered_total") >= 1)
    await wait_metric(client, a, lambda m: val(m, "kstate_feed_subscribers") == 0)

    # The owner dies: A's forward fails (503 + Retry-After) and is counted; once the
    # group notices, A takes every partition, catches up and counts the rebalance.
    before = await scrape(client, a)
    b.kill()
    r = await client.put(f"{a.base}/users/{quote(remote_key2, safe='')}", json={"name": "X"})
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit()
    after = await scrape(client, a)
    assert delta(before, after, "kstate_proxy_failures_total") == 1
    assert delta(before, after, "kstate_http_requests_total", route=USERS, method="PUT",
                 status="503") == 1
    final = await wait_metric(
        client, a, lambda m: val(m, "kstate_partitions_owned") == 10
        and val(m, "kstate_group_members") == 1
        and all(val(m, "kstate_partition_caught_up", partition=str(p)) == 1
                for p in range(PARTITIONS)), seconds=45)
    assert val(final, "kstate_rebalances_total") > val(before, "kstate_rebalances_total")
    assert val(final, "kstate_group_generation") > generation
    p_remote = str(partition_for(remote_key.encode(), PARTITIONS))
    assert ("kstate_partition_catchup_seconds", frozenset({("partition", p_remote)})) in final
    assert val(final, "kstate_partition_position", partition=p_remote) >= 1
    assert val(final, "kstate_keys") >= 2  # both users, now all held by A


async def _raw_answers(port: int, requests: list[bytes]) -> int:
    """Send ``requests`` on one connection and count the status lines answered."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"".join(requests))
        data = b""
        with trio.move_on_after(10):
            while data.count(b"HTTP/1.1 ") < len(requests):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    return data.count(b"HTTP/1.1 ")


async def test_methods_nobody_defined_are_one_label(make_node, client):
    """Any token is a method to HTTP; counting each under its own label would let one
    client grow /metrics (and the node's memory) without bound. On the lean path and
    on a connection handed over to hypercorn alike: a token the lean path's parser
    (llhttp) does not know is refused 400 by both (the guard reads a handed-over head
    with llhttp too), and one it knows that kstate does not serve is counted as
    ``other``."""
    node = make_node()
    await wait_ready(client, node)
    made_up = [f"QZX{i}".encode() for i in range(40)]
    lean = [m + b" /users/a%40example.com HTTP/1.1\r\nHost: x\r\n\r\n" for m in made_up]
    # methods llhttp knows and kstate does not serve: answered 405 by the node
    unserved = (b"PROPFIND", b"MKCOL", b"LOCK", b"PURGE", b"SEARCH")
    known = [m + b" /users/a%40example.com HTTP/1.1\r\nHost: x\r\n\r\n" for m in unserved]
    # each after a GET on its connection: handed over to hypercorn (a refusal closes it)
    handed_over = [[b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                    m + b" /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"]
                   for m in (*made_up, *unserved)]
    answered = 0
    for req in [*lean, *known]:
        answered += await _raw_answers(node.port, [req])
    for pair in handed_over:
        answered += await _raw_answers(node.port, pair)
    assert answered == len(lean) + len(known) + 2 * len(handed_over)
    m = await scrape(client, node)
    methods = {dict(labels)["method"] for name, labels in m
               if name == "kstate_http_requests_total"}
    assert not {x for x in methods if x.startswith("QZX")}, sorted(methods)
    assert "other" in methods
    others = sum(v for (name, labels), v in m.items()
                 if name == "kstate_http_requests_total" and dict(labels)["method"] == "other")
    # the tokens llhttp does not know are refused (400, counted with the front's bad
    # requests) on both paths; the known ones kstate does not serve are "other"
    assert others == 2 * len(unserved)
    assert not methods & {"PROPFIND", "MKCOL", "LOCK", "PURGE", "SEARCH"}
