"""web/fast.py answers local GETs without quart; it must answer exactly what the quart
route answers. HEAD of the same URL always goes through quart: same status and headers."""

from __future__ import annotations

import pytest

from tools.procs import wait_ready

URLS = ["/users/fast%2Bpath@example.com", "/user?email=fast%2Bpath@example.com",
        "/users/missing@example.com", "/user?email=miss%22ing@example.com"]


@pytest.mark.parametrize("path", URLS)
async def test_fast_get_matches_quart_head(make_node, client, path):
    node = make_node()
    await wait_ready(client, node)
    r = await client.put(f"{node.base}/users/fast+path@example.com",
                         json={"name": "Fäst \"Path\""})
    assert r.status_code == 201
    got = await client.get(node.base + path)
    head = await client.head(node.base + path)
    assert got.status_code == head.status_code
    assert got.status_code in (200, 404)
    for name in ("content-type", "content-length", "etag"):
        assert got.headers.get(name) == head.headers.get(name), name
    if got.status_code == 200:
        assert got.content == r.content
        assert got.headers["etag"] == r.headers["etag"]
    else:
        assert got.json()["error"] == "not_found"
    metrics = (await client.get(f"{node.base}/metrics")).text
    route = "/user" if path.startswith("/user?") else "/users/<path:email>"
    assert f'method="GET",route="{route}",status="{got.status_code}"' in metrics
