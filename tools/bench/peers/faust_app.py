"""The faust-streaming peer of the benchmark: the same users, served the faust way.

A faust Table (in-memory store, changelog topic as faust makes it) is fed by an agent that
reads the benchmark's users topic (key = email, value = the JSON bytes, both raw), and
``GET /user/{email}`` is served through ``app.table_route``: a worker that does not own
the key's partition forwards the request to the one that does (faust's own router).

Runs only in the benchmark's separate venv (.cache/bench-venv: faust pins its own
aiokafka), started by bench/faust_peer.py as::

    faust -A faust_app worker --web-host 127.0.0.1 --web-port PORT -l info

Configuration (env, all set by the harness):
    BENCH_BOOTSTRAP       host:port of the broker
    BENCH_TOPIC           the users topic (already created and loaded)
    BENCH_PARTITIONS      its partition count (the table's changelog gets the same)
    BENCH_APP_ID          faust app id = consumer group (fresh per benchmark run)
    BENCH_DATADIR         this worker's data directory
    BENCH_SESSION_TIMEOUT seconds (the same session timeout kstate nodes get)
    BENCH_STANDBY         table standby replicas (faust's default is 1)
"""

from __future__ import annotations

import os
from typing import Any

import faust
from faust.web import Request, Response, View

BOOTSTRAP = os.environ["BENCH_BOOTSTRAP"]
TOPIC = os.environ["BENCH_TOPIC"]
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "10"))
SESSION = float(os.environ.get("BENCH_SESSION_TIMEOUT", "6"))

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", "faust-data"),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    table_standby_replicas=int(os.environ.get("BENCH_STANDBY", "1")),
    broker_session_timeout=SESSION,
    broker_heartbeat_interval=SESSION / 3,
    consumer_auto_offset_reset="earliest",
    key_serializer="raw",
    value_serializer="raw",
    web_host="127.0.0.1",
)

users = app.topic(TOPIC, key_type=bytes, value_type=bytes, partitions=PARTITIONS,
                  key_serializer="raw", value_serializer="raw")

# The changelog's serializers are the app's defaults above (raw bytes both ways).
table = app.Table("users", default=None, partitions=PARTITIONS, key_type=bytes,
                  value_type=bytes)


@app.agent(users)
async def ingest(stream: Any) -> None:
    """users topic -> table (a null value is a tombstone: the key goes away)."""
    async for event in stream.events():
        if event.value is None:
            table.pop(event.key, None)
        else:
            table[event.key] = event.value


@app.page("/user/{email}")
@app.table_route(table=table, match_info="email")
async def get_user(web: View, request: Request, email: str) -> Response:
    value = table.get(email.encode())
    if value is None:
        return web.bytes(b'{"error":"not_found"}', content_type="application/json",
                         status=404)
    return web.bytes(value, content_type="application/json")


@app.page("/bench/owners")
async def owners(web: View, request: Request) -> Response:
    """partition -> url of its active owner, as this worker's assignor knows it."""
    changelog = table.changelog_topic.get_topic_name()
    table_urls = app.assignor._tps_url  # faust's routing, exposed
    doc = {str(tp.partition): str(url) for tp, url in table_urls.items()
           if tp.topic == changelog}
    return web.json(doc)
