"""The routing-aware client (kstate/client) keeps knowing the cluster's nodes when every
node answers an incomplete ``/groupinfo`` (all just restarted, none back in the group
yet), over real sockets to fronts the test plays (web/http1): the members of its last
complete table stay among the nodes it asks and falls back to, so the seeds going
away afterwards does not leave it with no node to ask."""

from __future__ import annotations

from functools import partial

import orjson
import pytest
import trio

from kstate.client import KstateClient, KstateError
from kstate.core.partitioner import partition_for
from kstate.core.wire import GENERATION_HEADER, PARTITIONS_HEADER
from web.http1 import Front, Request, Response, serve_front

USER = {"name": "N", "email": "a@b.c"}


class Cluster:
    """Fronts that answer the same ``/groupinfo``: ``owners`` (partition -> url) of
    ``partitions`` (0..n-1; an incomplete table when some are missing) and 200 to every
    user GET."""

    def __init__(self) -> None:
        self.owners: dict[int, str] = {}
        self.generation = 1
        self.gets: dict[str, int] = {}
        self.stated: bytes | None = None  # the kstate-partitions header; None: not sent

    def handler(self, name: str):  # type: ignore[no-untyped-def]
        async def handle(req: Request) -> Response:
            if req.path == b"/groupinfo":
                doc = {f"t-{p}": url for p, url in sorted(self.owners.items())}
                head = [(b"content-type", b"application/json"),
                        (GENERATION_HEADER.encode(), str(self.generation).encode())]
                if self.stated is not None:
                    head.append((PARTITIONS_HEADER.encode(), self.stated))
                return Response(200, head, orjson.dumps(doc))
            self.gets[name] = self.gets.get(name, 0) + 1
            return Response(200, [(b"content-type", b"application/json")],
                            orjson.dumps(USER))
        return handle


