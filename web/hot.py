"""The hot routes, answered on the lean front (web/http1) without quart: every request
to ``/user`` and ``/users/{email}`` but ``OPTIONS``. They go through the same routing
rules, token check (web/auth.py), validation, decision and renderer as the quart
routes (web/user_request.py), and count in the same metrics with the same labels, so
an answer does not depend on which server gave it; tests/unit/test_hot.py sends the
same bytes to both and compares the answers.

What differs is only what a framework adds: no ``server`` header, and a front that
reads a hot request's whole body (up to ``max_body``) before the handler runs. A
body over ``max_body`` is not read at all: the request reaches :meth:`HotRoutes.handle`
marked ``oversized``, which answers what quart would (the first check that fails;
413 once the body is needed), and the connection closes after it, as quart's does.

A stopping node drains HTTP for a bounded time (kstate/node.py, ``http_drain``), and a
request may take longer (a forwarded write: up to the proxy deadline). One still in
flight at the drain deadline is cancelled and answered by :meth:`HotRoutes.cut_off`
with what is known of it (:func:`cut_off_outcome`), never dropped.
"""

from __future__ import annotations

import time

from quart_trio import QuartTrio
from werkzeug.exceptions import MethodNotAllowed, NotFound

from actors.writer import unconfirmed
from kstate.core.outcomes import Unavailable
from kstate.core.wire import REST_PREFIX
from web import auth, render
from web.http1 import Request, Response, is_cancellation
from web.metrics import UNMATCHED
from web.progress import Progress
from web.proxy import no_answer, not_reached
from web.request_body import too_large
from web.services import Services
from web.user_request import (
    METHODS,
    REST_RULE,
    SEED_RULE,
    UserCall,
    answer,
    decode_path,
    user_rule,
)

_SEED = SEED_RULE.encode()
_REST = REST_PREFIX.encode()


def is_hot(method: bytes, path: bytes) -> bool:
    """Whether the lean front answers a request (raw method, raw path before ``?``):
    a path that the user routes' rules see as theirs once decoded, any method but
    ``OPTIONS`` (quart answers that with the route's ``Allow``)."""
    if method == b"OPTIONS":
        return False
    if path == _SEED or path.startswith(_REST):
        return True
    if b"%" in path:  # /us%65rs/... is /users/... to the router too
        decoded = decode_path(path)
        return decoded == SEED_RULE or decoded.startswith(REST_PREFIX)
    return False


def allowed_methods(app: QuartTrio, path: str) -> list[str]:
    """The methods the app's url_map allows on ``path``, in the order quart's 405 names
    them (its ``Allow`` header)."""
    try:
        app.url_map.bind("localhost").match(path, method="TRACE")
    except MethodNotAllowed as exc:
        return list(exc.valid_methods or [])
    raise ValueError(f"{path} takes TRACE: not a user route")


def cut_off_outcome(progress: Progress | None) -> Unavailable:
    """What a request cancelled by the drain deadline is answered, from how far it got:
    sent to its owner, ``owner_no_answer`` (the owner may apply a write yet); forwarded
    but not sent, ``owner_not_reached``; handed to this node's writer, which may have
    produced the record, ``write_unconfirmed``; anything else (routing, a read) did
    nothing: ``rebalancing``, as this node is leaving and its partitions move."""
    if progress is not None:
        if progress.owner is not None:
            return (no_answer if progress.sent else not_reached)(progress.owner)
        if progress.writing:
            return unconfirmed("this node stopped before the write's outcome was known here")
    return Unavailable("rebalancing", "this node is leaving the cluster (its partitions move "
                       "to other nodes) and stopped before it answered; nothing was applied; "
                       "retry", 1.0)


class HotRoutes:
    """The lean front's handler for the user routes. ``app``: the quart app serving the
    same routes (only asked, once, what its 405 answers say)."""

    def __init__(self, s: Services, app: QuartTrio) -> None:
        self._s = s
        self._guard = auth.write_guard(s.config.auth(), s.nonces)
        self._allow = {SEED_RULE: allowed_methods(app, SEED_RULE),
                       REST_RULE: allowed_methods(app, REST_PREFIX + "a@b")}
        # requests cancelled in flight, by id(request), until cut_off answers them
        self._cancelled: dict[int, tuple[Progress, str, str, float]] = {}

    async def handle(self, req: Request) -> Response:
        started = time.perf_counter()
        s = self._s
        method = req.method.decode("latin-1")
        path = decode_path(req.path)
        routed = user_rule(path)
        rule, email = routed if routed is not None else (None, None)
        proxied = False
        if rule is None:
            out, route = render.http_error(NotFound()), UNMATCHED
        elif method not in METHODS:
            out = render.http_error(MethodNotAllowed(valid_methods=self._allow[rule]))
            route = UNMATCHED
        else:
            route = rule
            query = req.query
            max_body = s.config.max_body
            refused = None
            guard = self._guard
            if guard is not None:
                if req.oversized and guard.needs_body(method, req.headers):
                    refused = render.bad_request(too_large(max_body))  # as quart reads it
                else:
                    refused = guard.check(method, path, query.decode("latin-1"), req.headers,
                                          req.body, req.client)
            if refused is not None:
                out = refused
            else:

                async def body() -> bytes:
                    if req.oversized:
                        raise too_large(max_body)
                    return req.body

                progress = Progress()
                call = UserCall(rule=rule, method=method, path=path, query=query,
                                headers=req.headers, email=email, progress=progress)
                try:
                    out, proxied = await answer(s.decider, max_body, call, body)
                except Exception:
                    raise  # the front answers 500
                except BaseException as exc:
                    if is_cancellation(exc):  # the front asks cut_off(req) right after
                        self._cancelled[id(req)] = (progress, route, method, started)
                    raise
        s.metrics.observe(route, method, out.status, "proxied" if proxied else "local",
                          time.perf_counter() - started)
        return Response(out.status, out.headers, out.body)

    def cut_off(self, req: Request) -> Response:
        """The answer to ``req``, which :meth:`handle` was answering when the drain
        deadline cancelled it (the front's ``cut_off``): a 503 that says what may
        have happened (:func:`cut_off_outcome`), counted like every answer."""
        progress, route, method, started = self._cancelled.pop(
            id(req), (None, UNMATCHED, req.method.decode("latin-1"), time.perf_counter()))
        out = render.unavailable(cut_off_outcome(progress))
        kind = "proxied" if progress is not None and progress.owner is not None else "local"
        self._s.metrics.observe(route, method, out.status, kind, time.perf_counter() - started)
        return Response(out.status, out.headers, out.body)
