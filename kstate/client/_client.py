"""The routing-aware client itself (see kstate/client/__init__.py)."""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import orjson

from kstate.client._errors import (
    NOT_APPLIED_CODES,
    KstateError,
    Unavailable,
    error_of,
    retry_after_of,
)
from kstate.client._http import NOT_SENT, TRANSPORT_ERRORS, Answer, Http, timeouts
from kstate.client._table import Table, normalize_url
from kstate.core.wire import GENERATION_HEADER, GROUPINFO_ROUTE, PARTITIONS_HEADER, user_path

_GROUPINFO = GROUPINFO_ROUTE.encode()
_ACCEPT = (b"accept", b"application/json")
_JSON_BODY = (b"content-type", b"application/json")
# A node answers /groupinfo through hypercorn and keeps that connection there: every
# later request on it would take hypercorn's slower path instead of the lean front's.
# So the connection of a refresh is closed after it, never pooled for user requests.
_GROUPINFO_HEAD = [_ACCEPT, (b"connection", b"close")]
# The answers that say a write took effect (put() and delete() return them).
_DONE = {"PUT": (200, 201), "DELETE": (200, 204)}
# A /groupinfo that cannot be used: no answer, or not a routing table.
_REFRESH_ERRORS: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, ValueError)


def _stated_count(value: str | None) -> int | None:
    """The partition count a node sent with its table; None when it sent none (a node
    older than the header). ValueError for anything but a positive count: that node's
    answer is not taken."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ValueError(f"{PARTITIONS_HEADER} {value[:20]!r} is not a partition count")
    return int(value)


@dataclass(frozen=True, slots=True)
class Versioned:
    """A user and its version (the ``ETag`` to pass as ``if_match``)."""

    value: dict[str, Any]
    etag: str


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What the client did so far (statistics())."""
    requests: int  # get/put/delete calls
    attempts: int  # HTTP requests sent for them (first tries and retries)
    direct: int  # attempts sent to the owner the cached table names
    direct_hits: int  # calls answered by that owner on their first attempt
    fallbacks: int  # attempts sent to another node: owner unknown or marked down
    retries: int  # attempts after the first, for any reason
    refreshes: int  # /groupinfo answers taken
    table_changes: int  # refreshes that brought another generation or other owners
    refused: int  # 5xx / 421 / 3xx answers seen (each one retried or raised)
    transport_errors: int  # attempts that got no HTTP answer


# -- the client ----------------------------------------------------------------------

@dataclass
class _Counters:
    requests: int = 0
    attempts: int = 0
    direct: int = 0
    direct_hits: int = 0
    fallbacks: int = 0
    retries: int = 0
    refreshes: int = 0
    table_changes: int = 0
    refused: int = 0
    transport_errors: int = 0


@dataclass(slots=True)
class _Attempt:
    target: str
    direct: bool
    table: Table | None
    version: int  # the client's table version the target was chosen from


