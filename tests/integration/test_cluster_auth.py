"""The API token and node signatures over real HTTP against real nodes.

Two nodes share a token (one from the env var, one from a file). Writes need the token;
a node forwards a write to its owner signed (web/auth.py), and the owner accepts the
signature once, for exactly that request, target and moment: a replayed signature, one
moved to another body, If-Match, path, query, method or node, a stale one, one made
before the owner (re)started and any malformed value are each a 401 JSON, never a 500,
and write nothing."""

from __future__ import annotations

import re
import secrets
import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from kstate.core.partitioner import partition_for
from tools import topic as load
from tools.procs import Node, wait_ready, wait_stable
from web.auth import Signed, cluster_key, sign

PARTITIONS = 10


def _owned(table: dict[str, str], url: str, prefix: str) -> str:
    mine = {int(k.rpartition("-")[2]) for k, v in table.items() if v == url}
    i = 0
    while partition_for(f"{prefix}{i}@example.com".encode(), PARTITIONS) not in mine:
        i += 1
    return f"{prefix}{i}@example.com"


def _assert_401(r: httpx.Response, code: str, why: str = "") -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["error"] == code, doc
    assert why in doc["message"], doc


def _body(email: str, name: str) -> bytes:
    return orjson.dumps({"name": name, "email": email})


class Cluster:
    """Two nodes with one token; ``b`` owns ``key`` and ``key2``."""

    def __init__(self, a: Node, b: Node, token: str, key: str, key2: str) -> None:
        self.a, self.b, self.token = a, b, token
        self.key, self.key2 = key, key2
        self.cluster_key = cluster_key(token)

    def signed(self, target: Node, method: str, path: str, query: str = "",
               headers: dict[str, str] | None = None, body: bytes = b"",
               now: float | None = None) -> dict[str, str]:
        """Headers of a request a node would forward, signed for ``target`` (what a
        captured forward looks like)."""
        headers = dict(headers or {})
        s = Signed.of(target.url, method, path, query, list(headers.items()), body)
        stamp = time.time() if now is None else now
        return {**headers, "kstate-cluster-auth": sign(self.cluster_key, s, stamp)}


@pytest.fixture
async def cluster(make_node, client, tmp_path: Path) -> Cluster:
    token = "tok-" + secrets.token_hex(16)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    a = make_node(KSTATE_API_TOKEN=token)
    await wait_ready(client, a)  # the first node creates the topic
    b = make_node(KSTATE_API_TOKEN_FILE=str(token_file))
    table = await wait_stable(client, [a, b], PARTITIONS)
    return Cluster(a, b, token, _owned(table, b.url, "owned-by-b"),
                   _owned(table, b.url, "also-b"))


async def test_writes_need_the_token_and_forwards_are_signed(cluster: Cluster, client):
    a, b, key = cluster.a, cluster.b, cluster.key
    good = {"Authorization": f"Bearer {cluster.token}"}
    path = f"/users/{quote(key, safe='')}"
    # Through the node that does not own the key: forwarded, signed, accepted.
    r = await client.put(f"{a.base}{path}", json={"name": "B"}, headers=good)
    assert r.status_code == 201, r.text
    etag = r.headers["etag"]
    # If-Match is signed as sent: a match is applied, a mismatch is the owner's 412.
    r = await client.put(f"{a.base}{path}", json={"name": "B2"},
                         headers={**good, "If-Match": etag})
    assert r.status_code == 200, r.text
    r = await client.put(f"{a.base}{path}", json={"name": "B3"},
                         headers={**good, "If-Match": etag})
    assert r.status_code == 412, r.text
    # The seed route signs its query; a form body is forwarded and signed as it is.
    r = await client.put(f"{a.base}/user", params={"email": key},
                         content=b'{"name":"Seed"}', headers=good)
    assert r.status_code == 200, r.text
    r = await client.get(f"{b.base}{path}")  # reads stay open
    assert r.content == load.user_bytes(key, "Seed")
    r = await client.delete(f"{a.base}{path}", headers=good)
    assert r.status_code == 204, r.text
    assert (await client.get(f"{a.base}{path}")).status_code == 404

    # Without the token, or with another, every write is refused, on either node.
    for node in (a, b):
        _assert_401(await client.put(f"{node.base}{path}", json={"name": "X"}),
                    "unauthorized")
        _assert_401(await client.delete(f"{node.base}{path}"), "unauthorized")
        _assert_401(await client.put(f"{node.base}{path}", json={"name": "X"},
                                     headers={"Authorization": "Bearer wrong-token-123456"}),
                    "unauthorized")
        _assert_401(await client.put(f"{node.base}/user", json={"name": "X", "email": key}),
                    "unauthorized")
        _assert_401(await client.put(f"{node.base}{path}", json={"name": "X"},
                                     headers={"kstate-hops": "1"}), "unauthorized")
    r = await client.post(f"{a.base}{path}", json={"name": "X"})
    assert r.status_code == 405  # unknown methods answer as without a token
    for node in (a, b):
        assert cluster.token not in node.log_text()


