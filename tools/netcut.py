"""A loopback TCP proxy that can cut the network it stands for, and heal it.

Each route forwards 127.0.0.1:listen_port to 127.0.0.1:target_port. The chaos harness
puts one between a single kstate node and Kafka (see ``KAFKA_PROXY_SLOTS`` in
deploy/kafka/kafka.sh) to partition that node from Kafka while clients still reach the
node over HTTP.

Blackhole semantics (a deliberate choice): while cut, **no byte moves in either direction**
on any connection of any route, and **nothing is closed or reset**. Bytes not yet passed
on stay where they are (in the kernel's socket buffers; the proxy holds at most the rest
of one partly sent chunk per direction) and are delivered, in order, after :meth:`heal`
— what the two ends see after a partition short enough for TCP retransmission to
survive. Neither end learns of the cut except by silence; their own timeouts decide what
happens (a client that gives up closes its socket, and that close reaches the far end
after the heal, like any other byte). A connection made during a cut is accepted (the
client sees a connect that succeeds, then silence) and is connected to its target only
after the heal.

How "no byte" is kept: every send, receive and connect is a non-blocking socket call made
right after the gate was seen open, with no checkpoint in between, and every wait for a
socket to become ready runs in a cancel scope that :meth:`Netcut.blackhole` cancels. So a
cut takes effect at once, even for a task that was already woken to send.

Library::

    async with open_netcut([(0, broker_port)]) as cut:
        (listen, _), = cut.routes
        ...; cut.blackhole(); ...; cut.heal()

Program: ``python -m tools.netcut --route LISTEN:TARGET [--route ...] --control PORT``
prints ``netcut ready routes=L:T,... control=PORT`` once listening, then answers one line
per line received on the control port: ``cut``, ``heal``, ``status`` (see
:func:`control_answer`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

HOST = "127.0.0.1"
CHUNK = 64 * 1024  # bytes read from one side per call
MAX_CONTROL_LINE = 1024
T = TypeVar("T")
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


@dataclass(frozen=True, slots=True)
class NetcutStatistics:
    """A snapshot of one :class:`Netcut`."""

    cut: bool  #: blackholed now
    cuts: int  #: how many times :meth:`Netcut.blackhole` cut an open network
    routes: tuple[tuple[int, int], ...]  #: (listen_port, target_port), as bound
    connections_open: int  #: accepted and not yet closed
    connections_total: int  #: accepted since start
    connections_waiting: int  #: accepted, not yet connected to the target (cut, or connecting)
    bytes_up: int  #: client -> target bytes delivered
    bytes_down: int  #: target -> client bytes delivered


class _Gate:
    """Open or cut. Owns the cancel scopes of socket waits, which a cut cancels."""

    def __init__(self) -> None:
        self.cut = False
        self.cuts = 0
        self._healed = trio.Event()
        self._healed.set()
        self._waits: set[trio.CancelScope] = set()

    def close(self) -> bool:
        if self.cut:
            return False
        self.cut, self.cuts, self._healed = True, self.cuts + 1, trio.Event()
        for scope in self._waits:
            scope.cancel()
        return True

    def open(self) -> bool:
        if not self.cut:
            return False
        self.cut = False
        self._healed.set()
        return True

    async def wait_open(self) -> None:
        """Return at once (no checkpoint) when open; else when healed."""
        while self.cut:
            await self._healed.wait()

    @contextlib.contextmanager
    def cuttable(self) -> Iterator[None]:
        """A scope a cut cancels (the cancellation is absorbed by the scope)."""
        with trio.CancelScope() as scope:
            self._waits.add(scope)
            try:
                yield
            finally:
                self._waits.discard(scope)


class Netcut:
    """The proxy's state: its routes, the gate and the counters. Made by
    :func:`open_netcut`; its methods are called from the same trio run."""

    def __init__(self, routes: tuple[tuple[int, int], ...]) -> None:
        self._routes = routes
        self._gate = _Gate()
        self._open = self._total = self._waiting = 0
        self._bytes = [0, 0]  # up, down

    @property
    def routes(self) -> tuple[tuple[int, int], ...]:
        """(listen_port, target_port) of every route, with the ports actually bound."""
        return self._routes

    @property
    def is_cut(self) -> bool:
        return self._gate.cut

    def blackhole(self) -> None:
        """Cut every route now (idempotent): see the module docstring for what a cut is."""
        self._gate.close()

    def heal(self) -> None:
        """Let bytes move again (idempotent); held bytes go first, in order."""
        self._gate.open()

    def statistics(self) -> NetcutStatistics:
        return NetcutStatistics(
            cut=self._gate.cut, cuts=self._gate.cuts, routes=self._routes,
            connections_open=self._open, connections_total=self._total,
            connections_waiting=self._waiting, bytes_up=self._bytes[0],
            bytes_down=self._bytes[1])

    # -- socket work (all of it through _io, so a cut stops it) ----------------------
    async def _io(self, sock: socket.socket, readable: bool, op: Callable[[], T]) -> T:
        """Run the non-blocking ``op`` when the gate is open, waiting (cuttably) for
        ``sock`` to be ready as often as needed. OSError from ``op`` propagates. No
        checkpoint once ``op`` succeeded: the caller updates its counters first."""
        while True:
            await self._gate.wait_open()
            try:
                result = op()  # no checkpoint since the gate was seen open
            except (BlockingIOError, InterruptedError):
                with self._gate.cuttable():
                    if readable:
                        await trio.lowlevel.wait_readable(sock)
                    else:
                        await trio.lowlevel.wait_writable(sock)
                continue
            return result  # the caller checkpoints (after counting what moved)

    async def _connect(self, port: int) -> socket.socket:
        """A socket connected to HOST:port, started only while open. Raises OSError."""
        await self._gate.wait_open()
        sock = _nonblocking(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        try:
            err = sock.connect_ex((HOST, port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
            # The SYN is out: the kernel finishes the handshake even if a cut comes now,
            # as it would for a packet already on the wire. Bytes wait for the gate.
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _pump(self, src: socket.socket, dst: socket.socket, index: int,
                    conn: trio.CancelScope) -> None:
        """Copy src -> dst until EOF (passed on as a half-close). A reset or broken pipe
        on either side resets both (SO_LINGER 0) by cancelling ``conn``."""
        try:
            while True:
                data = await self._io(src, True, functools.partial(src.recv, CHUNK))
                if not data:
                    break
                view = memoryview(data)
                while view:
                    sent = await self._io(dst, False, functools.partial(dst.send, view))
                    view = view[sent:]
                    self._bytes[index] += sent
                    await trio.lowlevel.checkpoint()
        except OSError:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            conn.cancel()
            return
        with contextlib.suppress(OSError):  # the far end may be gone already
            await self._io(dst, False, functools.partial(dst.shutdown, socket.SHUT_WR))

    async def _handle(self, client: socket.socket, target: int) -> None:
        self._open += 1
        self._total += 1
        try:
            self._waiting += 1
            try:
                upstream = await self._connect(target)
            except OSError:
                return  # nothing listens there: the client's connection just closes
            finally:
                self._waiting -= 1
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, upstream, 0, nursery.cancel_scope)
                    nursery.start_soon(self._pump, upstream, client, 1, nursery.cancel_scope)
            finally:
                upstream.close()
        finally:
            self._open -= 1
            client.close()

    async def _serve(self, listener: socket.socket, target: int,
                     nursery: trio.Nursery) -> None:
        """Accept forever (during a cut too: the kernel would complete the handshake)."""
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                await trio.lowlevel.wait_readable(listener)
                continue
            nursery.start_soon(self._handle, _nonblocking(client), target)
            await trio.lowlevel.checkpoint()


def _nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def open_netcut(routes: Sequence[tuple[int, int]]) -> AsyncIterator[Netcut]:
    """Listen on every route's listen port (0: a free one, see :attr:`Netcut.routes`)
    and forward to its target until the block exits; then every proxied connection
    is closed. Raises OSError if a listen port cannot be bound."""
    listeners: list[socket.socket] = []
    try:
        for listen_port, _ in routes:
            listeners.append(_listen(listen_port))
        bound = tuple((int(sock.getsockname()[1]), target)
                      for sock, (_, target) in zip(listeners, routes, strict=True))
        cut = Netcut(bound)
        async with trio.open_nursery() as nursery:
            for sock, (_, target) in zip(listeners, bound, strict=True):
                nursery.start_soon(cut._serve, sock, target, nursery)
            yield cut
            nursery.cancel_scope.cancel()
    finally:
        for sock in listeners:
            sock.close()


# -- the program ----------------------------------------------------------------------

def control_answer(cut: Netcut, line: str) -> str:
    """The control protocol: ``cut`` / ``heal`` answer ``ok cut=true|false``;
    ``status`` answers ``ok cut=… cuts=… open=… total=… waiting=… up=… down=…``;
    anything else ``error …``."""
    command = line.strip().lower()
    if command == "cut":
        cut.blackhole()
    elif command == "heal":
        cut.heal()
    elif command != "status":
        return f"error unknown command {command[:40]!r} (cut, heal, status)"
    s = cut.statistics()
    if command != "status":
        return f"ok cut={str(s.cut).lower()}"
    return (f"ok cut={str(s.cut).lower()} cuts={s.cuts} open={s.connections_open} "
            f"total={s.connections_total} waiting={s.connections_waiting} "
            f"up={s.bytes_up} down={s.bytes_down}")


async def _control(cut: Netcut, stream: trio.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            try:
                data = await stream.receive_some(MAX_CONTROL_LINE)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                answer = control_answer(cut, line.decode("ascii", "replace"))
                await stream.send_all(answer.encode() + b"\n")
            if len(buffer) > MAX_CONTROL_LINE:
                await stream.send_all(b"error line too long\n")
                return


def _route(text: str) -> tuple[int, int]:
    listen, sep, target = text.partition(":")
    if not sep or not listen.isdigit() or not target.isdigit():
        raise argparse.ArgumentTypeError(f"expected LISTEN:TARGET ports, got {text!r}")
    return int(listen), int(target)


async def _run(routes: list[tuple[int, int]], control_port: int) -> None:
    async with open_netcut(routes) as cut, trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(control_port, host=HOST)
        port = listeners[0].socket.getsockname()[1]
        shown = ",".join(f"{a}:{b}" for a, b in cut.routes)
        print(f"netcut ready routes={shown} control={port}", flush=True)
        nursery.start_soon(trio.serve_listeners,
                           functools.partial(_control, cut), listeners)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.netcut``; runs until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tools.netcut", description=__doc__.split(
        "\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--route", type=_route, action="append", required=True,
                        metavar="LISTEN:TARGET", help="forward 127.0.0.1:LISTEN to :TARGET")
    parser.add_argument("--control", type=int, default=0, metavar="PORT",
                        help="control port on 127.0.0.1 (0: a free one, printed)")
    args = parser.parse_args(argv)
    try:
        trio.run(_run, args.route, args.control)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
