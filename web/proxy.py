"""Forwarding a request to the owner of its key, over web/http1's pooled keep-alive
client (TLS with the node's peer CA when the cluster speaks HTTPS); GETs over a
pipelined link per owner (web/http1/pipeline.py), which sends them the same way.

Only urls from the current routing table are ever targets (the router picks them);
nothing a client sends chooses where a request goes. ``kstate-hops`` counts hops and
``kstate-generation`` carries this node's table generation. When an API token is set,
a forwarded write carries this node's signature in ``kstate-cluster-auth``
(web/auth.py) instead of the client's ``Authorization``; whatever the client sent in
those headers is never passed on. The signature is made last, over the target, the
headers and the body exactly as they are sent.

What a forwarded request carries: the method; the path percent-encoded again from its
decoded form (:func:`kstate.core.wire.quote_path`: the owner decodes the same key);
the query byte for byte; the body byte for byte; every header byte for byte (names
lower-case, as both servers read them) except the hop-by-hop ones, ``host``,
``content-length`` (the client writes its own), the three node headers above, and any
header the wire could not carry as it is (a name that is not a token, a control byte
in a value): such a header is dropped, never a 5xx. Neither parser lets one in today;
bytes 0x80-0xFF in a value (obs-text) travel as they came.

When the owner gives no answer, what the client is told depends on what is known:
``owner_not_reached`` (the request certainly did not reach the owner: it may be
retried anywhere) or ``owner_no_answer`` (it was sent and no complete answer came: a
write may have been applied; a conditional one must not be retried blindly). Both are
503 with ``Retry-After``. A conditional write is never sent twice by the pool either.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from kstate.core.outcomes import Unavailable
from kstate.core.wire import CLUSTER_AUTH_HEADER, GENERATION_HEADER, HOPS_HEADER, quote_path
from web.http1.client import NoAnswer, NotSent, Pool
from web.http1.pipeline import Pipeline
from web.http1.request_bytes import InvalidRequest, header_ok
from web.progress import Progress

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
# Set by our own server on every response: copying the owner's would send them twice.
SERVER_SET = frozenset({b"date", b"server"})
NODE_HEADERS = frozenset({HOPS_HEADER.encode(), CLUSTER_AUTH_HEADER.encode(),
                          GENERATION_HEADER.encode()})
# (target url, method, path, query, headers, body) -> the kstate-cluster-auth value
# (web/auth.py), or None when this request needs none. Headers as sent, latin-1.
Signer = Callable[[str, str, str, str, list[tuple[str, str]], bytes], str | None]


@dataclass(frozen=True, slots=True)
class Incoming:
    """The request to forward, as this node received it (``path`` decoded, ``headers``
    with lower-case names and values as received). ``progress``: marked as the request
    is forwarded and sent (web/progress.py)."""

    method: str
    path: str
    query: bytes
    headers: Headers
    body: bytes
    hops: int
    progress: Progress = field(default_factory=Progress)


def not_reached(url: str) -> Unavailable:
    """A forwarded request that certainly did not reach the owner at ``url``."""
    return Unavailable("owner_not_reached", f"the owner {url} could not be reached; nothing "
                       "was sent to it: retry")


def no_answer(url: str) -> Unavailable:
    """A forwarded request sent to the owner at ``url`` without a complete answer."""
    return Unavailable("owner_no_answer", f"the owner {url} got the request and gave no "
                       "answer in time; a write may or may not have been applied")


@dataclass(frozen=True, slots=True)
class PeerResponse:
    """The owner's complete answer, as the proxy kept it."""
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """The proxy's numbers (/metrics, /cluster)."""
    forwarded: int
    failures: int  # not_reached + no_answer
    not_reached: int
    no_answer: int
    dropped_headers: int
    pipelined: int  # GETs answered on a pipelined link (web/http1/pipeline.py)
    went_around: int  # GETs that left a stalled or failed link for a connection of their own
    links_failed: int