class KstateClient:
    """See the module docstring. ``seeds``: ``host:port`` (or ``http[s]://host:port``)
    of one or more nodes; the rest of the cluster is learned from the routing table.
    ``tls``: the nodes speak HTTPS (their ``tls_certfile``); every node is verified
    with this context. ``token``: the nodes' API token (``KSTATE_API_TOKEN``), sent as
    ``Authorization: Bearer <token>`` on every PUT and DELETE attempt (the only
    requests a node asks it of; never on reads or ``/groupinfo``), never logged nor
    shown in an error."""

    def __init__(self, seeds: Iterable[str], *, timeout: float = 25.0, retries: int = 5,
                 max_retry_after: float = 2.0, max_table_age: float = 5.0,
                 down_for: float = 1.0, max_connections: int = 100,
                 refresh_timeout: float = 2.0, tls: ssl.SSLContext | None = None,
                 token: str | None = None) -> None:
        self._seeds = list(dict.fromkeys(normalize_url(s) for s in seeds))
        if not self._seeds:
            raise ValueError("at least one seed is required")
        # Checked here, and the message never quotes it: a token httpcore refused as a
        # header value would fail every write as a transport error, its text in it.
        if token is not None and (not token or not token.isascii()
                                  or not token.isprintable() or " " in token):
            raise ValueError("token: printable ASCII characters without spaces are "
                             "required (as the nodes' api_token)")
        self._auth = None if token is None else (b"authorization",
                                                 b"Bearer " + token.encode("ascii"))
        # A pool of no connection would send nothing: every request would wait out
        # its timeout and read as "no node answered".
        if (retries < 0 or timeout <= 0 or max_retry_after < 0 or max_table_age <= 0
                or refresh_timeout <= 0 or down_for < 0 or max_connections < 1):
            raise ValueError("retries >= 0, timeout > 0, max_retry_after >= 0, "
                             "max_table_age > 0, refresh_timeout > 0, down_for >= 0 and "
                             "max_connections >= 1 are required")
        self._retries = retries
        self._timeout = timeout
        self._max_retry_after = max_retry_after
        self._max_table_age = max_table_age
        self._down_for = down_for
        self._timeouts = timeouts(timeout)
        # /groupinfo is answered from memory: a node that takes longer is stuck, and
        # every request that needs the table waits behind the refresh (its lock).
        self._refresh_timeouts = timeouts(min(refresh_timeout, timeout))
        self._http = Http(tls=tls, max_connections=max_connections)
        self._table: Table | None = None
        # The members of the last complete table, still known while the cached table is
        # incomplete (every node answered one, e.g. all just restarted): forgetting
        # them would leave only the seeds to ask, and none if they are gone by then.
        self._complete_members: list[str] = []
        # The partition count of each topic's complete tables: a table with fewer is
        # missing its last partitions, not a complete table of a smaller topic.
        self._counts: dict[str, int] = {}
        self._version = 0  # bumped by every refresh that answered
        self._refreshing = anyio.Lock()
        self._down: dict[str, float] = {}  # url -> monotonic time it is tried again
        self._n = _Counters()
        self._rng = random.Random()

    async def __aenter__(self) -> KstateClient:
        try:
            await self.refresh()
        except Unavailable:
            pass  # no seed answers yet: the first request tries again
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- public API --------------------------------------------------------------

    def table(self) -> Table | None:
        """The cached routing table (None before any node answered /groupinfo)."""
        return self._table

    def statistics(self) -> ClientStats:
        return ClientStats(**vars(self._n))

    async def get(self, email: str) -> dict[str, Any] | None:
        """The user (``{"name", "email"}``), or None when it does not exist (404)."""
        found = await self.get_versioned(email)
        return None if found is None else found.value

    async def get_versioned(self, email: str) -> Versioned | None:
        r = await self._request("GET", email)
        if r.status == 404:
            return None
        if r.status != 200:
            raise error_of(r)
        try:
            doc = orjson.loads(r.content)
        except orjson.JSONDecodeError as exc:
            raise KstateError(r.status, "invalid_answer",
                              f"the value is not JSON: {r.text[:200]!r}") from exc
        if not isinstance(doc, dict):
            raise KstateError(r.status, "invalid_answer", "the value is not an object")
        return Versioned(doc, str(r.headers.get("etag", "")))

    async def put(self, email: str, name: str, if_match: str | None = None) -> str:
        """Create or replace the user; returns its new version (ETag). With
        ``if_match``, only if the current version is that one (``"*"``: any), else
        :class:`PreconditionFailed`; ValueError, sending nothing, for one that cannot
        be a header value (not printable ASCII, or space around it)."""
        key = email.strip()
        body = orjson.dumps({"name": name, "email": key})
        r = await self._request("PUT", key, body, if_match)
        if r.status not in (200, 201):
            raise error_of(r)
        return str(r.headers.get("etag", ""))

    async def delete(self, email: str, if_match: str | None = None) -> str | None:
        """Delete the user (idempotent); returns the tombstone's version when the node
        gave one. With ``if_match``: :class:`PreconditionFailed` on another version."""
        r = await self._request("DELETE", email, None, if_match)
        if r.status not in (200, 204):
            raise error_of(r)
        tag = r.headers.get("etag")
        return None if tag is None else str(tag)

    async def refresh(self) -> Table:
        """Fetch the routing table now (see :meth:`_refresh`)."""
        return await self._refresh(self._version, avoid=None)

    # -- routing -----------------------------------------------------------------

    def _is_down(self, url: str, now: float) -> bool:
        until = self._down.get(url)
        return until is not None and until > now

    def _nodes(self) -> list[str]:
        """Every node known: the table's members (and, while the table is incomplete,
        the last complete table's), then the seeds."""
        table = self._table
        members = table.members if table is not None else []
        if table is None or table.partitions == 0:
            members = [*members, *self._complete_members]
        return list(dict.fromkeys([*members, *self._seeds]))

    def _any_node(self, avoid: str | None = None) -> str:
        now = time.monotonic()
        nodes = self._nodes()
        live = [u for u in nodes if u != avoid and not self._is_down(u, now)]
        return self._rng.choice(live or [u for u in nodes if u != avoid] or nodes)

    def _choose(self, key: bytes, avoid: str | None) -> _Attempt:
        table = self._table
        owner = None if table is None else table.owner(key)
        if owner is not None and not self._is_down(owner, time.monotonic()):
            return _Attempt(owner, True, table, self._version)
        return _Attempt(self._any_node(avoid), False, table, self._version)

    async def _refresh(self, seen: int, avoid: str | None) -> Table:
        """Fetch /groupinfo unless another task refreshed since version ``seen``.

        Asks the known nodes one by one (``avoid`` last: it just failed us) and takes
        the first complete table at least as new as the cached one; failing that, the
        best answer (complete first, then highest generation). :class:`Unavailable`
        when no node answers."""
        async with self._refreshing:
            if self._version != seen and self._table is not None:
                return self._table
            now = time.monotonic()
            nodes = self._nodes()
            self._rng.shuffle(nodes)
            nodes.sort(key=lambda u: (u == avoid, self._is_down(u, now)))
            current = self._table
            best: Table | None = None
            errors: list[str] = []
            for url in nodes:
                try:
                    r = await self._http.request(b"GET", url, _GROUPINFO, _GROUPINFO_HEAD,
                                                 None, self._refresh_timeouts)
                    gen = int(r.headers.get(GENERATION_HEADER, "-1"))
                    if r.status != 200:
                        raise ValueError(f"status {r.status}")
                    got = Table.parse(orjson.loads(r.content), gen, url, self._counts,
                                      _stated_count(r.headers.get(PARTITIONS_HEADER)))
                except _REFRESH_ERRORS as exc:
                    if isinstance(exc, TRANSPORT_ERRORS):
                        self._down[url] = time.monotonic() + self._down_for
                    errors.append(f"{url}: {type(exc).__name__}: {exc}"[:200])
                    continue
                self._down.pop(url, None)
                if best is None or (got.partitions > 0, got.generation) > (
                        best.partitions > 0, best.generation):
                    best = got
                if got.partitions > 0 and (current is None
                                           or got.generation >= current.generation):
                    break
            if best is None:
                raise Unavailable(0, "no_node", "no node answered /groupinfo: "
                                  + "; ".join(errors))
            if current is None or (best.generation, best.owners) != (current.generation,
                                                                      current.owners):
                self._n.table_changes += 1
            self._n.refreshes += 1
            self._table = best
            if best.partitions > 0:
                self._complete_members = best.members
                self._counts[best.topic] = best.partitions
            self._version += 1
            await self._http.keep_only(set(self._nodes()))
            return best

    async def _maybe_refresh(self) -> None:
        table = self._table
        if table is None:
            await self._refresh(self._version, avoid=None)
        elif (time.monotonic() - table.fetched_at > self._max_table_age
              and not self._refreshing.locked()):
            try:
                await self._refresh(self._version, avoid=None)
            except Unavailable:
                pass  # the request itself finds out what works

    # -- one call, with retries --------------------------------------------------

    async def _request(self, method: str, email: str, body: bytes | None = None,
                       if_match: str | None = None) -> Answer:
        if if_match is not None and not (if_match.isascii() and if_match.isprintable()
                                         and if_match == if_match.strip()):
            # httpcore would refuse to send it, an error the loop below takes for a
            # transport error: "outcome_unknown", the node counted down, nothing sent.
            raise ValueError(f"if_match {if_match!r} is not an ETag (printable ASCII, "
                             "no leading or trailing space)")
        key = email.strip()
        key_bytes = key.encode()
        target = user_path(key).encode("ascii")  # percent-encoded: ASCII
        verb = method.encode("ascii")
        headers = [_ACCEPT]
        if body is not None:
            headers.append(_JSON_BODY)
        if if_match is not None:
            headers.append((b"if-match", if_match.encode("latin-1")))
        if self._auth is not None and method != "GET":
            headers.append(self._auth)  # every attempt's: retries send these headers
        self._n.requests += 1
        avoid: str | None = None
        last: KstateError | None = None
        # An earlier attempt of a write that may have been applied: if no later one
        # succeeds, the outcome is unknown, whatever the last refusal says.
        unsure: str | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                self._n.retries += 1
            try:
                await self._maybe_refresh()
            except Unavailable as exc:
                last = exc
                await anyio.sleep(self._backoff(attempt))
                continue
            go = self._choose(key_bytes, avoid)
            self._n.attempts += 1
            if go.direct:
                self._n.direct += 1
            else:
                self._n.fallbacks += 1
            try:
                r = await self._http.request(verb, go.target, target, headers, body,
                                             self._timeouts)
            except TRANSPORT_ERRORS as exc:
                self._n.transport_errors += 1
                self._down[go.target] = time.monotonic() + self._down_for
                if method != "GET" and if_match is not None and not isinstance(exc,
                                                                                NOT_SENT):
                    raise Unavailable(0, "outcome_unknown",
                                      f"{method} to {go.target} got no answer "
                                      f"({type(exc).__name__}); it may have been applied"
                                      ) from exc
                last = Unavailable(0, "unreachable",
                                   f"{go.target}: {type(exc).__name__}: {exc}")
                if method != "GET" and not isinstance(exc, NOT_SENT):
                    unsure = str(last)
                avoid = go.target
                await self._refresh_quietly(go.version, avoid)
                await anyio.sleep(self._backoff(attempt))
                continue
            self._down.pop(go.target, None)
            # A 5xx: a 503 refusal; a node's 500 internal_error (a bug, maybe after it
            # wrote); a front proxy's 502/504 (no answer from the node it sent to).
            failed = r.status >= 500
            if (failed and method != "GET"
                    and not (r.status == 503 and error_of(r).code in NOT_APPLIED_CODES)):
                # The owner produced (or may have) and could not confirm, or the answer
                # promises nothing: with If-Match a retry could answer 412 to this very
                # write. Say so instead of retrying.
                if if_match is not None:
                    raise Unavailable(r.status, "outcome_unknown",
                                      f"{method} to {go.target} may have been applied: "
                                      f"{error_of(r)}")
                unsure = str(error_of(r))
            if failed or r.status == 421 or 300 <= r.status < 400:
                self._n.refused += 1
                last = error_of(r)
                avoid = go.target
                new = await self._refresh_quietly(go.version, avoid)
                wait = min(retry_after_of(r) or 0.0, self._max_retry_after)
                if not self._moved(key_bytes, go, new):
                    await anyio.sleep(max(wait, self._backoff(attempt)))
                continue
            if unsure is not None and r.status not in _DONE[method]:
                # Any answer but the write's success leaves the earlier attempt open.
                raise Unavailable(r.status, "outcome_unknown",
                                  f"{method} was not confirmed and may have been applied "
                                  f"({unsure}); the last attempt: {error_of(r)}")
            if attempt == 0 and go.direct:
                self._n.direct_hits += 1
            return r
        if last is None:
            last = Unavailable(0, "no_node", "no attempt was made")
        if unsure is not None:
            raise Unavailable(last.status, "outcome_unknown",
                              f"{method} was not confirmed and may have been applied "
                              f"({unsure}); the last attempt: {last}")
        raise last

    def _moved(self, key: bytes, go: _Attempt, new: Table | None) -> bool:
        """Whether the refreshed table names a new owner for ``key``: another node
        than the one the attempt's table named and than the one that refused, not
        marked down. Then a retry can go there at once."""
        owner = None if new is None else new.owner(key)
        before = None if go.table is None else go.table.owner(key)
        return (owner is not None and owner != before and owner != go.target
                and not self._is_down(owner, time.monotonic()))

    async def _refresh_quietly(self, seen: int, avoid: str | None) -> Table | None:
        try:
            return await self._refresh(seen, avoid)
        except Unavailable:
            return None

    def _backoff(self, attempt: int) -> float:
        """0.05, 0.1, 0.2 ... seconds (capped at 1 s), with jitter."""
        # 2.0 ** 1024 overflows: a client set to retry that long would crash there.
        return min(1.0, 0.05 * 2.0 ** min(attempt, 5)) * (0.5 + self._rng.random() / 2)
