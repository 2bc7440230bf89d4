"""The HTTP layer of a node that never started: real handles (an empty state, a router
without a table, an idle writer), enough to build the app, read its routes and answer
what needs no Kafka."""

from __future__ import annotations

import time
from typing import Any

import trio

from actors.router import RouterHandle
from actors.state import StateHandle
from actors.writer import WriterHandle
from kstate.core.table import StateTable
from web.proxy import Proxy
from web.services import HttpConfig, Services, build_services


def offline_services(url: str = "127.0.0.1:1", *, partitions: int = 10, topic: str = "t",
                     group: str = "g", proxy_timeout: float = 1.0,
                     catchup_timeout: float = 1.0, api_token: str = "",
                     max_body: int = 65_536, table: StateTable | None = None) -> Services:
    """``table``: the state (default: empty). Writes to a partition it serves wait
    forever: nothing reads the writer's inbox."""
    state = StateHandle(table or StateTable(partitions))
    writes, _ = trio.open_memory_channel[Any](0)
    router = RouterHandle(url, partitions, state, writes, catchup_timeout)
    return build_services(HttpConfig(url=url, topic=topic, group=group, max_body=max_body,
                                     api_token=api_token, started_at=time.monotonic()),
                          router=router, state=state, writer=WriterHandle(),
                          proxy=Proxy(proxy_timeout), feed=None)
