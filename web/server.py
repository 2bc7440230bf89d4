"""The node's HTTP server: a listening socket bound before anything else (so the node
knows its address when it builds its actors), and the lean front (web/http1) serving
it until shutdown, then draining in-flight requests.

One port: the hot routes (web/hot.py) are answered by the front itself; every other
connection (dashboard, ``/changes`` websocket, ops, ``/openapi.json``, ``/metrics``,
``/cluster``, an ``OPTIONS``) is handed to hypercorn serving the quart app, in this
process, with the bytes already read. With a TLS context every connection is TLS.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from quart_trio import QuartTrio

from web.hot import HotRoutes, is_hot
from web.http1 import Front, Limits, bind_listening, hypercorn_config, serve_front
from web.services import Services

BACKLOG = 1024
# Seconds the kernel keeps sending to a peer that acknowledges nothing, or keeps its
# receive window shut, before it drops the connection (TCP_USER_TIMEOUT, inherited by
# every accepted socket; Linux). hypercorn shields its socket writes from
# cancellation, so without this a client that stops reading holds its connection and
# the task writing to it forever (actors/feed_outbox.py lets go of everything else).
SEND_STALL_TIMEOUT = 20
# Largest websocket message a client may send. The feed reads nothing from clients;
# hypercorn's default (16 MiB, times its queue of 10 per connection) would let each
# connection park 160 MiB here.
WEBSOCKET_MAX_MESSAGE = 4096


@dataclass(frozen=True, slots=True)
class FrontSettings:
    """The front's bounds (kstate.settings, ``http_*``); ``max_body`` is the node's."""
    max_connections: int = 2048
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    send_timeout: float = 30.0
    max_head_bytes: int = 16_384
    max_body: int = 65_536
    drain_timeout: float = 3.0
    cut_off_timeout: float = 1.0

    def limits(self) -> Limits:
        return Limits(max_connections=self.max_connections, head_timeout=self.head_timeout,
                      body_timeout=self.body_timeout, idle_timeout=self.idle_timeout,
                      send_timeout=self.send_timeout,
                      max_head_bytes=self.max_head_bytes, max_body_bytes=self.max_body,
                      drain_timeout=self.drain_timeout,
                      cut_off_timeout=self.cut_off_timeout, backlog=BACKLOG,
                      websocket_max_message_bytes=WEBSOCKET_MAX_MESSAGE)


def bind(listen: str) -> socket.socket:
    """A TCP socket bound to ``listen`` (host:port; port 0 = any free port), whose
    unacknowledged sends give up after SEND_STALL_TIMEOUT (where the OS has it).

    Bound, not listening: the port is taken (a port in use fails the start at once, and
    port 0 gets its number) but refuses connections until :func:`serve` listens. The node
    binds long before it serves (it waits for Kafka first): a listening port would accept
    connections nobody answers, and a peer forwarding to it would wait its whole proxy
    deadline instead of failing over at once."""
    options = ((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, SEND_STALL_TIMEOUT * 1000),
               ) if hasattr(socket, "TCP_USER_TIMEOUT") else ()
    return bind_listening(listen, None, options)


def bound_address(sock: socket.socket, listen: str) -> str:
    """host:port of ``sock`` as ``listen`` named the host (with the real port)."""
    host = listen.rpartition(":")[0]
    return f"{host}:{sock.getsockname()[1]}"


def build_front(s: Services, app: QuartTrio, settings: FrontSettings,
                ssl_context: ssl.SSLContext | None) -> Front:
    """The node's front: hot routes answered by :class:`web.hot.HotRoutes`, the rest
    by ``app`` on hypercorn."""
    limits = settings.limits()
    hot = HotRoutes(s, app)
    return Front(handle=hot.handle, is_hot=is_hot, app=app, limits=limits,
                 ssl_context=ssl_context, oversized_to_handler=True, cut_off=hot.cut_off,
                 hypercorn=hypercorn_config(limits,
                                            errorlog=logging.getLogger("hypercorn.error")))


async def serve(front: Front, sock: socket.socket, *,
                shutdown_trigger: Callable[[], Awaitable[object]],
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``front`` on ``sock`` until ``shutdown_trigger`` returns, then finish
    in-flight requests (up to the front's drain timeout; a hot one still in flight then
    is answered by :meth:`web.hot.HotRoutes.cut_off`). Takes ``sock`` over; reports the
    bound host:port once it accepts."""
    await serve_front(front, sock, shutdown_trigger=shutdown_trigger, task_status=task_status)
