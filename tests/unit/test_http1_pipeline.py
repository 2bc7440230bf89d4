"""web/http1/pipeline.py against real loopback servers: GETs share one link and go out
together, each gets its own answer in order; a GET stuck behind a slow one goes
around through the pool; a link that fails, answers what nobody asked or stays
silent is dropped and its GETs are still answered (or NoAnswer at the deadline); a
caller that gives up never shifts the answers of the others; an idle link is renewed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from tests.support.http1 import Store, raw_server
from web.http1 import Front, InvalidRequest, NoAnswer, Pool, serve_front
from web.http1.pipeline import Pipeline


@asynccontextmanager
async def pipeline_to(addr: str, **options: float) -> AsyncIterator[Pipeline]:
    pool = Pool(timeout=5)
    pipe = Pipeline(pool, **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pipe.run)
        yield pipe
        nursery.cancel_scope.cancel()
    await pool.aclose()


async def counted(pipe: Pipeline, name: str, at_least: int) -> None:
    """Wait (5 s at most) until the pipeline's counter ``name`` reaches ``at_least``:
    links open and end in their own tasks."""
    with trio.fail_after(5):
        while getattr(pipe.statistics(), name) < at_least:
            await trio.sleep(0.01)


async def linked(pipe: Pipeline, addr: str, path: bytes = b"/users/k") -> None:
    """One GET (through the pool: it opens the link), then wait until the link is up."""
    await pipe.get(addr, path, deadline_after=5)
    await counted(pipe, "opened", 1)


@asynccontextmanager
async def front_with(store: Store) -> AsyncIterator[str]:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(partial(serve_front, Front(handle=store.handle),
                                           "127.0.0.1:0", shutdown_trigger=stop.wait))
        yield addr
        stop.set()


def answer_for(head: bytes) -> bytes:
    """An answer whose body is the request's path."""
    path = head.split(b" ")[1]
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path)


async def heads(stream: trio.SocketStream, buf: list[bytes]) -> list[bytes] | None:
    """The request heads one read brought (None at EOF); a partial one stays in buf."""
    chunk = await stream.receive_some(65536)
    if not chunk:
        return None
    data = buf[0] + chunk
    *done, buf[0] = data.split(b"\r\n\r\n")
    return done


class SilentLink:
    """A raw server's handler that answers every connection's requests but the second
    one's: the link (the first GET takes the pool and opens the link)."""

    def __init__(self) -> None:
        self.connections = 0

    async def __call__(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        mine = self.connections
        buf = [b""]
        while (got := await heads(stream, buf)) is not None:
            if mine != 2:
                await stream.send_all(b"".join(answer_for(h) for h in got))


async def gather_gets(pipe: Pipeline, addr: str, paths: list[bytes]) -> dict[bytes, bytes]:
    got: dict[bytes, bytes] = {}

    async def one(path: bytes) -> None:
        got[path] = (await pipe.get(addr, path, deadline_after=5)).body

    async with trio.open_nursery() as nursery:
        for path in paths:
            nursery.start_soon(one, path)
    return got


async def test_gets_go_out_together_on_one_link_and_each_gets_its_own_answer():
    per_read: list[int] = []
    connections = 0

    async def answer_each(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        buf = [b""]
        while (got := await heads(stream, buf)) is not None:
            per_read.append(len(got))
            await trio.sleep(0.01)  # so that the next GETs pile up on the link
            await stream.send_all(b"".join(answer_for(h) for h in got))

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, answer_each)
        async with pipeline_to(addr) as pipe:
            await linked(pipe, addr, b"/first")
            paths = [b"/users/%d" % i for i in range(20)]
            got = await gather_gets(pipe, addr, paths)
            assert got == {p: p for p in paths}  # each its own answer, none shifted
            stats = pipe.statistics()
            assert (stats.opened, stats.pipelined, stats.went_around) == (1, 20, 0)
        assert connections == 2  # the first GET's (through the pool) and the link
        assert max(per_read) > 1  # requests came in one read: pipelined
        nursery.cancel_scope.cancel()


async def test_against_the_lean_front_answers_stay_in_order():
    store = Store()
    for i in range(30):
        store.data[b"k%d" % i] = b'{"v":%d}' % i
    async with front_with(store) as addr, pipeline_to(addr) as pipe:
        await linked(pipe, addr, b"/users/k0")
        for _ in range(3):
            got = await gather_gets(pipe, addr, [b"/users/k%d" % i for i in range(30)])
            assert got == {b"/users/k%d" % i: b'{"v":%d}' % i for i in range(30)}
        assert pipe.statistics().pipelined == 90


async def test_a_get_behind_a_slow_one_goes_around_it():
    store = Store(delay=1.5)
    store.data[b"slow"] = b"S"
    store.data[b"fast"] = b"F"
    done: list[bytes] = []
    async with front_with(store) as addr, pipeline_to(addr, stall_after=0.1) as pipe:
        await linked(pipe, addr, b"/users/fast")

        async def get(path: bytes) -> None:
            done.append((await pipe.get(addr, path, deadline_after=10)).body)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, b"/users/slow")  # the oldest on the link
            await trio.sleep(0.05)
            for _ in range(3):  # on the link behind it, then around it
                nursery.start_soon(get, b"/users/fast")
        assert done == [b"F", b"F", b"F", b"S"]  # the fast ones did not wait for it
        stats = pipe.statistics()
        assert stats.went_around == 3
        assert stats.pipelined == 1  # the slow one, answered on the link
        # The link is fine afterwards: the answers the fast ones left were dropped.
        await trio.sleep(0.2)  # (they came right after the slow one's)
        assert (await pipe.get(addr, b"/users/fast", deadline_after=5)).body == b"F"
        assert pipe.statistics().pipelined == 2


