"""Issue 8: the routing-aware Python client (kstate/client.py) against real nodes.

It hashes each key itself and sends the request straight to the owner the routing
table names, so no node proxies: each node's router counters (/readyz "router") show
``forwards`` unchanged while ``local_reads`` grows by exactly the client's GETs (a
control request through the wrong node shows that the counter does count). It keeps
answering correctly while a node stops and its partitions move: it refreshes its
table, no 404 for an existing key, no wrong value, no error after its retries.
"""

from __future__ import annotations

import random
import signal
import time

import httpx
import pytest
import trio

from kstate.client import KstateClient, KstateError, PreconditionFailed, Table, user_path
from kstate.client._http import Answer, Http
from tools.procs import Node, wait_ready, wait_stable

PARTITIONS = 10


async def counters(client: httpx.AsyncClient, nodes: list[Node]) -> dict[str, dict[str, int]]:
    """Each node's router counters (answered with 200 or 503 alike)."""
    out = {}
    for n in nodes:
        r = await client.get(f"{n.base}/readyz")
        out[n.url] = {k: int(v) for k, v in r.json()["router"].items()}
    return out


def delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], name: str
          ) -> dict[str, int]:
    return {url: after[url][name] - before[url][name] for url in after}


def owner_of(table: Table, email: str) -> str:
    owner = table.owner(email.encode())
    assert owner is not None, (email, table)
    return owner


async def cluster(make_node, client, count: int) -> tuple[list[Node], dict[str, str]]:
    nodes = [make_node() for _ in range(count)]
    for n in nodes:
        await wait_ready(client, n)
    return nodes, await wait_stable(client, nodes, PARTITIONS)


async def test_every_request_goes_straight_to_the_owner(make_node, client):
    nodes, groupinfo = await cluster(make_node, client, 2)
    a, b = nodes
    emails = [f"direct{i}@client.example" for i in range(60)]
    async with KstateClient([a.base]) as kc:  # one seed: B is learned from the table
        table = kc.table()
        assert table is not None
        assert table.partitions == PARTITIONS
        assert {f"{table.topic}-{p}": url for p, url in table.owners.items()} == groupinfo
        # Each node states the topic's partition count with its table, so that a client
        # can tell a table without its last partitions from a complete one.
        for n in nodes:
            r = await client.get(f"{n.base}/groupinfo")
            assert r.headers["kstate-partitions"] == str(PARTITIONS)
        owners = {e: owner_of(table, e) for e in emails}
        assert set(owners.values()) == {a.url, b.url}  # both nodes own some of the keys

        before = await counters(client, nodes)
        for e in emails:
            await kc.put(e, f"name of {e}")
        for e in emails:
            assert await kc.get(e) == {"name": f"name of {e}", "email": e}
        after = await counters(client, nodes)
        stats = kc.statistics()

    assert delta(after, before, "forwards") == {a.url: 0, b.url: 0}
    per_node = {n.url: sum(1 for e in emails if owners[e] == n.url) for n in nodes}
    assert delta(after, before, "local_reads") == per_node
    assert delta(after, before, "writes") == per_node
    assert stats.requests == stats.attempts == stats.direct == stats.direct_hits == 120
    assert (stats.retries, stats.fallbacks, stats.refused, stats.transport_errors) == (
        0, 0, 0, 0)

    # Control: the same GET sent to the node that does not own the key is forwarded,
    # and the counter says so, once (the assertions above would have seen a proxy hop).
    e = emails[0]
    other = b if owners[e] == a.url else a
    before = await counters(client, nodes)
    r = await client.get(f"{other.base}{user_path(e)}")
    assert r.status_code == 200
    after = await counters(client, nodes)
    forwards = delta(after, before, "forwards")
    assert forwards[other.url] == 1, forwards
    assert forwards[owners[e]] == 0, forwards


