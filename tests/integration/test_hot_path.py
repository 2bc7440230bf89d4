"""The lean front (web/hot.py) answers a live node's user routes: a GET and a HEAD of
the same URL agree (status, type, length, ETag), local reads are counted under the
quart rule's label. tests/unit/test_hot.py compares the lean answers with quart's."""

from __future__ import annotations

import pytest

from tools.procs import wait_ready

# URL -> its status: the first two decode to the key the test creates (an escaped "+",
# which a query string would otherwise read as a space), the others to keys never written
URLS = {"/users/fast%2Bpath@example.com": 200, "/user?email=fast%2Bpath@example.com": 200,
        "/users/missing@example.com": 404, "/user?email=miss%22ing@example.com": 404}


@pytest.mark.parametrize(("path", "status"), URLS.items())
async def test_hot_get_matches_its_head(make_node, client, path, status):
    node = make_node()
    await wait_ready(client, node)
    r = await client.put(f"{node.base}/users/fast+path@example.com",
                         json={"name": "Fäst \"Path\""})
    assert r.status_code == 201
    got = await client.get(node.base + path)
    head = await client.head(node.base + path)
    assert got.status_code == head.status_code
    assert got.status_code == status, (got.status_code, got.text)
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
