"""Issue 4: internal-hop safety. Nothing a client sends chooses where a node forwards
a request: only urls of the routing table are targets. A request that has already
been forwarded ``kstate-hops: 3`` times is refused (503 + Retry-After), not forwarded
again, so a disagreement between routing tables can never loop.

A trap server listens on a free port; requests name it every way a client could
(Host, X-Forwarded-Host, Forwarded, an absolute-form request target): it must never
see a connection, and the answer must come from the real owner.
"""

from __future__ import annotations

import random
from functools import partial

import httpx
import trio

from actors.router import TABLE_WAIT
from kstate.core.partitioner import partition_for
from tests.support.workload import Workload, load_users
from tools.procs import wait_ready, wait_stable

PARTITIONS = 10


async def raw_request(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        with trio.fail_after(15):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
        return data


async def test_client_headers_never_choose_the_forward_target(make_node, client):
    a, b = make_node(), make_node()
    for n in (a, b):
        await wait_ready(client, n)
    table = await wait_stable(client, [a, b], PARTITIONS)
    topic = next(iter(table)).rsplit("-", 1)[0]
    wl = Workload(client, rng=random.Random(7))
    emails = [f"h{i}@hops.example" for i in range(40)]
    await load_users(wl, [a.base], emails)

    def owner(email: str) -> str:
        return table[f"{topic}-{partition_for(email.encode(), PARTITIONS)}"]

    remote = next(e for e in emails if owner(e) == b.url)  # lives on B
    local = next(e for e in emails if owner(e) == a.url)  # lives on A
    want = wl.known[remote].value

    # 0. A forwarded answer is the owner's answer: status, headers and body, each
    #    header once (the forwarding node's server must not add a second Date/Server).
    def shape(r: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in r.headers.multi_items() if k != "date")

    for path in (f"/users/{remote}", f"/user?email={remote}", "/users/nobody@hops.example"):
        direct = await client.get(f"{b.base}{path}")
        via = await client.get(f"{a.base}{path}")
        assert (via.status_code, via.content) == (direct.status_code, direct.content), path
        assert shape(via) == shape(direct), path
        assert len(via.headers.get_list("date")) == 1, via.headers
        assert via.headers["content-length"] == str(len(via.content)), via.headers

    trap_hits: list[bytes] = []

    async def trap(stream: trio.SocketStream) -> None:
        trap_hits.append(await stream.receive_some(4096))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, trap, 0, host="127.0.0.1"))
        trap_port = listeners[0].socket.getsockname()[1]
        evil = f"127.0.0.1:{trap_port}"

        # 1. Hostile headers on a key A must forward: answered by B, the real owner.
        for headers in ({"Host": evil}, {"X-Forwarded-Host": evil},
                        {"Forwarded": f"host={evil}"}, {"kstate-owner": evil},
                        {"kstate-hops": "banana"}, {"kstate-hops": "-7"}):
            r = await client.get(f"{a.base}/users/{remote}", headers=headers)
            assert r.status_code == 200, (headers, r.status_code, r.text)
            assert r.content == want, headers
        r = await client.get(f"{a.base}/user", params={"email": remote},
                             headers={"Host": evil})
        assert (r.status_code, r.content) == (200, want)

        # 2. An absolute-form request target naming the trap (what a proxy client
        #    sends): still routed by the table, never to the trap.
        raw = (f"GET http://{evil}/users/{remote} HTTP/1.1\r\nHost: {evil}\r\n"
               f"Connection: close\r\n\r\n").encode()
        answer = await raw_request(a.port, raw)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
        if b" 200 " in status_line:
            assert want in answer.split(b"\r\n\r\n", 1)[1], answer
        else:
            assert status_line.split()[1].startswith(b"4"), answer[:300]

        # 3. A request already forwarded three times is refused, not forwarded again.
        with trio.fail_after(3):  # refused at once, not after a round of forwards
            r = await client.get(f"{a.base}/users/{remote}", headers={"kstate-hops": "3"})
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after"), r.headers
        assert r.json()["error"] == "too_many_hops", r.text
        r = await client.get(f"{a.base}/users/{remote}", headers={"kstate-hops": "999999999"})
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after"), r.headers
        # ... a write too, and it is not applied anywhere
        r = await client.put(f"{a.base}/users/{remote}", headers={"kstate-hops": "3"},
                             json={"name": "Looped", "email": remote})
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after"), r.headers
        for n in (a, b):
            r = await client.get(f"{n.base}/users/{remote}")
            assert (r.status_code, r.content) == (200, want)
        # A key the node owns is served locally whatever the hop count says.
        r = await client.get(f"{a.base}/users/{local}", headers={"kstate-hops": "3"})
        assert (r.status_code, r.content) == (200, wl.known[local].value)

        # One hop below the limit is still forwarded (the limit is not off by one).
        r = await client.get(f"{a.base}/users/{remote}", headers={"kstate-hops": "2"})
        assert (r.status_code, r.content) == (200, want)

        # 4. A request forwarded by a node with a newer table generation waits for
        #    this node's next table (bounded) instead of going back by the old one;
        #    the same or an older generation, or garbage, does not wait.
        generation = int((await client.get(f"{a.base}/groupinfo")).headers["kstate-generation"])
        for value in (str(generation), str(generation - 1), "banana"):
            with trio.fail_after(1.5):
                r = await client.get(f"{a.base}/users/{remote}",
                                     headers={"kstate-hops": "1", "kstate-generation": value})
            assert (r.status_code, r.content) == (200, want), value
        started = trio.current_time()
        r = await client.get(f"{a.base}/users/{remote}",
                             headers={"kstate-hops": "1", "kstate-generation": str(generation + 5)})
        waited = trio.current_time() - started
        assert (r.status_code, r.content) == (200, want)  # then routed by its own table
        assert TABLE_WAIT - 0.1 <= waited < TABLE_WAIT + 3, waited

        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert trap_hits == [], trap_hits