async def test_round_trips_versions_and_errors(make_node, client):
    nodes, _ = await cluster(make_node, client, 2)
    odd = ["o'k+tag%41?x#y&z=1@client.example", "sl/ash@client.example",
           "ünï@例え.jp", "  padded@client.example  "]
    async with KstateClient([n.base for n in nodes]) as kc:
        assert await kc.get("never-written@client.example") is None  # 404 -> None

        etag = await kc.put("ada@client.example", "Ada")
        got = await kc.get_versioned("ada@client.example")
        assert got is not None
        assert got.value == {"name": "Ada", "email": "ada@client.example"}
        assert got.etag == etag != ""

        etag2 = await kc.put("ada@client.example", "Ada L.", if_match=etag)
        assert etag2 != etag
        assert await kc.get("ada@client.example") == {"name": "Ada L.",
                                                      "email": "ada@client.example"}
        with pytest.raises(PreconditionFailed) as stale_put:
            await kc.put("ada@client.example", "Mallory", if_match=etag)  # stale version
        assert (stale_put.value.status, stale_put.value.code) == (412, "precondition_failed")
        with pytest.raises(PreconditionFailed) as stale_delete:
            await kc.delete("ada@client.example", if_match=etag)
        assert stale_delete.value.status == 412
        assert await kc.get("ada@client.example") == {"name": "Ada L.",
                                                      "email": "ada@client.example"}
        await kc.delete("ada@client.example", if_match=etag2)
        assert await kc.get("ada@client.example") is None
        await kc.delete("ada@client.example")  # idempotent
        with pytest.raises(PreconditionFailed) as missing:
            await kc.put("new@client.example", "New", if_match=etag2)  # no such key
        assert missing.value.status == 412

        # Emails that need percent-encoding, and one with spaces the server trims: the
        # client hashes exactly the key the server stores, and the path carries it.
        before = await counters(client, nodes)
        for e in odd:
            await kc.put(e, f"odd {e.strip()}")
        for e in odd:
            assert await kc.get(e) == {"name": f"odd {e.strip()}", "email": e.strip()}
            r = await client.get(f"{nodes[0].base}{user_path(e.strip())}")
            assert r.json() == {"name": f"odd {e.strip()}", "email": e.strip()}
        after = await counters(client, nodes)
        # The client's own requests were all direct; only the plain GETs through
        # nodes[0] for keys it does not own were forwarded (by nodes[0] alone).
        table = kc.table()
        assert table is not None
        owned_elsewhere = [e for e in odd if owner_of(table, e.strip()) != nodes[0].url]
        forwards = delta(after, before, "forwards")
        assert forwards[nodes[1].url] == 0, forwards
        assert (forwards[nodes[0].url] > 0) == bool(owned_elsewhere), forwards
        assert kc.statistics().direct_hits == kc.statistics().requests


async def test_keeps_answering_while_a_stopped_nodes_partitions_move(make_node, client,
                                                                       capsys):
    nodes, _ = await cluster(make_node, client, 3)
    victim, survivors = nodes[2], nodes[:2]
    emails = [f"move{i}@client.example" for i in range(150)]
    expected = {e: {"name": f"n{i}", "email": e} for i, e in enumerate(emails)}
    answers: dict[str, int] = {"ok": 0, "none": 0, "wrong": 0, "error": 0}
    problems: list[str] = []
    # The only seed is the node that will stop: the others are known from its table.
    async with KstateClient([victim.base], retries=10, max_table_age=1.0) as kc:
        for e, v in expected.items():
            await kc.put(e, v["name"])
        first = kc.table()
        assert first is not None
        assert victim.url in first.members
        moved = [e for e in emails if owner_of(first, e) == victim.url]
        assert moved  # the victim owns some of the keys

        async def reader(seed: int, stop: trio.Event) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                e = rng.choice(emails)
                try:
                    got = await kc.get(e)
                except Exception as exc:  # counted: the client must not give up
                    answers["error"] += 1
                    problems.append(f"{e}: {exc!r}")
                    continue
                if got is None:
                    answers["none"] += 1
                    problems.append(f"{e}: None (404)")
                elif got != expected[e]:
                    answers["wrong"] += 1
                    problems.append(f"{e}: {got}")
                else:
                    answers["ok"] += 1

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(reader, i, stop)
            await trio.sleep(1.0)
            t0 = time.monotonic()
            victim.signal(signal.SIGTERM)
            assert await victim.wait_exit(20) == 0, victim.log_text()[-3000:]
            await wait_stable(client, survivors, PARTITIONS)
            settled = time.monotonic() - t0
            await trio.sleep(1.5)  # longer than max_table_age: the client has caught up
            stop.set()
        during = kc.statistics()

        # Every moved key answers through its new owner, directly: no proxy hop.
        table = kc.table()
        assert table is not None
        assert victim.url not in table.members
        before = await counters(client, survivors)
        for e in emails:
            assert await kc.get(e) == expected[e], e
        after = await counters(client, survivors)

    show = (f"SIGTERM with the client reading: settled after {settled:.2f}s; answers "
            f"{answers}; client {during}")
    with capsys.disabled():
        print(f"\n{show}")
    assert answers["none"] == answers["wrong"] == answers["error"] == 0, (show, problems[:20])
    assert answers["ok"] > 0
    assert during.table_changes >= 2  # the first table, then the one without the victim
    assert during.retries > 0  # the victim refused or vanished at least once
    assert delta(after, before, "forwards") == {n.url: 0 for n in survivors}
    assert sum(delta(after, before, "local_reads").values()) == len(emails)


