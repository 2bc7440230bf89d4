"""The bounds of the front server, one named setting each (times in seconds).

They apply to every request the lean path reads itself, including the *first* head
of a connection that is later handed over to hypercorn (the decision needs the
whole head, so it is read under these bounds). After a hand-over, hypercorn's own
settings apply (:func:`web.http1.handover.hypercorn_config` derives them from here),
and ``max_head_bytes`` still bounds every head (web/http1/guard.py).

Deadlines are checked by one timer per server, every quarter of the shortest timeout
(at least 10 ms, at most 0.5 s): each fires at its setting or up to that much after it
(later still while the event loop lags), never before.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    #: Open connections (hot and handed over). One more is answered ``503``
    #: ``too_many_connections`` with ``Connection: close`` without reading a request.
    max_connections: int = 2048
    #: From a request's first byte (for a connection's first request: from accept) to
    #: the end of its head; past it ``408``. A new connection that sends nothing at
    #: all in that time is closed silently.
    head_timeout: float = 10.0
    #: From the end of a head to the end of its body; past it ``408``.
    body_timeout: float = 30.0
    #: Between two requests of a keep-alive connection; past it the connection is
    #: closed silently. Also hypercorn's ``keep_alive_timeout`` after a hand-over.
    idle_timeout: float = 75.0
    #: Request line + headers; more is ``431``, also after a hand-over (hypercorn's
    #: ``h11_max_incomplete_size`` bounds only a head that is not complete yet; the
    #: guard, web/http1/guard.py, checks a complete one).
    max_head_bytes: int = 16_384
    #: Body of a hot request (``Content-Length`` checked before reading); more is ``413``.
    max_body_bytes: int = 1_048_576
    #: Pipelined requests answered per write: responses to requests that arrived
    #: together go out in one ``send_all`` up to this many; the rest wait in the
    #: socket (back-pressure, never an error).
    max_pipelined: int = 32
    #: One ``send_all`` of responses to a client that does not read (or reads too
    #: slowly); past it the connection is closed. Also each write of a handed-over
    #: connection (web/http1/handover.py; hypercorn has no such bound).
    send_timeout: float = 30.0
    #: TLS handshake of an accepted connection; past it (or on failure) it is closed.
    #: It is part of the wait for the first head (``head_timeout`` runs from the
    #: accept), so it never takes longer than ``head_timeout`` either.
    tls_handshake_timeout: float = 10.0
    #: After an error answer, how long unread request bytes are drained before the
    #: close (a close with unread bytes resets the connection, and the reset can
    #: destroy the answer before the client reads it).
    linger_timeout: float = 1.0
    #: ... and how many bytes at most.
    linger_bytes: int = 262_144
    #: After the shutdown trigger: how long in-flight requests (and handed-over
    #: connections, websockets included) may take before they are cancelled. A hot
    #: request whose handler is still running then is answered (``Front``'s
    #: ``cut_off``), not dropped.
    drain_timeout: float = 5.0
    #: Past the drain deadline: how long sending a cut-off answer (and waiting for the
    #: client to close after it) may take, so that a client that does not read cannot
    #: hold the shutdown. Shutdown takes at most ``drain_timeout`` + this.
    cut_off_timeout: float = 1.0
    #: Largest websocket message a handed-over connection accepts (hypercorn's
    #: ``websocket_max_message_size``).
    websocket_max_message_bytes: int = 1_048_576
    #: Listen backlog.
    backlog: int = 1024
    #: Bytes asked of the socket per receive.
    read_size: int = 65_536

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_head_bytes", "max_pipelined", "read_size",
                     "backlog", "websocket_max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1")
        for name in ("head_timeout", "body_timeout", "idle_timeout", "send_timeout",
                     "tls_handshake_timeout", "drain_timeout", "cut_off_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be > 0")
        if self.max_body_bytes < 0 or self.linger_timeout < 0 or self.linger_bytes < 0:
            raise ValueError("Limits: max_body_bytes, linger_timeout, linger_bytes >= 0")
