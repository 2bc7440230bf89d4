"""The lean front (web/hot.py) answers a live node's user routes: a GET and a HEAD of
the same URL agree (status, type, length, ETag), local reads are counted under the
quart rule's label. tests/unit/test_hot.py compares the lean answers with quart's."""

from __future__ import annotations

import pytest

from tools.procs import wait_ready

URLS = ["/users/fast%2Bpath@example.com", "/user?email=fast%2Bpath@example.com",
        "/users/missing@example.com", "/user?email=miss%22ing@example.com"]


@pytest.mark.parametrize("path", URLS)
async def test_hot_get_matches_its_head(make_node, client, path):
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