class Proxy:
    """Forwards requests to their owner; counts what it forwarded and what failed.
    ``timeout`` bounds one forwarded request (kstate.settings derives it from the
    owner's worst case); ``ssl_context``: talk TLS to peers, verified with it. GETs
    go on a pipelined link per owner while :meth:`run` runs (web/http1/pipeline.py);
    every other request, on a pooled connection of its own."""

    def __init__(self, timeout: float, sign: Signer | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._timeout = timeout
        self._pool = Pool(timeout=timeout, ssl_context=ssl_context)
        self._pipeline = Pipeline(self._pool)
        self._sign = sign
        self.forwarded = self.not_reached = self.no_answer = self.dropped_headers = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Keep the pipelined links (until cancelled)."""
        await self._pipeline.run(task_status=task_status)

    async def aclose(self) -> None:
        await self._pool.aclose()

    def statistics(self) -> ProxyStats:
        links = self._pipeline.statistics()
        return ProxyStats(forwarded=self.forwarded,
                          failures=self.not_reached + self.no_answer,
                          not_reached=self.not_reached, no_answer=self.no_answer,
                          dropped_headers=self.dropped_headers, pipelined=links.pipelined,
                          went_around=links.went_around, links_failed=links.failed)

    def _headers(self, req: Incoming, method: str, url: str, generation: int
                 ) -> tuple[Headers, bool]:
        """The headers to send to ``url`` (the request goes as ``method``), and whether
        the request is conditional."""
        out: Headers = []
        conditional = False
        for k, v in req.headers:
            name = k.lower()
            if name in HOP_BY_HOP or name in NODE_HEADERS:
                continue
            if name == b"authorization" and self._sign is not None:
                continue  # this node vouches for the client instead
            if not header_ok(name, v):
                self.dropped_headers += 1
                continue
            conditional = conditional or name in (b"if-match", b"if-none-match")
            out.append((name, v))
        out.append((HOPS_HEADER.encode(), b"%d" % (req.hops + 1)))
        out.append((GENERATION_HEADER.encode(), b"%d" % generation))
        if self._sign is not None:
            signature = self._sign(url, method, req.path, req.query.decode("latin-1"),
                                   [(k.decode("latin-1"), v.decode("latin-1")) for k, v in out],
                                   req.body)
            if signature is not None:
                out.append((CLUSTER_AUTH_HEADER.encode(), signature.encode("latin-1")))
        return out, conditional

    async def exchange(self, req: Incoming, url: str, generation: int
                       ) -> PeerResponse | Unavailable:
        """Forward ``req`` to ``url`` and return the owner's answer (headers minus
        hop-by-hop and the ones our server sets), or Unavailable (``owner_not_reached``,
        ``owner_no_answer``)."""
        # A HEAD goes on as a GET: the owner's answer to a HEAD has no body, and its
        # Content-Length (hop-by-hop here) would be lost; with the body, whoever
        # answers the client sets the length a GET would have and sends no body.
        sent = "GET" if req.method == "HEAD" else req.method
        headers, conditional = self._headers(req, sent, url, generation)
        target = quote_path(req.path).encode("ascii")
        if req.query:
            target += b"?" + req.query
        method = sent.encode("ascii")
        # a conditional write sent twice could fail (412) on its own first copy
        # (a HEAD was turned into a GET above)
        again = method == b"GET" or (method in (b"PUT", b"DELETE") and not conditional)
        progress = req.progress
        progress.owner = url
        try:
            if method == b"GET":
                resp = await self._pipeline.get(url, target, headers,
                                                deadline_after=self._timeout,
                                                on_send=progress.mark_sent)
            else:
                resp = await self._pool.request(url, method, target, headers, req.body,
                                                idempotent=again, on_send=progress.mark_sent)
        except (NotSent, InvalidRequest) as exc:
            self.not_reached += 1
            log.warning("event=proxy_failed target=%s sent=no error=%r", url, exc)
            return not_reached(url)
        except NoAnswer as exc:
            self.no_answer += 1
            log.warning("event=proxy_failed target=%s sent=yes error=%r", url, exc)
            return no_answer(url)
        self.forwarded += 1
        # Content-Length is hop-by-hop here: whoever sends the answer on sets its own.
        kept = [(k, v) for k, v in resp.headers if k not in HOP_BY_HOP and k not in SERVER_SET]
        return PeerResponse(resp.status, kept, resp.body)
