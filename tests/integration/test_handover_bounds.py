"""What a client can hold or trigger on a connection handed to hypercorn, on a live node
over real sockets: a client that half-closes (shuts its sending side) once answered
has its connection closed at once, not at ``http_idle_timeout``, as on the lean path.

One node serves the whole module; an autouse check proves it is still alive, healthy,
and without a traceback in its log."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.support.http1 import connect, read_replies, read_until_closed
from tests.support.ready_node import ready_node
from tools.procs import Node

# One worker runs this module: its node (a module fixture) is started once.
pytestmark = pytest.mark.xdist_group("test_handover_bounds")

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"
USER = b"GET /users/a@b.c HTTP/1.1\r\nHost: h\r\n\r\n"
IDLE = 60.0  # the node's http_idle_timeout: far longer than any wait below


@pytest.fixture(scope="module")
def node(kafka_bootstrap: str) -> Iterator[Node]:
    with ready_node(kafka_bootstrap, "test_handover_bounds",
                    {"KSTATE_HTTP_IDLE_TIMEOUT": str(IDLE)}) as n:
        yield n


@pytest.fixture(autouse=True)
def _node_survives(node: Node) -> Iterator[None]:
    yield
    assert node.alive(), node.log_text()[-3000:]
    with httpx.Client(trust_env=False, timeout=5) as c:
        assert c.get(f"{node.base}/healthz").status_code == 200
    log = node.log_text()
    assert "Traceback" not in log, log[-5000:]
    assert "http1_connection_failed" not in log, log[-5000:]


# -- a client that half-closes once answered ------------------------------------------

@pytest.mark.parametrize("requests", [[HEALTH], [HEALTH, USER], [USER, HEALTH]],
                         ids=["handed_over", "hot_after", "handed_over_later"])
async def test_a_half_closed_handed_over_connection_closes_once_answered(node, requests):
    """Each request is answered before the next is sent; then the client shuts its
    sending side: nothing more can come to be answered, so the node closes the
    connection at once (hypercorn kept it open till its idle timeout)."""
    s = await connect(node.url)
    for request in requests:
        await s.send_all(request)
        await read_replies(s, 1)
    await s.send_eof()
    with trio.fail_after(IDLE / 4):
        assert await read_until_closed(s, timeout=IDLE) == b""


async def test_a_half_close_with_a_request_in_flight_still_gets_its_answer(node):
    s = await connect(node.url)
    await s.send_all(HEALTH)
    await read_replies(s, 1)
    await s.send_all(HEALTH)
    await s.send_eof()
    with trio.fail_after(IDLE / 4):
        raw = await read_until_closed(s, timeout=IDLE)
    assert raw.startswith(b"HTTP/1.1 200 "), raw
