"""The optional API token (``KSTATE_API_TOKEN`` / ``--api-token-file``) and the node
signature of forwarded writes.

When a token is set, a request that changes data (PUT, DELETE on a route that takes
them) needs ``Authorization: Bearer <token>``, or a valid node signature, or else gets
401 with a JSON error and ``WWW-Authenticate: Bearer``. Reads, the change feed and the
ops routes stay open (deploy/SECURITY.md says why).

Node to node: the node a client reached checks the client's token, then forwards the
write to the owner *without* it (web/proxy.py), signed with the cluster key
``K = HMAC-SHA256(token, "kstate-cluster-v1")`` in one header::

    kstate-cluster-auth: v2 <unix seconds> <nonce: 32 hex> <hex HMAC(K, canonical)>

where ``canonical`` (:func:`canonical`) joins, one per line: the scheme name, the
timestamp, the nonce, the owner's advertised url (the target: a signature made for one
node is worthless at another), the method, the path (decoded, as the owner routes it),
the raw query, the SHA-256 of the body exactly as sent, and every value of each header
in :data:`SIGNED_HEADERS` (the headers that change what the write does: ``If-Match``
decides whether it happens, ``Content-Type`` how the body is read, the hop count and
table generation how it is routed). The signer signs the headers and body it sends.

The owner accepts a signature that verifies, whose timestamp is within ``window``
seconds of its own clock (both ways; node clocks are assumed within about a second of
each other, e.g. NTP) and not older than the moment this node bound its socket (a
restart forgets the nonces it saw), and whose nonce it has not seen (web/nonces.py).
So a captured signature is good for nothing: not for another body, method, path,
query, precondition or node, and not a second time. A client's own
``kstate-cluster-auth`` or ``kstate-hops`` header proves nothing and is never passed on.

Everything here that reads a header is total: any bytes give a verdict, never an
exception (malformed is 401, never 500).

The check is one plain function over plain values (:meth:`WriteGuard.check`), called
by the quart hook below and by the lean front (web/hot.py) at the same point: after
routing (a 404 or 405 answers as it would), before the route reads anything. Only a
write that carries a well-formed node signature needs its body first
(:meth:`WriteGuard.needs_body`): quart reads it for the check; the lean front has it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from quart import Response, request
from quart_trio import QuartTrio

from kstate.core.wire import CLUSTER_AUTH_HEADER, GENERATION_HEADER, HOPS_HEADER
from web import render
from web.nonces import NonceCache, Seen
from web.proxy import Headers, Signer
from web.request_body import too_large
from web.responses import respond
from web.user_request import scope_path

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"PUT", "DELETE", "POST", "PATCH"})
VERSION = "v2"
SCHEME = "kstate-cluster-v2"  # the first line of what is signed: no other use of K matches
# Headers whose values change what a forwarded write does; covered by the signature.
SIGNED_HEADERS = ("content-type", "if-match", HOPS_HEADER, GENERATION_HEADER)
MAX_HEADER = 128  # the longest kstate-cluster-auth value worth parsing ("v2" + 10+32+64)
NONCE_HEX = 32
MAC_HEX = 64
STAMP_DIGITS = 12  # unix seconds fit in 10 digits until the year 2286
HEX = frozenset("0123456789abcdef")
OUTSIDE_WINDOW = "outside the time window"
SKEW_LOG_EVERY = 10.0  # seconds between two warnings about signatures outside the window


def cluster_key(token: str) -> bytes:
    """The key nodes sign forwarded writes with; derived, so the token never travels
    between nodes."""
    return hmac.new(token.encode(), b"kstate-cluster-v1", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Signed:
    """What one signature covers: the request as the owner will see it."""
    target: str  # the owner's advertised host:port
    method: str
    path: str  # decoded
    query: str  # raw, latin-1
    headers: tuple[tuple[str, tuple[str, ...]], ...]  # each SIGNED_HEADERS name, its values
    body_sha256: str  # hex

    @classmethod
    def of(cls, target: str, method: str, path: str, query: str,
           headers: Iterable[tuple[str, str]], body: bytes) -> Signed:
        """The covered parts of a request; ``headers`` in order, names in any case."""
        values: dict[str, list[str]] = {name: [] for name in SIGNED_HEADERS}
        for name, value in headers:
            found = values.get(name.lower())
            if found is not None:
                found.append(value)
        return cls(target, method.upper(), path, query,
                   tuple((name, tuple(values[name])) for name in SIGNED_HEADERS),
                   hashlib.sha256(body).hexdigest())


def canonical(stamp: str, nonce: str, s: Signed) -> bytes:
    """The bytes the MAC is computed over (one field per line; header values as a JSON
    list, so neither a newline nor a comma in a value can move a boundary)."""
    lines = [SCHEME, stamp, nonce, s.target, s.method, s.path, s.query, s.body_sha256]
    lines += [name + ":" + orjson.dumps(list(values)).decode() for name, values in s.headers]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def _mac(key: bytes, stamp: str, nonce: str, s: Signed) -> str:
    return hmac.new(key, canonical(stamp, nonce, s), hashlib.sha256).hexdigest()


def sign(key: bytes, s: Signed, now: float, nonce: str | None = None) -> str:
    """The ``kstate-cluster-auth`` value for one forwarded request (a fresh random
    nonce unless given)."""
    stamp = str(int(now))
    nonce = secrets.token_hex(NONCE_HEX // 2) if nonce is None else nonce
    return f"{VERSION} {stamp} {nonce} {_mac(key, stamp, nonce, s)}"


@dataclass(frozen=True, slots=True)
class Credential:
    """A well-formed ``kstate-cluster-auth`` value, not yet verified."""
    stamp: int
    nonce: str
    mac: str


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in HEX for c in text)


def parse(header: str) -> Credential | None:
    """The parts of a ``kstate-cluster-auth`` value, or None when it is not one
    (wrong version or field count, non-ASCII, too long, not lowercase hex). Never
    raises."""
    if len(header) > MAX_HEADER or not header.isascii():
        return None
    parts = header.split(" ")
    if len(parts) != 4 or parts[0] != VERSION:
        return None
    stamp, nonce, mac = parts[1:]
    if not (0 < len(stamp) <= STAMP_DIGITS and stamp.isdigit()):
        return None
    if not _is_hex(nonce, NONCE_HEX) or not _is_hex(mac, MAC_HEX):
        return None
    return Credential(int(stamp), nonce, mac)


def serving_start(now: float) -> float:
    """When a node with a token that starts at ``now`` binds its port: the next whole
    second. Signatures carry whole seconds, so only a node that serves from the start
    of a second can tell, by the stamp alone, every signature made before it started
    (an earlier second: refused, its nonce may have been seen by the process before)
    from every one made to it (this second or later)."""
    return float(math.floor(now) + 1)


def verify(key: bytes, header: str, s: Signed, now: float, window: float,
           not_before: float = 0.0) -> Credential | str:
    """The credential in ``header`` if it is a node's signature of ``s`` made within
    ``window`` seconds of ``now`` and not before ``not_before``; else why not (one
    short phrase). The nonce is not checked here (see :class:`NonceCache`)."""
    cred = parse(header)
    if cred is None:
        return "malformed"
    # The MAC first: a time verdict is then about a real node signature (the caller
    # logs those, since node clocks that drift apart look exactly like this).
    expected = _mac(key, str(cred.stamp), cred.nonce, s)
    if not hmac.compare_digest(expected.encode(), cred.mac.encode()):
        return "does not match the request"
    if abs(now - cred.stamp) > window:
        return OUTSIDE_WINDOW
    if cred.stamp < int(not_before):
        return "made before this node started"
    return cred


def bearer_ok(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, credential = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credential.strip().encode("latin-1", "replace"), token.encode())


def unauthorized(code: str, message: str) -> render.Rendered:
    return render.error(401, code, message,
                        extra=[(b"www-authenticate", b'Bearer realm="kstate"')])


def signer(token: str) -> Signer | None:
    """What this node's proxy signs forwarded writes with (None: no token, no
    signature). Reads are not signed: no owner asks for a signature on them."""
    if not token:
        return None
    key = cluster_key(token)

    def _sign(target: str, method: str, path: str, query: str,
              headers: list[tuple[str, str]], body: bytes) -> str | None:
        if method.upper() not in WRITE_METHODS:
            return None
        return sign(key, Signed.of(target, method, path, query, headers, body), time.time())

    return _sign


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """What the check of writes needs (from HttpConfig)."""
    token: str
    url: str  # this node's advertised url: the only target it accepts
    window: float
    not_before: float  # wall clock when this node bound its socket
    max_body: int


_AUTHORIZATION = b"authorization"
_CLUSTER_AUTH = CLUSTER_AUTH_HEADER.encode()


def _first(headers: Headers, name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


class WriteGuard:
    """The token check of writes, for both servers. ``headers`` have lower-case names
    and values as received (an ASGI scope's, or the lean front's)."""

    def __init__(self, config: AuthConfig, seen: NonceCache) -> None:
        self._config = config
        self._key = cluster_key(config.token)
        self._seen = seen
        self._skew_logged = 0.0  # when the last outside-the-window warning was logged

    def needs_body(self, method: str, headers: Headers) -> bool:
        """Whether :meth:`check` needs the body: a write without a good bearer token
        whose node signature is well formed (the signature covers the body). Anything
        else is answered from the head, before a byte of the body is read."""
        if method not in WRITE_METHODS:
            return False
        if bearer_ok(_first(headers, _AUTHORIZATION), self._config.token):
            return False
        node = _first(headers, _CLUSTER_AUTH)
        return node is not None and parse(node) is not None

    def check(self, method: str, path: str, query: str, headers: Headers, body: bytes,
              client: str | None = None) -> render.Rendered | None:
        """None to go on, or the answer: 401 (no or a bad credential), 503
        ``cluster_auth_busy``. ``path`` decoded, ``query`` raw (latin-1), ``body`` the
        whole body when :meth:`needs_body` (else unused); ``client`` for the log."""
        config = self._config
        if method not in WRITE_METHODS:
            return None  # reads are open
        if bearer_ok(_first(headers, _AUTHORIZATION), config.token):
            return None
        node = _first(headers, _CLUSTER_AUTH)
        if node is None:
            return unauthorized("unauthorized",
                                "this node needs Authorization: Bearer <token> for writes")
        claimed = parse(node)
        if claimed is None:  # refused before a byte of the body is read
            return _refused("malformed")
        s = Signed.of(config.url, method, path, query,
                      [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers], body)
        now = time.time()
        verdict = verify(self._key, node, s, now, config.window, config.not_before)
        if verdict == OUTSIDE_WINDOW and now - self._skew_logged > SKEW_LOG_EVERY:
            self._skew_logged = now
            log.warning("event=cluster_auth_outside_window skew_s=%.0f window_s=%.0f "
                        "client=%r detail=%r", now - claimed.stamp, config.window, client,
                        "a node signature (or a replay of an old one); check that node "
                        "clocks agree")
        if isinstance(verdict, str):
            return _refused(verdict)
        match self._seen.admit(verdict.stamp, verdict.nonce, now):
            case Seen.FRESH:
                return None
            case Seen.REPLAYED:
                return _refused("already used (a replay)")
            case Seen.FULL:
                log.warning("event=cluster_auth_cache_full capacity=%d", self._seen.capacity)
                return render.error(
                    503, "cluster_auth_busy", "too many forwarded writes in the signature "
                    "window to remember them all; retry", retry_after=1)


def write_guard(config: AuthConfig, seen: NonceCache | None) -> WriteGuard | None:
    """The guard of a node with an API token; None without one (nothing to check)."""
    if not config.token:
        return None
    if seen is None:
        raise ValueError("an API token needs a replay cache")
    return WriteGuard(config, seen)


async def _read_body(max_body: int) -> bytes:
    """The whole request body (413 above ``max_body``), put back for the route: a
    signed write's body must be hashed before the route runs."""
    if (request.content_length or 0) > max_body:
        raise too_large(max_body)
    data = bytearray()
    async for chunk in request.body:
        data += chunk
        if len(data) > max_body:
            raise too_large(max_body)
    body = request.body_class(len(data), None)
    body.set_result(bytes(data))
    request.body = body
    return bytes(data)


def register(app: QuartTrio, config: AuthConfig, seen: NonceCache | None) -> None:
    """With an API token set: check writes before they run (:class:`WriteGuard`),
    remembering the nonces of node signatures in ``seen``. Without one: nothing."""
    guard = write_guard(config, seen)
    if guard is None:
        return

    @app.before_request
    async def _authorize() -> Response | None:
        if request.url_rule is None:
            return None  # 404/405 answer as they would
        # the scope's headers: quart's request.headers adds a Remote-Addr of its own
        headers = [(bytes(k).lower(), bytes(v)) for k, v in request.scope["headers"]]
        body = b""
        if guard.needs_body(request.method, headers):
            body = await _read_body(config.max_body)
        refused = guard.check(request.method, scope_path(request.scope),
                              request.query_string.decode("latin-1"), headers, body,
                              request.remote_addr)
        return None if refused is None else respond(refused)


def _refused(why: str) -> render.Rendered:
    return unauthorized("invalid_cluster_auth",
                        f"{CLUSTER_AUTH_HEADER} is not a valid node signature: {why}")