async def test_a_stalled_node_does_not_hold_up_the_routing_table(make_node, client):
    """A node that takes connections and answers nothing (SIGSTOP: a stuck process,
    a paused VM) must not hold up requests for the other nodes' keys. The client asks
    ``/groupinfo`` of the known nodes in random order when its table ages; a node that
    does not answer is given ``refresh_timeout`` (a /groupinfo answer is made from
    memory), not the request ``timeout`` meant for a write, then the next node is asked.
    Twelve refreshes: each asks the stalled node first half the time."""
    nodes = [make_node(KSTATE_SESSION_TIMEOUT_MS="45000") for _ in range(2)]
    for n in nodes:
        await wait_ready(client, n)
    await wait_stable(client, nodes, PARTITIONS)
    a, b = nodes
    async with KstateClient([a.base, b.base], timeout=120, max_table_age=0.05) as kc:
        table = kc.table()
        assert table is not None
        key = next(e for e in (f"stall{i}@client.example" for i in range(100))
                   if owner_of(table, e) == a.url)
        await kc.put(key, "on A")
        before = kc.statistics()
        b.signal(signal.SIGSTOP)
        try:
            # Far below the request timeout, far above what twelve refreshes take when
            # each waits at most refresh_timeout for the stalled node.
            with trio.fail_after(60):
                for _ in range(12):
                    await trio.sleep(0.1)  # older than max_table_age: the GET refreshes
                    assert await kc.get(key) == {"name": "on A", "email": key}
        finally:
            b.signal(signal.SIGCONT)
        after = kc.statistics()
    assert after.refreshes - before.refreshes >= 12


async def test_a_stalled_node_cannot_take_the_connections_of_the_others(make_node, client):
    """Requests to a node that stopped answering (SIGSTOP) hold their connections
    until the request timeout. They must not hold the connections to the other nodes:
    ``max_connections`` bounds each node's pool, so a request for a live node's key is
    answered at once by its owner while the stalled node has every connection it may
    have. (With one pool for all nodes it waited for a free connection until the pool
    timeout, then counted the live owner as down.)"""
    nodes = [make_node(KSTATE_SESSION_TIMEOUT_MS="45000") for _ in range(2)]
    for n in nodes:
        await wait_ready(client, n)
    await wait_stable(client, nodes, PARTITIONS)
    a, b = nodes
    emails = [f"pool{i}@client.example" for i in range(100)]
    async with KstateClient([a.base, b.base], timeout=120, max_connections=2) as kc:
        table = kc.table()
        assert table is not None
        on_a = next(e for e in emails if owner_of(table, e) == a.url)
        on_b = [e for e in emails if owner_of(table, e) == b.url][:2]
        for e in [on_a, *on_b]:
            await kc.put(e, f"name of {e}")
        b.signal(signal.SIGSTOP)
        try:
            async with trio.open_nursery() as nursery:
                for e in on_b:  # each holds one of B's connections until B answers
                    nursery.start_soon(kc.get, e)
                await trio.sleep(1.0)
                before = kc.statistics()
                # Far below the request timeout the B requests wait out.
                with trio.fail_after(30):
                    got = await kc.get(on_a)
                after = kc.statistics()
                nursery.cancel_scope.cancel()
        finally:
            b.signal(signal.SIGCONT)
    assert got == {"name": f"name of {on_a}", "email": on_a}
    assert after.direct_hits - before.direct_hits == 1
    assert after.transport_errors == before.transport_errors


