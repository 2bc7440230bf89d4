"""Stopping an aiokafka client, best effort: what its ``stop()`` raises is logged, not
raised, so that stopping one client (or a node, on SIGTERM) never fails because Kafka
is unreachable.

That includes a ``CancelledError`` of aiokafka's own: a consumer's ``stop()`` cancels
tasks of its fetcher and coordinator and then awaits them, and while Kafka cannot be
reached one of them may still be pending, so the cancellation surfaces in the caller
(aio-libs/aiokafka issue 647). Our own task being cancelled is told apart by
``Task.cancelling()`` and still propagates."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def stop_client(client: Any, name: str) -> None:
    """``await client.stop()``; a failure is logged (``kafka_stop_failed``)."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this task was cancelled: not the client's doing
        log.warning("event=kafka_stop_failed client=%s error=cancelled detail=%r", name,
                    "its stop awaited a task of its own that it had cancelled "
                    "(Kafka unreachable?)")
    except Exception:
        log.exception("event=kafka_stop_failed client=%s", name)
