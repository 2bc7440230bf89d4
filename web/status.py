"""This node's status document: what ``/readyz`` answers and the dashboard shows."""

from __future__ import annotations

import time
from dataclasses import asdict

from web.services import Services


def readiness(s: Services) -> dict[str, object]:
    """Member of the group and every owned partition caught up, with the numbers. An
    owned partition halted at a batch this node cannot decode (``halted``: partition ->
    why) keeps the node not ready until an operator acts (README, "Operating")."""
    router = s.router
    table = router.table
    parts = s.state.statistics()
    mine = sorted(p for p, url in table.owners.items() if url == router.url)
    member = table.generation >= 0 and router.url in table.members.values()
    halted = {str(p): parts[p].halted for p in mine if p in parts and parts[p].halted}
    ready = member and not halted and all(p in parts and parts[p].caught_up for p in mine)
    standby = router.standby
    return {
        "ready": bool(ready),
        "url": router.url,
        "generation": table.generation,
        "member": member,
        "owned": mine,
        "halted": halted,
        "partitions": {str(p): asdict(stats) for p, stats in parts.items()},
        "writer": asdict(s.writer.statistics()),
        "router": router.counters.snapshot(),
        "standby": None if standby is None else asdict(standby.statistics()),
        "feed": None if s.feed is None else asdict(s.feed.statistics()),
        "invalid_records": s.state.table.invalid_total(),
        "uptime_seconds": round(time.monotonic() - s.config.started_at, 3),
    }