async def test_an_incomplete_table_from_every_node_does_not_forget_the_members():
    cluster = Cluster()
    async with trio.open_nursery() as nursery:
        seed_scope = trio.CancelScope()
        stop = trio.Event()

        async def serve_seed(task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
            with seed_scope:
                await serve_front(Front(handle=cluster.handler("seed")), "127.0.0.1:0",
                                  shutdown_trigger=trio.sleep_forever,
                                  task_status=task_status)

        seed = await nursery.start(serve_seed)
        other = await nursery.start(partial(serve_front, Front(handle=cluster.handler("other")),
                                            "127.0.0.1:0", shutdown_trigger=stop.wait))
        cluster.owners = {p: (seed if p < 5 else other) for p in range(10)}
        async with KstateClient([seed], retries=3, max_retry_after=0.01) as kc:
            table = kc.table()
            assert table is not None
            assert table.members == sorted([seed, other])
            # Both restart: each answers a table without the other (here: none at all).
            cluster.owners, cluster.generation = {}, 2
            table = await kc.refresh()
            assert table.partitions == 0
            # Then the seed goes for good; the other node is back in the group, alone.
            seed_scope.cancel()
            cluster.owners, cluster.generation = {p: other for p in range(10)}, 3
            with trio.fail_after(30):
                for _ in range(5):
                    assert await kc.get("a@b.c") == USER
                # The GETs went to a node picked at random (the table is incomplete), so
                # whether one of them met the dead seed (and refreshed the table) is
                # chance; a refresh asks the nodes it still knows, the other among them.
                table = await kc.refresh()
            assert table.members == [other]
        stop.set()
    assert cluster.gets.get("other", 0) >= 5


async def test_a_table_without_its_last_partitions_is_not_routed_by():
    """From a node that does not state the partition count (``kstate-partitions``, which
    nodes older than it do not send): a table whose last partitions
    have no owner (their owner's url is one no peer can dial, so the nodes list none)
    covers 0..7 of 10 like a complete table of 8. Hashing by 8 would send most keys
    "straight to the owner" of another partition. The client takes it as incomplete
    (a topic's partitions never go away) and sends every request to any node, which
    forwards it; the table's own partitions are not guessed."""
    cluster = Cluster()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        a = await nursery.start(partial(serve_front, Front(handle=cluster.handler("a")),
                                        "127.0.0.1:0", shutdown_trigger=stop.wait))
        b = await nursery.start(partial(serve_front, Front(handle=cluster.handler("b")),
                                        "127.0.0.1:0", shutdown_trigger=stop.wait))
        cluster.owners = {p: (a if p % 2 else b) for p in range(10)}
        async with KstateClient([a], retries=0) as kc:
            table = kc.table()
            assert table is not None
            assert table.partitions == 10
            cluster.owners, cluster.generation = {p: cluster.owners[p] for p in range(8)}, 2
            table = await kc.refresh()
            assert table.generation == 2
            assert table.partitions == 0
            keys = [f"u{i}@x.y" for i in range(20)]
            assert all(table.owner(k.encode()) is None for k in keys)
            before = kc.statistics()
            for key in keys:
                assert await kc.get(key) == USER
            after = kc.statistics()
            # A complete table again: routed by it at once.
            cluster.owners, cluster.generation = {p: a for p in range(10)}, 3
            table = await kc.refresh()
            assert (table.partitions, table.owner(b"u1@x.y")) == (10, a)
        stop.set()
    assert (after.direct - before.direct, after.fallbacks - before.fallbacks) == (0, 20)


async def test_a_first_table_without_its_last_partitions_is_known_by_the_stated_count():
    """A client whose very first table lacks the last partitions has no earlier count to
    hold it against; the count the node states with the table (``kstate-partitions``)
    tells it. Such a table is not routed by: every key goes to any node, which forwards.
    A count that is not one makes that node's answer unusable, as any bad answer."""
    cluster = Cluster()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        a = await nursery.start(partial(serve_front, Front(handle=cluster.handler("a")),
                                        "127.0.0.1:0", shutdown_trigger=stop.wait))
        cluster.owners, cluster.stated = {p: a for p in range(8)}, b"10"
        async with KstateClient([a], retries=0) as kc:
            table = kc.table()
            assert table is not None
            assert (table.partitions, len(table.owners)) == (0, 8)
            keys = [f"u{i}@x.y" for i in range(20)]
            for key in keys:
                assert await kc.get(key) == USER
            assert (kc.statistics().direct, kc.statistics().fallbacks) == (0, 20)
            cluster.owners, cluster.generation = {p: a for p in range(10)}, 2
            assert (await kc.refresh()).partitions == 10
            cluster.generation = 3
            for bad in (b"ten", b"0", b"-3", b"\xd9\xa3"):
                cluster.stated = bad
                with pytest.raises(KstateError) as info:
                    await kc.refresh()
                assert "kstate-partitions" in str(info.value)
        stop.set()


@pytest.mark.parametrize("bad", ["10.0.0.1:99999", "a b:80", "host:8o", "no-port",
                                 "a..b:80"])
async def test_an_owner_no_node_could_dial_is_no_owner(bad: str):
    """A ``/groupinfo`` entry whose url is no ``host:port`` a node could dial (a node
    of another version, a proxy's answer): the nodes' own rule (they list no owner for
    it) makes its partition one without an owner, the table incomplete, and its keys
    go to any node; not a ValueError out of every request for those keys."""
    cluster = Cluster()
    stop = trio.Event()
    pid = partition_for(b"b@b.c", 10)
    assert pid < 9  # not the last: a first table without its last looks complete
    async with trio.open_nursery() as nursery:
        a = await nursery.start(partial(serve_front, Front(handle=cluster.handler("a")),
                                        "127.0.0.1:0", shutdown_trigger=stop.wait))
        cluster.owners = {p: (bad if p == pid else a) for p in range(10)}
        async with KstateClient([a], retries=0) as kc:
            table = kc.table()
            assert table is not None
            assert (table.partitions, table.members) == (0, [a])
            assert await kc.get("b@b.c") == USER
        stop.set()
    assert cluster.gets == {"a": 1}


@pytest.mark.parametrize("seed", ["127.0.0.1:99999", "127.0.0.1:x", "[::1]:8o",
                                  "http://127.0.0.1:70000"])
def test_a_seed_that_is_not_host_port_is_refused_at_once(seed: str):
    with pytest.raises(ValueError, match="seed"):
        KstateClient([seed])
