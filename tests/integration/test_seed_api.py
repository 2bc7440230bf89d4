"""Issue 3: the seed's curl transcript, byte for byte, over real HTTP."""

from __future__ import annotations

import pytest

from tools.procs import wait_ready

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)


async def test_seed_transcript(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    base = node.base
    # curl -d sends application/x-www-form-urlencoded; the seed relied on that.
    r = await client.put(f"{base}/user",
                         content=b'{"name":"Bob Davis","email":"bob_smith@example.com"}',
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    r = await client.get(f"{base}/user", params={"email": "bob_smith@example.com"})
    assert r.status_code == 200
    assert r.content == b'{"name":"Bob Davis","email":"bob_smith@example.com"}'
    r = await client.delete(f"{base}/user", params={"email": "bob_smith@example.com"})
    assert r.status_code == 200
    r = await client.get(f"{base}/user", params={"email": "bob_smith@example.com"})
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
