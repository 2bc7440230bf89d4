"""Keys by their owner in a routing table, and the check that nodes serve what was
acknowledged: steps shared by integration tests (isolation, static membership,
metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterable

import httpx
import trio

from kstate.core.partitioner import partition_for
from tools.procs import Node

PARTITIONS = 10


def keys_of(owner: str, table: dict[str, str], count: int, prefix: str = "iso"
            ) -> list[str]:
    """``count`` emails (``prefix`` then a number) whose partition ``owner`` holds in
    ``table`` (a topic of PARTITIONS partitions)."""
    mine = {int(name.rsplit("-", 1)[1]) for name, url in table.items() if url == owner}
    out, i = [], 0
    while len(out) < count:
        email = f"{prefix}{i}@example.com"
        if partition_for(email.encode(), PARTITIONS) in mine:
            out.append(email)
        i += 1
    return out


def emails_in(partition: int, partitions: int, count: int, prefix: str,
              domain: str = "example.com") -> list[str]:
    """``count`` emails (``prefix`` then a number, at ``domain``) that hash to
    ``partition`` of a topic of ``partitions`` partitions."""
    out, i = [], 0
    while len(out) < count:
        email = f"{prefix}{i}@{domain}"
        if partition_for(email.encode(), partitions) == partition:
            out.append(email)
        i += 1
    return out


async def create_all(client: httpx.AsyncClient, node: Node, keys: Iterable[str],
                     name: str) -> dict[str, tuple[bytes, float]]:
    """PUT each key (new: 201) through ``node``; key -> (the stored bytes, when the
    write was acknowledged)."""
    acked: dict[str, tuple[bytes, float]] = {}
    for k in keys:
        r = await client.put(f"{node.base}/users/{k}", json={"name": name})
        assert r.status_code == 201, r.text
        acked[k] = (r.content, time.monotonic())
    return acked


async def assert_serves(client: httpx.AsyncClient, nodes: Iterable[Node],
                        acked: dict[str, bytes], within: float = 20.0) -> None:
    """Every node answers every key with its last acknowledged bytes, once it serves
    it (503 meanwhile, nothing else)."""
    for node in nodes:
        for k, want in acked.items():
            with trio.fail_after(within):
                while True:
                    r = await client.get(f"{node.base}/users/{k}")
                    if r.status_code == 200:
                        break
                    assert r.status_code == 503, r.text
                    await trio.sleep(0.2)
            assert r.content == want, (node.url, k, r.content)