async def test_a_new_get_does_not_join_a_stalled_link():
    store = Store(delay=1.0)
    store.data[b"slow"] = b"S"
    store.data[b"fast"] = b"F"
    async with front_with(store) as addr, pipeline_to(addr, stall_after=0.1) as pipe:
        await linked(pipe, addr, b"/users/fast")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(pipe.get, addr, b"/users/slow", deadline_after=5))
            await trio.sleep(0.3)  # the link's oldest GET has waited past stall_after
            assert (await pipe.get(addr, b"/users/fast", deadline_after=5)).body == b"F"
            assert pipe.statistics().went_around == 0  # it never joined: the pool
            assert len(store.seen) == 3  # no GET was sent twice


@pytest.mark.parametrize("fault", ["close", "malformed", "unasked"])
async def test_a_link_that_fails_is_dropped_and_its_gets_are_still_answered(fault):
    """The link (the second connection) is closed on the GETs, answers garbage, or
    sends an answer nobody asked for (after the last GET's)."""
    conn_no = 0
    last = b"/users/4"

    async def faulty_second_connection(stream: trio.SocketStream) -> None:
        nonlocal conn_no
        conn_no += 1
        mine = conn_no
        buf = [b""]
        while (got := await heads(stream, buf)) is not None:
            out = b"".join(answer_for(h) for h in got)
            if mine == 2 and got:
                if fault == "close":
                    await stream.aclose()
                    return
                if fault == "malformed":
                    out = b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"
                elif any(h.split(b" ")[1] == last for h in got):
                    out += answer_for(b"GET /extra HTTP/1.1")
            await stream.send_all(out)

    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, faulty_second_connection)
        async with pipeline_to(addr) as pipe:
            await linked(pipe, addr, b"/first")
            paths = [b"/users/%d" % i for i in range(5)]
            assert last in paths
            got = await gather_gets(pipe, addr, paths)
            assert got == {p: p for p in paths}
            if fault != "unasked":
                assert pipe.statistics().went_around >= 1
            if fault != "close":  # a peer's close is no failure: its idle timer, say
                await counted(pipe, "failed", 1)
            # the next GETs go through the pool, then on a new link
            assert (await pipe.get(addr, b"/next", deadline_after=5)).body == b"/next"
        nursery.cancel_scope.cancel()


