"""Issue 3: REST /users/{email} over real HTTP against a real node and broker: status
codes, ETags that are the record's real partition and offset, If-Match, tombstones
as Kafka stores them, and read-your-writes."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from kstate.core.partitioner import partition_for
from kstate.core.records import MARKER_PREFIX
from tools import topic as load
from tools.procs import wait_ready

pytestmark = pytest.mark.fast  # the fast tier (just test-fast)


def etag_of(partition: int, offset: int) -> str:
    return f'"{partition}-{offset}"'


def parse_etag(value: str) -> tuple[int, int]:
    assert value.startswith('"'), value
    assert value.endswith('"'), value
    p, _, o = value[1:-1].partition("-")
    return int(p), int(o)


def assert_error(r, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]


async def test_put_get_if_match_delete(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    email = "ann.lee@example.com"
    url = f"{node.base}/users/{email}"
    p = partition_for(email.encode(), 10)

    r = await client.put(url, json={"name": "Ann Lee"})
    assert r.status_code == 201, r.text
    assert r.content == load.user_bytes(email, "Ann Lee")
    assert r.headers["content-type"].startswith("application/json")
    # offset 0 of a fresh partition is the owner's claim (its epoch marker); a
    # rebalance may add another claim: versions are compared by order, not value
    first = parse_etag(r.headers["etag"])
    assert first is not None
    assert first[0] == p
    assert first[1] >= 1

    r = await client.put(url, json={"name": "Ann Lee-Smith", "email": email})
    assert r.status_code == 200, r.text
    assert r.content == load.user_bytes(email, "Ann Lee-Smith")
    v1 = r.headers["etag"]
    assert parse_etag(v1)[0] == p
    assert parse_etag(v1)[1] > first[1]

    r = await client.get(url)
    assert r.status_code == 200
    assert r.content == load.user_bytes(email, "Ann Lee-Smith")
    assert r.headers["etag"] == v1
    # the seed's API answers the same bytes for the same key
    r = await client.get(f"{node.base}/user", params={"email": email})
    assert r.status_code == 200
    assert r.content == load.user_bytes(email, "Ann Lee-Smith")
    # a percent-encoded path is the same key
    r = await client.get(f"{node.base}/users/{quote(email, safe='')}")
    assert r.status_code == 200
    assert r.headers["etag"] == v1

    # If-Match with a stale or foreign version: 412, nothing written
    for wrong in (etag_of(p, first[1]), etag_of(p, 10**6), etag_of((p + 1) % 10,
                                                                   parse_etag(v1)[1]),
                  "garbage"):
        r = await client.put(url, json={"name": "Mallory"}, headers={"If-Match": wrong})
        assert_error(r, 412, "precondition_failed")
        r = await client.delete(url, headers={"If-Match": wrong})
        assert_error(r, 412, "precondition_failed")
    r = await client.get(url)
    assert r.content == load.user_bytes(email, "Ann Lee-Smith")
    assert r.headers["etag"] == v1

    # If-Match with the current version: applied, new version
    r = await client.put(url, json={"name": "Ann B. Lee"}, headers={"If-Match": v1})
    assert r.status_code == 200, r.text
    v2 = r.headers["etag"]
    assert parse_etag(v2)[1] > parse_etag(v1)[1]
    r = await client.put(url, json={"name": "Ann C. Lee"}, headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    v3 = r.headers["etag"]
    assert parse_etag(v3)[0] == p
    assert parse_etag(v3)[1] > parse_etag(v2)[1]

    # If-Match on a key that does not exist: 412, and it still does not exist
    missing = f"{node.base}/users/nobody@example.com"
    r = await client.put(missing, json={"name": "X"}, headers={"If-Match": v3})
    assert_error(r, 412, "precondition_failed")
    r = await client.put(missing, json={"name": "X"}, headers={"If-Match": "*"})
    assert_error(r, 412, "precondition_failed")
    r = await client.delete(missing, headers={"If-Match": "*"})
    assert_error(r, 412, "precondition_failed")
    r = await client.get(missing)
    assert_error(r, 404, "not_found")

    # DELETE with the right version: 204, no body; then 404 as JSON
    r = await client.delete(url, headers={"If-Match": v3})
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert parse_etag(r.headers["etag"])[1] > parse_etag(v3)[1]
    r = await client.get(url)
    assert_error(r, 404, "not_found")
    r = await client.get(f"{node.base}/user", params={"email": email})
    assert_error(r, 404, "not_found")
    # deleting again is idempotent
    r = await client.delete(url)
    assert r.status_code == 204
    # and a PUT after the delete creates it again
    r = await client.put(url, json={"name": "Ann Again"})
    assert r.status_code == 201, r.text
    assert parse_etag(r.headers["etag"])[1] > parse_etag(v3)[1]


async def test_delete_writes_a_real_tombstone(make_node, client, kafka_bootstrap, names):
    node = make_node()
    await wait_ready(client, node)
    emails = [f"tomb{i}@example.com" for i in range(12)]
    etags: dict[str, list[str]] = {e: [] for e in emails}
    for e in emails:
        for name in ("First", "Second"):
            r = await client.put(f"{node.base}/users/{e}", json={"name": name})
            assert r.status_code in (200, 201)
            etags[e].append(r.headers["etag"])
    for e in emails[:6]:  # half through REST, half through the seed API
        r = await client.delete(f"{node.base}/users/{e}")
        assert r.status_code == 204
        etags[e].append(r.headers["etag"])
    for e in emails[6:]:
        r = await client.delete(f"{node.base}/user", params={"email": e})
        assert r.status_code == 200
        etags[e].append(r.headers["etag"])

    raw = await load.read_all(kafka_bootstrap, names["topic"])
    seen: dict[str, list[tuple[str, bytes | None]]] = {e: [] for e in emails}
    for p, records in raw.items():
        for rec in records:
            assert rec.key is not None
            if rec.key.startswith(MARKER_PREFIX):
                continue  # an owner's claim of the partition (its epoch marker)
            email = rec.key.decode()
            assert partition_for(rec.key, 10) == p
            seen[email].append((etag_of(p, rec.offset), rec.value))
    for e in emails:
        assert [tag for tag, _ in seen[e]] == etags[e]  # the ETag is the real record
        values = [v for _, v in seen[e]]
        assert values == [load.user_bytes(e, "First"), load.user_bytes(e, "Second"), None]
        assert values[-1] is None  # a tombstone: null, not b""
        r = await client.get(f"{node.base}/users/{e}")
        assert r.status_code == 404


async def test_read_your_writes_200_pairs(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    emails = [f"ryw{i}@example.com" for i in range(16)]  # spread over the partitions
    assert len({partition_for(e.encode(), 10) for e in emails}) >= 5
    existing: set[str] = set()
    checked = 0
    for i in range(200):
        email = emails[i % len(emails)]
        name = f"Name {i}"
        if i % 2 == 0:
            r = await client.put(f"{node.base}/users/{email}", json={"name": name})
            assert r.status_code == (200 if email in existing else 201), r.text
        else:
            r = await client.put(f"{node.base}/user", params={"email": email},
                                 content=f'{{"name":"{name}","email":"{email}"}}',
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert r.status_code == 200, r.text
        existing.add(email)
        put_tag = r.headers["etag"]
        if i % 3 == 0:
            r = await client.get(f"{node.base}/users/{email}")
            assert r.headers["etag"] == put_tag
        else:
            r = await client.get(f"{node.base}/user", params={"email": email})
        assert r.status_code == 200, (i, r.status_code, r.text)
        assert r.content == load.user_bytes(email, name), i
        checked += 1
        if i % 7 == 6:
            r = await client.delete(f"{node.base}/users/{email}")
            assert r.status_code == 204
            existing.discard(email)
            r = await client.get(f"{node.base}/users/{email}")
            assert r.status_code == 404, (i, r.text)
    assert checked == 200
