"""tools/netcut.py alone, over real loopback sockets: an echo server behind the proxy.
While cut nothing arrives; bytes sent during the cut arrive after the heal, in order;
connections made during a cut are accepted and served after the heal; the program's
control socket answers one line per command."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import trio

from tools.netcut import Netcut, control_answer, open_netcut
from tools.procs import REPO

QUIET = 0.5  # seconds of silence that stand for "nothing arrives"


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


@pytest.fixture
async def proxy(nursery: trio.Nursery) -> AsyncIterator[Netcut]:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, _echo, 0,
                                                      host="127.0.0.1"))
    echo_port = listeners[0].socket.getsockname()[1]
    async with open_netcut([(0, echo_port)]) as cut:
        yield cut


async def _connect(cut: Netcut) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", cut.routes[0][0])


async def _receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    got = b""
    while len(got) < n:
        data = await stream.receive_some(n - len(got))
        assert data, "closed early"
        got += data
    return got


async def _silent(stream: trio.SocketStream, seconds: float = QUIET) -> bool:
    with trio.move_on_after(seconds):
        await stream.receive_some(1)
        return False
    return True


async def test_forwards_both_ways(proxy: Netcut) -> None:
    async with await _connect(proxy) as s:
        await s.send_all(b"hello")
        assert await _receive_exactly(s, 5) == b"hello"
    stats = proxy.statistics()
    assert (stats.bytes_up, stats.bytes_down, stats.connections_total) == (5, 5, 1)
    assert not stats.cut


async def test_cut_holds_bytes_and_heal_delivers_them_in_order(proxy: Netcut) -> None:
    async with await _connect(proxy) as s:
        await s.send_all(b"before")
        assert await _receive_exactly(s, 6) == b"before"
        proxy.blackhole()
        up = proxy.statistics().bytes_up
        chunks = [f"<{i:04d}>".encode() for i in range(200)]
        for c in chunks:  # small sends: the kernel buffers them, nothing is refused
            await s.send_all(c)
        assert await _silent(s)
        stats = proxy.statistics()
        assert stats.cut
        assert stats.bytes_up == up  # not one byte reached the echo server
        assert stats.connections_open == 1  # not closed, not reset
        proxy.heal()
        want = b"".join(chunks)
        with trio.fail_after(5):
            assert await _receive_exactly(s, len(want)) == want
        await s.send_all(b"after")
        assert await _receive_exactly(s, 5) == b"after"
    assert proxy.statistics().cuts == 1


async def test_cut_in_the_middle_of_a_stream_loses_and_reorders_nothing(proxy: Netcut,
                                                                       nursery: trio.Nursery
                                                                       ) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: the cut lands while bytes are moving
    async with await _connect(proxy) as s:
        nursery.start_soon(s.send_all, payload)
        got = await _receive_exactly(s, 1000)
        proxy.blackhole()
        await trio.sleep(0.05)  # what was moved before the cut may still arrive
        with trio.move_on_after(0.1):
            while True:
                got += await s.receive_some(65536)
        moved = proxy.statistics().bytes_down
        assert len(got) <= moved < len(payload)  # the cut did land mid-stream
        assert await _silent(s, 0.3)
        assert proxy.statistics().bytes_down == moved
        proxy.heal()
        with trio.fail_after(10):
            got += await _receive_exactly(s, len(payload) - len(got))
        assert got == payload


async def test_connection_made_during_a_cut_waits_for_the_heal(proxy: Netcut) -> None:
    proxy.blackhole()
    with trio.fail_after(2):
        s = await _connect(proxy)  # the connect itself succeeds
    async with s:
        await s.send_all(b"ping")
        assert await _silent(s)
        stats = proxy.statistics()
        assert (stats.connections_open, stats.connections_waiting, stats.bytes_up) == (1, 1, 0)
        proxy.heal()
        with trio.fail_after(5):
            assert await _receive_exactly(s, 4) == b"ping"
        assert proxy.statistics().connections_waiting == 0


async def test_close_during_a_cut_reaches_the_far_end_after_the_heal(proxy: Netcut) -> None:
    s = await _connect(proxy)
    await s.send_all(b"x")
    assert await _receive_exactly(s, 1) == b"x"
    proxy.blackhole()
    await s.send_eof()  # the client half-closes during the cut
    assert await _silent(s)
    proxy.heal()
    with trio.fail_after(5):
        assert await s.receive_some(10) == b""  # the echo server saw EOF and closed
    await s.aclose()
    with trio.fail_after(5):
        while proxy.statistics().connections_open:
            await trio.sleep(0.01)


async def test_blackhole_and_heal_are_idempotent(proxy: Netcut) -> None:
    proxy.heal()
    proxy.blackhole()
    proxy.blackhole()
    assert proxy.statistics().cuts == 1
    assert control_answer(proxy, "status").startswith("ok cut=true cuts=1 ")
    assert control_answer(proxy, "heal\r") == "ok cut=false"
    assert control_answer(proxy, "CUT") == "ok cut=true"
    assert control_answer(proxy, "drop").startswith("error unknown command")


async def test_program_control_socket(nursery: trio.Nursery) -> None:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, _echo, 0,
                                                      host="127.0.0.1"))
    echo_port = listeners[0].socket.getsockname()[1]
    command = [sys.executable, "-m", "tools.netcut", "--route", f"0:{echo_port}",
               "--control", "0"]
    # Popen returns at once; the process is always stopped in the finally below.
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        ready = await trio.to_thread.run_sync(proc.stdout.readline)
        fields = dict(f.split("=", 1) for f in ready.split()[2:])
        assert ready.startswith("netcut ready "), ready
        listen = int(fields["routes"].split(":")[0])
        control = await trio.open_tcp_stream("127.0.0.1", int(fields["control"]))
        data = await trio.open_tcp_stream("127.0.0.1", listen)
        async with control, data:
            async def ask(line: bytes) -> str:
                await control.send_all(line)
                return (await control.receive_some(1024)).decode()

            assert await ask(b"cut\n") == "ok cut=true\n"
            await data.send_all(b"abc")
            assert await _silent(data)
            assert (await ask(b"status\n")).startswith("ok cut=true cuts=1 open=1 total=1 ")
            assert await ask(b"heal\n") == "ok cut=false\n"
            with trio.fail_after(5):
                assert await _receive_exactly(data, 3) == b"abc"
            assert (await ask(b"status\n")).endswith(" up=3 down=3\n")
    finally:
        proc.terminate()
        proc.wait(10)
