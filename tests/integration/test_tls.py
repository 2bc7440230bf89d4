"""TLS end to end, with certificates made by deploy/tls/make-certs.sh: two nodes whose
one port speaks HTTPS only (API, dashboard, /cluster, wss feed), a client that
verifies them, a write forwarded between them over TLS (verified with the CA), and a
node that refuses a peer whose certificate its CA did not sign: the forwarded request
is answered 503 owner_not_reached (never a 500) and /cluster reports the peer
unreachable."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from kstate.client import KstateClient
from kstate.core.partitioner import partition_for
from tools import topic as load
from tools.procs import REPO, Node, wait_ready, wait_stable

PARTITIONS = 10
MAKE_CERTS = REPO / "deploy" / "tls" / "make-certs.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two folders of make-certs.sh output: two CAs, each with a localhost server cert."""
    out = []
    for name in ("good", "other"):
        folder = tmp_path_factory.mktemp(f"tls-{name}")
        subprocess.run([str(MAKE_CERTS), str(folder)], check=True, capture_output=True,
                       timeout=120)
        out.append(folder)
    return out[0], out[1]


def tls_env(folder: Path, ca: Path | None = None) -> dict[str, str]:
    return {"KSTATE_TLS_CERTFILE": str(folder / "server.pem"),
            "KSTATE_TLS_KEYFILE": str(folder / "server-key.pem"),
            "KSTATE_TLS_CAFILE": str(ca or folder / "ca.pem")}


def trusting(*cas: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for ca in cas:
        ctx.load_verify_locations(ca)
    return ctx


def owned_by(table: dict[str, str], url: str, prefix: str) -> str:
    mine = {int(k.rpartition("-")[2]) for k, v in table.items() if v == url}
    i = 0
    while partition_for(f"{prefix}{i}@example.com".encode(), PARTITIONS) not in mine:
        i += 1
    return f"{prefix}{i}@example.com"


async def test_two_nodes_over_tls_serve_forward_and_stream(make_node, certs):
    good, _ = certs
    ctx = trusting(good / "ca.pem")
    async with httpx.AsyncClient(verify=ctx, timeout=10, trust_env=False) as client:
        a = make_node(**tls_env(good))
        assert a.base.startswith("https://")
        await wait_ready(client, a)  # the first node creates the topic
        b = make_node(**tls_env(good))
        table = await wait_stable(client, [a, b], PARTITIONS)
        key_a, key_b = owned_by(table, a.url, "on-a"), owned_by(table, b.url, "on-b")

        # A write to B's key through A crosses node to node over TLS.
        r = await client.put(f"{a.base}/users/{quote(key_b)}", json={"name": "Bee"})
        assert r.status_code == 201, r.text
        for node in (a, b):
            r = await client.get(f"{node.base}/user", params={"email": key_b})
            assert r.status_code == 200, r.text
            assert r.content == load.user_bytes(key_b, "Bee")
        r = await client.put(f"{b.base}/users/{quote(key_a)}", json={"name": "Ay"})
        assert r.status_code == 201, r.text
        # Forwarded GETs then take A's pipelined link to B, over TLS too.
        gets = 0
        with trio.fail_after(10):
            while "kstate_proxy_pipelined_total 0.0" in (
                    await client.get(f"{a.base}/metrics")).text:
                r = await client.get(f"{a.base}/users/{quote(key_b)}")
                assert r.content == load.user_bytes(key_b, "Bee")
                gets += 1
        metrics = (await client.get(f"{a.base}/metrics")).text
        # the PUT and the GETs
        assert f"kstate_proxy_forwarded_total {2 + gets}.0" in metrics
        assert "kstate_proxy_failures_total 0.0" in metrics
        assert "kstate_proxy_links_failed_total 0.0" in metrics

        # The dashboard and /cluster (which asks B over TLS) answer on the same port.
        r = await client.get(f"{a.base}/")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        doc = (await client.get(f"{a.base}/cluster")).json()
        assert {m["url"]: m["status"] for m in doc["members"]} == {a.url: "ready",
                                                                   b.url: "ready"}

        # The change feed over wss.
        async with open_websocket_url(f"wss://{a.url}/changes?from=beginning",
                                      ssl_context=ctx) as ws:
            hello = json.loads(await ws.get_message())
            assert hello["type"] == "hello"
            seen = set()
            with trio.fail_after(10):
                while not {key_a, key_b} <= seen:
                    seen.add(json.loads(await ws.get_message()).get("key"))

        # The routing-aware client speaks HTTPS too.
        async with KstateClient([a.url], tls=ctx) as kc:
            await kc.put("kc@example.com", "Client")
            assert await kc.get("kc@example.com") == {"name": "Client",
                                                       "email": "kc@example.com"}

    # Plain HTTP on a TLS port gets nothing; a client that does not trust the CA
    # does not get through either.
    async with httpx.AsyncClient(timeout=5, trust_env=False) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get(f"http://{a.url}/healthz")
    async with httpx.AsyncClient(timeout=5, trust_env=False,
                                 verify=ssl.create_default_context()) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get(f"{a.base}/healthz")
    for node in (a, b):
        assert "Traceback" not in node.log_text()


async def test_a_peer_whose_certificate_is_not_trusted_is_not_reached(make_node, certs):
    good, other = certs
    ctx = trusting(good / "ca.pem", other / "ca.pem")
    async with httpx.AsyncClient(verify=ctx, timeout=10, trust_env=False) as client:
        a = make_node(**tls_env(good))  # trusts only the good CA
        await wait_ready(client, a)
        b = make_node(**tls_env(other))  # its certificate comes from the other CA
        table = await wait_stable(client, [a, b], PARTITIONS)
        key_b = owned_by(table, b.url, "on-b")
        for method, body in (("GET", None), ("PUT", {"name": "X"}), ("DELETE", None)):
            r = await client.request(method, f"{a.base}/users/{quote(key_b)}", json=body)
            assert r.status_code == 503, (method, r.status_code, r.text)
            assert r.json()["error"] == "owner_not_reached", r.text
            assert r.headers["retry-after"].isdigit()
        # B never saw them: the key does not exist there.
        r = await client.get(f"{b.base}/users/{quote(key_b)}")
        assert r.status_code == 404
        doc = (await client.get(f"{a.base}/cluster")).json()
        status = {m["url"]: m for m in doc["members"]}
        assert status[b.url]["status"] == "unreachable"
        assert "CERTIFICATE_VERIFY_FAILED" in status[b.url]["error"] or \
            "certificate" in status[b.url]["error"].lower(), status[b.url]["error"]
    assert "Traceback" not in a.log_text()
    assert isinstance(a, Node)
