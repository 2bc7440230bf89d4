"""The wire contract: every name, format and quoting rule that crosses HTTP between a
client, a node and its peers, defined once. The server, the forwarding proxy and the
public client import these; nothing else spells them.
"""

from __future__ import annotations

import urllib.parse

import orjson

SEED_ROUTE = "/user"  # the seed's API: GET|PUT|DELETE /user?email=E
REST_PREFIX = "/users/"  # REST: GET|PUT|DELETE /users/{email}
GROUPINFO_ROUTE = "/groupinfo"

# Node to node. How many times a request was forwarded (loops end at MAX_HOPS).
HOPS_HEADER = "kstate-hops"
MAX_HOPS = 3
# The forwarding node's routing-table generation: a node whose own table is older waits
# for its next table instead of sending the request back. /groupinfo sends it too.
GENERATION_HEADER = "kstate-generation"
# /groupinfo: the topic's partition count, so that a client can tell a table without
# its last partitions from a complete one (kstate/client/_table.py).
PARTITIONS_HEADER = "kstate-partitions"
# A node's signature of a write it forwards (web/auth.py).
CLUSTER_AUTH_HEADER = "kstate-cluster-auth"

# RFC 3986 sub-delims plus ':' and '@' (unreserved characters are never quoted):
# what may stay as it is inside one path segment. An email is one segment, so '/',
# '%', '?' and '#' in it are percent-encoded.
SEGMENT_SAFE = "@!$&'()*+,;=:"
# A whole path: segments and the '/' between them.
PATH_SAFE = "/" + SEGMENT_SAFE

JSON = "application/json"


def user_path(email: str) -> str:
    """``/users/{email}``, the email percent-encoded as one path segment."""
    return REST_PREFIX + urllib.parse.quote(email, safe=SEGMENT_SAFE)


def quote_path(path: str) -> str:
    """A decoded path encoded again for the request line: a '%41', '?' or '#' that an
    email contained must reach the next node as the same key, not another one."""
    return urllib.parse.quote(path, safe=PATH_SAFE)


def etag(partition: int, offset: int) -> str:
    """The ETag of a stored version: ``"<partition>-<offset>"`` (quotes included)."""
    return f'"{partition}-{offset}"'


def parse_etag(value: str) -> tuple[int, int] | None:
    """(partition, offset) of an ETag this module made, else None. Never raises: the
    lengths are checked before ``int()``, which refuses over 4,300 digits."""
    text = value.strip()
    if len(text) < 5 or text[0] != '"' or text[-1] != '"':
        return None
    p, sep, o = text[1:-1].partition("-")
    if not sep or not p.isascii() or not o.isascii() or not p.isdigit() or not o.isdigit():
        return None
    if len(p) > 10 or len(o) > 19:  # past int32 / int64: no ETag of ours
        return None
    return int(p), int(o)


def error_body(code: str, message: str) -> bytes:
    """Every error answer's body: ``{"error": code, "message": text}``."""
    return orjson.dumps({"error": code, "message": message})


def retry_after_value(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, round(seconds)))


def parse_hops(raw: str | None) -> int:
    """The ``kstate-hops`` count a request carries (0 when absent or not a number)."""
    if not raw:
        return 0
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        return 0
    return int(text) if len(text) <= 18 else 10**18


def parse_generation(raw: str | None) -> int | None:
    """The forwarding node's ``kstate-generation``, if this request was forwarded."""
    if not raw:
        return None
    text = raw.strip()
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return -int(digits) if negative else int(digits)