async def test_requests_stay_on_the_lean_front_after_table_refreshes(make_node, client,
                                                                      monkeypatch):
    """A node answers ``/groupinfo`` through hypercorn, and a connection it handed to
    hypercorn stays there: every later request on it, user routes too, takes that
    slower path (its answers carry ``server: hypercorn-h11``; the lean front sends no
    ``server`` header). The client's refreshes must not hand its pooled connections
    over one by one: here every user request, between and after refreshes, is answered
    by the lean front."""
    nodes, _ = await cluster(make_node, client, 2)
    answers: list[tuple[bytes, dict[str, str]]] = []
    real = Http.request

    async def spy(self: Http, method: bytes, node: str, target: bytes,
                  *args: object) -> Answer:
        got = await real(self, method, node, target, *args)  # type: ignore[arg-type]
        answers.append((target, got.headers))
        return got

    monkeypatch.setattr(Http, "request", spy)
    emails = [f"lean{i}@client.example" for i in range(20)]
    async with KstateClient([n.base for n in nodes], max_table_age=0.05) as kc:
        for e in emails:
            await kc.put(e, f"name of {e}")
        for _ in range(3):
            await trio.sleep(0.1)  # older than max_table_age: the next request refreshes
            for e in emails:
                assert await kc.get(e) == {"name": f"name of {e}", "email": e}
        refreshes = kc.statistics().refreshes
    assert refreshes >= 4
    groupinfo = [h for t, h in answers if t == b"/groupinfo"]
    assert groupinfo
    assert all(h.get("server") == "hypercorn-h11" for h in groupinfo)
    users = [h for t, h in answers if t.startswith(b"/users/")]
    assert len(users) == 4 * len(emails)
    assert [h.get("server") for h in users] == [None] * len(users)


async def test_writes_to_nodes_with_an_api_token(make_node, client):
    """Nodes with ``KSTATE_API_TOKEN`` refuse every write without it (401): the client
    sends its ``token`` on each write, straight to the owner or through another node
    (which forwards it signed), and reads stay open. Without the token, the node's 401
    is what the client raises."""
    token = "tok-client-" + "0123456789abcdef"
    nodes = [make_node(KSTATE_API_TOKEN=token) for _ in range(2)]
    for n in nodes:
        await wait_ready(client, n)
    await wait_stable(client, nodes, PARTITIONS)
    emails = [f"token{i}@client.example" for i in range(20)]
    async with KstateClient([nodes[0].base], token=token) as kc:
        table = kc.table()
        assert table is not None
        owners = {e: owner_of(table, e) for e in emails}
        assert set(owners.values()) == {n.url for n in nodes}
        tags = {e: await kc.put(e, f"name of {e}") for e in emails}
        for e in emails:
            assert await kc.get(e) == {"name": f"name of {e}", "email": e}
        e = emails[0]
        tags[e] = await kc.put(e, "again", if_match=tags[e])
        assert kc.statistics().direct == kc.statistics().attempts  # all to the owners
        # Through the other node: its owner counted down, the write goes to the other,
        # which forwards it (signed: the token itself never travels between nodes).
        gone = next(x for x in emails[1:] if owners[x] == owners[e])
        before = await counters(client, nodes)
        kc._down[owners[e]] = time.monotonic() + 60
        await kc.put(e, "forwarded", if_match=tags[e])
        await kc.delete(gone)
        kc._down.clear()
        after = await counters(client, nodes)
        assert sum(delta(after, before, "forwards").values()) == 2
        assert await kc.get(e) == {"name": "forwarded", "email": e}
        assert await kc.get(gone) is None
    async with KstateClient([nodes[0].base]) as anonymous:
        assert await anonymous.get(e) == {"name": "forwarded", "email": e}
        with pytest.raises(KstateError) as info:
            await anonymous.put(e, "anonymous")
    assert (info.value.status, info.value.code) == (401, "unauthorized")


@pytest.mark.parametrize("advertise", ["::1:{port}", "[::1]:{port}"])
async def test_a_node_that_advertises_an_ipv6_address(make_node, client, advertise):
    """A node may advertise an IPv6 address with or without brackets (the nodes'
    url rule, kstate/core/assignment.py: peers dial either): the client sends the
    requests of its keys straight to it too, rather than failing every one of them
    on a url it cannot parse."""
    node = make_node(start=False)
    node.extra.update(KSTATE_LISTEN=f"[::]:{node.port}",
                      KSTATE_ADVERTISE=advertise.format(port=node.port))
    node.start()
    await wait_ready(client, node)
    async with KstateClient([node.base]) as kc:
        table = kc.table()
        assert table is not None
        assert table.members == [advertise.format(port=node.port)]
        with trio.fail_after(30):
            etag = await kc.put("six@client.example", "Six")
            assert await kc.get("six@client.example") == {"name": "Six",
                                                          "email": "six@client.example"}
            await kc.delete("six@client.example", if_match=etag)
            assert await kc.get("six@client.example") is None
        stats = kc.statistics()
    assert stats.direct_hits == stats.requests == 4
