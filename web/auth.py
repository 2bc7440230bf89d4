"""The optional API token (``--api-token`` / ``KSTATE_API_TOKEN``).

When it is set, a request that changes data (PUT, DELETE on a route that takes them)
needs ``Authorization: Bearer <token>``, or else gets 401 with a JSON error and
``WWW-Authenticate: Bearer``. Reads, the change feed and the ops routes stay open.

Node to node: the node a client reached checks the client's token, then forwards the
write to the owner *without* it (web/proxy.py, :func:`signer`), signed with the cluster key
``HMAC-SHA256(token, "kstate-cluster-v1")`` in the header::

    kstate-cluster-auth: v1 <unix seconds t> <hex HMAC(cluster key, t METHOD path query)>

(the four joined by newlines).

The owner accepts a signature that verifies and is at most :data:`MAX_SKEW` seconds old
(or ahead). Only holders of the token can make one; a client's own ``kstate-cluster-auth``
or ``kstate-hops`` header proves nothing and is never passed on by a node. A captured
signature only replays the same method, path and query within the window — and the
token itself crosses the network in the clear unless TLS is put in front of the nodes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from quart import Response, request
from quart_trio import QuartTrio

from kstate.core.wire import CLUSTER_AUTH_HEADER
from web import render
from web.proxy import Headers, Signer
from web.responses import respond

WRITE_METHODS = frozenset({"PUT", "DELETE", "POST", "PATCH"})
MAX_SKEW = 300.0  # seconds a node signature stays valid (clock skew + proxy timeout)
VERSION = "v1"


def cluster_key(token: str) -> bytes:
    """The key nodes sign forwarded writes with; derived, so the token never travels
    between nodes."""
    return hmac.new(token.encode(), b"kstate-cluster-v1", hashlib.sha256).digest()


def _mac(key: bytes, stamp: str, method: str, path: str, query: str) -> str:
    text = f"{stamp}\n{method.upper()}\n{path}\n{query}".encode("utf-8", "surrogateescape")
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, path: str, query: str, now: float) -> str:
    """The ``kstate-cluster-auth`` value for one forwarded request."""
    stamp = str(int(now))
    return f"{VERSION} {stamp} {_mac(key, stamp, method, path, query)}"


def verify(key: bytes, header: str, method: str, path: str, query: str, now: float) -> bool:
    """Whether ``header`` is a node's signature of this request, made within MAX_SKEW."""
    parts = header.split(" ")
    if len(parts) != 3 or parts[0] != VERSION or not parts[1].isdigit():
        return False
    if abs(now - int(parts[1])) > MAX_SKEW:
        return False
    return hmac.compare_digest(parts[2], _mac(key, parts[1], method, path, query))


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
    """What this node's proxy signs forwarded requests with (None: no token, no
    signature)."""
    if not token:
        return None
    key = cluster_key(token)

    def _sign(method: str, path: str, query: str) -> str:
        return sign(key, method, path, query, time.time())

    return _sign


# (method, decoded path, raw query, headers, body) -> None (go on) or the 401 to answer.
Check = Callable[[str, str, str, Headers, bytes], render.Rendered | None]
_AUTHORIZATION = b"authorization"
_CLUSTER_AUTH = CLUSTER_AUTH_HEADER.encode()


def _first(headers: Headers, name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def write_check(token: str) -> Check | None:
    """The check of a request to a route that exists (a 404 or 405 answers as it
    would, before this), as a plain function both servers call: the quart hook below
    and the lean front (web/hot.py). None without a token: nothing to check.
    ``headers`` have lower-case names; ``body`` is the request body (the v1 signature
    does not cover it)."""
    if not token:
        return None
    key = cluster_key(token)

    def check(method: str, path: str, query: str, headers: Headers, body: bytes
              ) -> render.Rendered | None:
        if method not in WRITE_METHODS:
            return None  # reads are open
        if bearer_ok(_first(headers, _AUTHORIZATION), token):
            return None
        node = _first(headers, _CLUSTER_AUTH)
        if node is not None:
            if verify(key, node, method, path, query, time.time()):
                return None
            return unauthorized("invalid_cluster_auth",
                                f"{CLUSTER_AUTH_HEADER} is not a valid node signature")
        return unauthorized("unauthorized",
                            "this node needs Authorization: Bearer <token> for writes")

    return check


def register(app: QuartTrio, token: str) -> None:
    """With an API token set: check writes before they run. Without one: nothing."""
    check = write_check(token)
    if check is None:
        return

    @app.before_request
    async def _authorize() -> Response | None:
        if request.url_rule is None:
            return None  # 404/405 answer as they would
        headers = [(bytes(k).lower(), bytes(v)) for k, v in request.scope["headers"]]
        refused = check(request.method, request.path, request.query_string.decode("latin-1"),
                        headers, b"")
        return None if refused is None else respond(refused)