async def test_a_captured_signature_authorizes_nothing_else(cluster: Cluster, client):
    a, b, key, key2 = cluster.a, cluster.b, cluster.key, cluster.key2
    path, path2 = f"/users/{key}", f"/users/{key2}"
    json_type = {"content-type": "application/json"}
    body = _body(key, "Original")
    url = f"{b.base}{path}"

    # The genuine request, once: accepted.
    captured = cluster.signed(b, "PUT", path, headers=json_type, body=body)
    r = await client.put(url, content=body, headers=captured)
    assert r.status_code == 201, r.text
    etag = r.headers["etag"]
    # Replayed as it is: refused.
    _assert_401(await client.put(url, content=body, headers=captured),
                "invalid_cluster_auth", "already used")

    def fresh(**kw: object) -> dict[str, str]:  # a new capture of the genuine request
        return cluster.signed(b, "PUT", path, headers=json_type, body=body, **kw)  # type: ignore[arg-type]

    altered = {
        "body": lambda: client.put(url, content=_body(key, "Evil"), headers=fresh()),
        "if-match added": lambda: client.put(url, content=body,
                                             headers={**fresh(), "If-Match": etag}),
        "path": lambda: client.put(f"{b.base}{path2}", content=_body(key2, "Original"),
                                   headers=fresh()),
        "query": lambda: client.put(url, params={"email": key2}, content=body,
                                    headers=fresh()),
        "method": lambda: client.delete(url, headers=fresh()),
        "content-type": lambda: client.put(url, content=body,
                                           headers={**fresh(), "content-type": "text/plain"}),
        "hops": lambda: client.put(url, content=body, headers={**fresh(), "kstate-hops": "2"}),
        "re-targeted": lambda: client.put(f"{a.base}{path}", content=body, headers=fresh()),
        "stale": lambda: client.put(url, content=body, headers=fresh(now=time.time() - 120)),
        "from the future": lambda: client.put(url, content=body,
                                              headers=fresh(now=time.time() + 120)),
    }
    for what, send in altered.items():
        r = await send()
        assert r.status_code == 401, (what, r.status_code, r.text)
        _assert_401(r, "invalid_cluster_auth")
    # If-Match signed one way and sent another.
    with_match = cluster.signed(b, "PUT", path, headers={**json_type, "If-Match": etag},
                                body=_body(key, "Matched"))
    _assert_401(await client.put(url, content=_body(key, "Matched"),
                                 headers={**with_match, "If-Match": '"0-0"'}),
                "invalid_cluster_auth", "does not match")
    # A signature made for node a is worthless at b.
    _assert_401(await client.put(url, content=body,
                                 headers=cluster.signed(a, "PUT", path, headers=json_type,
                                                        body=body)),
                "invalid_cluster_auth", "does not match")
    r = await client.get(url)
    assert r.content == load.user_bytes(key, "Original")  # none of them wrote
    assert (await client.get(f"{b.base}{path2}")).status_code == 404
    # The genuine If-Match request, once, is fine.
    r = await client.put(url, content=_body(key, "Matched"), headers=with_match)
    assert r.status_code == 200, r.text
    metrics = (await client.get(f"{b.base}/metrics")).text
    assert "kstate_cluster_auth_replays_total 1.0" in metrics


