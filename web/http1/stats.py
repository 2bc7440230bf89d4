"""The front server's counters, and the frozen snapshot ``statistics()`` returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FrontStatistics:
    open_connections: int
    #: Connections given to hypercorn (one per connection, whatever it served after).
    handed_over: int
    #: Hot requests answered by the handler (500s for a raising handler included).
    requests_served: int
    #: Connections answered 503 ``too_many_connections`` at accept.
    refused: int
    #: Heads not complete in time (408), and new connections that sent nothing.
    head_timeouts: int
    #: Bodies not complete in time (408).
    body_timeouts: int
    #: Keep-alive connections closed for idleness.
    idle_timeouts: int
    #: Writes a client did not take in time.
    send_timeouts: int
    #: TLS handshakes that failed or took too long.
    tls_failures: int
    #: Requests refused by the front itself (a JSON 4xx: 400, 413, 426, 431), on the
    #: lean path or by the guard of a handed-over connection.
    bad_requests: int
    #: Handler (or router) exceptions answered 500.
    handler_errors: int
    #: Hot requests whose handler was still running at the drain deadline, answered
    #: with the front's ``cut_off`` answer instead.
    cut_off: int


class Counters:
    """Mutable counters shared by the server and its connections (one trio thread:
    plain increments are safe)."""

    __slots__ = ("bad_requests", "body_timeouts", "cut_off", "handed_over", "handler_errors",
                 "head_timeouts", "idle_timeouts", "open", "refused", "send_timeouts",
                 "served", "tls_failures")

    def __init__(self) -> None:
        self.open = self.handed_over = self.served = self.refused = 0
        self.head_timeouts = self.body_timeouts = self.idle_timeouts = 0
        self.send_timeouts = self.tls_failures = self.bad_requests = 0
        self.handler_errors = self.cut_off = 0

    def snapshot(self) -> FrontStatistics:
        return FrontStatistics(
            open_connections=self.open, handed_over=self.handed_over,
            requests_served=self.served, refused=self.refused,
            head_timeouts=self.head_timeouts, body_timeouts=self.body_timeouts,
            idle_timeouts=self.idle_timeouts, send_timeouts=self.send_timeouts,
            tls_failures=self.tls_failures, bad_requests=self.bad_requests,
            handler_errors=self.handler_errors, cut_off=self.cut_off)