async def test_the_oldest_get_is_no_answer_at_its_deadline_and_the_link_is_dropped():
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, SilentLink())
        async with pipeline_to(addr, stall_after=5.0) as pipe:
            await linked(pipe, addr, b"/first")
            with trio.fail_after(5), pytest.raises(NoAnswer):
                await pipe.get(addr, b"/users/x", deadline_after=0.5)
            await counted(pipe, "failed", 1)
            # the next GET goes through the pool (and opens a new link)
            assert (await pipe.get(addr, b"/users/y", deadline_after=2)).body == b"/users/y"
        nursery.cancel_scope.cancel()


async def test_a_get_behind_the_oldest_is_no_answer_at_its_own_deadline():
    ended: dict[bytes, float] = {}
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, SilentLink())
        async with pipeline_to(addr, stall_after=10.0) as pipe:
            await linked(pipe, addr, b"/first")

            async def get(path: bytes, deadline: float) -> None:
                with pytest.raises(NoAnswer):
                    await pipe.get(addr, path, deadline_after=deadline)
                ended[path] = trio.current_time()

            start = trio.current_time()
            with trio.fail_after(5):
                async with trio.open_nursery() as gets:
                    gets.start_soon(get, b"/oldest", 2.0)
                    await trio.sleep(0.05)
                    gets.start_soon(get, b"/behind", 0.3)
            # /behind ended at its own deadline, not held until the oldest's (2 s)
            assert ended[b"/behind"] - start < 1.5
            assert ended[b"/oldest"] - start >= 2.0
        nursery.cancel_scope.cancel()


async def test_a_caller_that_gives_up_does_not_shift_the_answers():
    store = Store(delay=0.4)
    store.data[b"slow"] = b"S"
    store.data[b"b"] = b"B"
    async with front_with(store) as addr, pipeline_to(addr, stall_after=10.0) as pipe:
        await linked(pipe, addr, b"/users/b")
        async with trio.open_nursery() as nursery:

            async def impatient() -> None:
                with trio.move_on_after(0.1):
                    await pipe.get(addr, b"/users/slow", deadline_after=5)

            nursery.start_soon(impatient)
            await trio.sleep(0.2)  # it gave up; its answer is still to come on the link
            answer = await pipe.get(addr, b"/users/b", deadline_after=5)
            assert answer.body == b"B"  # not the slow one's "S"
        assert pipe.statistics().pipelined == 1


async def test_an_idle_link_is_renewed_before_use():
    store = Store()
    store.data[b"k"] = b"K"
    async with front_with(store) as addr, pipeline_to(addr, max_idle_age=0.2) as pipe:
        await linked(pipe, addr)
        assert (await pipe.get(addr, b"/users/k", deadline_after=5)).body == b"K"
        await trio.sleep(0.3)
        assert (await pipe.get(addr, b"/users/k", deadline_after=5)).body == b"K"
        await counted(pipe, "opened", 2)
        assert pipe.statistics().failed == 0  # an idle close is no failure


async def test_without_run_every_get_takes_the_pool():
    store = Store()
    store.data[b"k"] = b"K"
    async with front_with(store) as addr:
        pool = Pool(timeout=5)
        pipe = Pipeline(pool)
        for _ in range(3):
            assert (await pipe.get(addr, b"/users/k", deadline_after=5)).body == b"K"
        assert pipe.statistics().opened == 0
        assert pool.statistics().reused == 2
        await pool.aclose()


async def test_a_target_that_is_not_ascii_is_refused_before_anything_is_sent():
    async with trio.open_nursery() as nursery:
        addr = await raw_server(nursery, SilentLink())
        host, _, port = addr.rpartition(":")
        # full-width digits: int() reads them, so such a target can even connect
        odd = f"{host}:{port.translate({ord(d): 0xFF10 + int(d) for d in '0123456789'})}"
        async with pipeline_to(addr) as pipe:
            for _ in range(3):
                with pytest.raises(InvalidRequest):
                    await pipe.get(odd, b"/users/k", deadline_after=2)
                await trio.sleep(0.2)  # time for a link to connect, were one opened
            assert pipe.statistics().opened == 0
        nursery.cancel_scope.cancel()