def _raw_put(node: Node, path: str, header: bytes, body: bytes = b'{"name":"X"}') -> bytes:
    """One PUT with a raw kstate-cluster-auth value; the raw answer head."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(b"PUT " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                     b"kstate-cluster-auth: " + header + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


async def test_malformed_node_signatures_are_401_never_500(cluster: Cluster, client):
    b, key = cluster.b, cluster.key
    path = f"/users/{key}"
    nonce, mac = "0" * 32, "a" * 64
    now = str(int(time.time()))
    values = [
        "v1 ² x".encode(), b"v2 \xc2\xb2 " + nonce.encode() + b" " + mac.encode(),
        f"v2 {now} {nonce}".encode(), f"v2 {now} {nonce} {mac} more".encode(),
        b"v2", b"", b"   ", f"v2 {now}{nonce} {mac}".encode(), b"\xff\xfe\x00\x01"[:2],
        f"v1 {now} deadbeef".encode(), f"v2 {'9' * 40} {nonce} {mac}".encode(),
        f"v2 -5 {nonce} {mac}".encode(), f"v2 {now} {nonce.upper()} {mac}".encode(),
        b"v2 " + b"1" * 8000, "v2 ٣٣٣ x y".encode(),
    ]
    for value in values:
        head = _raw_put(b, path, value)
        status = head.split(b" ", 2)[1]
        assert status == b"401", (value[:60], head[:300])
        assert b'"error":"invalid_cluster_auth"' in head or b'"error":"unauthorized"' in head
    # Through httpx too.
    r = await client.put(f"{b.base}{path}", json={"name": "X"},
                         headers={"kstate-cluster-auth": "v1 ² x".encode()})
    _assert_401(r, "invalid_cluster_auth", "malformed")
    # A head too large for the server is refused by it before kstate sees it: never 500.
    head = _raw_put(b, path, b"v2 " + b"1" * 20_000)
    assert head.split(b" ", 2)[1] in (b"400", b"401", b"413", b"431"), head[:200]
    assert (await client.get(f"{b.base}{path}")).status_code == 404
    assert "Traceback" not in b.log_text()


async def test_a_restarted_owner_refuses_signatures_made_before_it_started(
        cluster: Cluster, client):
    b, key = cluster.b, cluster.key
    path = f"/users/{key}"
    body = _body(key, "Before")
    captured = cluster.signed(b, "PUT", path, headers={"content-type": "application/json"},
                              body=body)
    b.stop_now()  # its replay cache is gone with it
    b.start()
    await wait_ready(client, b, timeout=60)
    r = await client.put(f"{b.base}{path}", content=body, headers=captured)
    _assert_401(r, "invalid_cluster_auth", "before this node started")
    assert (await client.get(f"{b.base}{path}")).status_code == 404
    # Whatever the timing above: a signature made a moment before the node bound its
    # port (in the same second, once a CI failure) is refused too; one made now is not.
    started = re.findall(r"event=node_started .* bound_at=([0-9.]+)", b.log_text())
    bound_at = float(started[-1])
    path2, body2 = f"/users/{cluster.key2}", _body(cluster.key2, "Now")
    headers = {"content-type": "application/json"}
    r = await client.put(f"{b.base}{path2}", content=body2, headers=cluster.signed(
        b, "PUT", path2, headers=headers, body=body2, now=bound_at - 0.001))
    _assert_401(r, "invalid_cluster_auth", "before this node started")
    r = await client.put(f"{b.base}{path2}", content=body2, headers=cluster.signed(
        b, "PUT", path2, headers=headers, body=body2))
    assert r.status_code == 201, r.text
