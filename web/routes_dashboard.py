"""The dashboard: ``GET /`` (a single page; its files, web/static/*, are served under
``/dashboard/<name>``), and ``GET /cluster``, the JSON that feeds it: every member's
``/readyz`` gathered through this node's routing table.

``/cluster`` never fails because a peer does: a member that does not answer within
``MEMBER_TIMEOUT`` is reported ``"status": "unreachable"`` with the error, one that
answers something other than /readyz JSON is ``"bad_response"``. Only urls of the
routing table are ever fetched; nothing a client sends chooses a target. Peers are
asked over web/http1's pooled client, with TLS verified as forwarding does (web/tls.py).
A round of asks is shared by every ``/cluster`` request that arrives while it runs
(:class:`Rounds`), so however many clients poll, the node asks each member at most
once at a time: one outbound connection per member, not one per request.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import trio
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

from web.http1.client import ClientError, Pool
from web.responses import json_response
from web.services import Services
from web.status import readiness

STATIC = Path(__file__).resolve().parent / "static"
MEMBER_TIMEOUT = 1.0  # seconds a member's /readyz may take before it counts as unreachable
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of web/static, read once: name -> (bytes, content type)."""
    out: dict[str, tuple[bytes, str]] = {}
    if STATIC.is_dir():
        for path in sorted(STATIC.iterdir()):
            if path.is_file() and path.suffix in TYPES:
                out[path.name] = (path.read_bytes(), TYPES[path.suffix])
    return out


async def _member(pool: Pool, url: str) -> dict[str, Any]:
    """One member's /readyz as a report; never raises for what the peer does."""
    started = time.monotonic()
    report: dict[str, Any] = {"url": url, "status": "unreachable", "readyz": None,
                              "error": None, "latency_ms": None}
    try:
        r = await pool.request(url, b"GET", b"/readyz", [(b"accept", b"application/json")])
    except (ClientError, ValueError) as exc:  # ValueError: a url that is not host:port
        report["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return report
    report["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    try:
        doc = orjson.loads(r.body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or "ready" not in doc:
        report["status"] = "bad_response"
        report["error"] = f"HTTP {r.status}, not a /readyz document"
        return report
    report["status"] = "ready" if doc.get("ready") else "not_ready"
    report["readyz"] = doc
    return report


Report = dict[str, Any]


class Rounds:
    """The members' /readyz reports, one round of asks at a time per set of urls: a
    request that comes while a round for its urls runs waits for that round's
    reports (at most ``MEMBER_TIMEOUT`` old) instead of asking again. Without this,
    each /cluster request opened a connection to every member, and a client with
    many connections made the node hold many times that while members were slow."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._running: dict[tuple[str, ...], tuple[trio.Event, dict[str, Report]]] = {}

    async def reports(self, urls: tuple[str, ...]) -> dict[str, Report]:
        running = self._running.get(urls)
        if running is not None:
            done, shared = running
            await done.wait()
            return shared
        done, reports = trio.Event(), dict[str, Report]()
        self._running[urls] = (done, reports)
        try:
            # shielded, so the requests that joined get every report even when the one
            # that started the round is cancelled (its client left); the pool's
            # timeout bounds it
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    for url in urls:
                        nursery.start_soon(self._ask, url, reports)
        finally:
            del self._running[urls]
            done.set()
        return reports

    async def _ask(self, url: str, reports: dict[str, Report]) -> None:
        reports[url] = await _member(self._pool, url)


def cluster_urls(s: Services) -> list[str]:
    """Every url the routing table names (members and partition owners), this node first."""
    table = s.router.table
    urls = set(table.members.values()) | set(table.owners.values())
    urls.discard(s.router.url)
    return [s.router.url, *sorted(urls)]


def register(app: QuartTrio, s: Services) -> None:
    files = _load_static()
    # connect + answer, all told; a few idle connections per peer for the next poll
    pool = Pool(timeout=MEMBER_TIMEOUT + 0.5, connect_timeout=MEMBER_TIMEOUT, max_idle=4,
                ssl_context=s.config.peer_ssl)
    rounds = Rounds(pool)

    @app.after_serving
    async def _close_peer_pool() -> None:
        with trio.CancelScope(shield=True):
            await pool.aclose()

    @app.route("/", methods=["GET"])
    async def dashboard() -> Response:
        return static_file("dashboard.html")

    @app.route("/dashboard/<name>", methods=["GET"])
    async def dashboard_file(name: str) -> Response:
        return static_file(name)

    def static_file(name: str) -> Response:
        found = files.get(name)
        if found is None:
            raise NotFound(f"no static file {name}")
        out = Response(found[0], status=200, content_type=found[1])
        out.headers["Cache-Control"] = "no-cache"
        return out

    @app.route("/cluster", methods=["GET"])
    async def cluster() -> Response:
        table = s.router.table
        urls = cluster_urls(s)
        reports = dict(await rounds.reports(tuple(urls[1:])))
        ready = readiness(s)
        reports[s.router.url] = {"url": s.router.url, "readyz": ready, "error": None,
                                 "latency_ms": 0.0,
                                 "status": "ready" if ready["ready"] else "not_ready"}
        member_ids = {url: mid for mid, url in table.members.items()}
        members = [{**reports[url], "member_id": member_ids.get(url),
                    "in_group": url in member_ids, "self": url == s.router.url}
                   for url in urls]
        return json_response({
            "node": s.router.url,
            "topic": s.config.topic,
            "generation": table.generation,
            "num_partitions": s.router.num_partitions,
            "owners": {str(p): url for p, url in sorted(table.owners.items())},
            "members": members,
            "proxy": asdict(s.proxy.statistics()),
            "feed": None if s.feed is None else asdict(s.feed.statistics()),
            "time": time.time(),
        }, no_store=True)
