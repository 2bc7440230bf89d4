"""The routing-aware client (kstate/client) and the two ways a forward can fail, against
a node the test plays over a real socket: ``owner_no_answer`` leaves a conditional
write's outcome unknown (raised at once, never retried), ``owner_not_reached`` is
retried like any 503 (the owner never saw the request)."""

from __future__ import annotations

from functools import partial

import orjson
import pytest
import trio

from kstate.client import KstateClient, Unavailable
from kstate.core.wire import GENERATION_HEADER, error_body
from web.http1 import Front, Request, Response, serve_front

Code = str | None | tuple[int, str]  # a 503's code, None, or (status, code)


class FakeNode:
    """Owns every partition; answers every write 503 with ``code`` (the n-th write with
    ``codes[n]`` while there are some; None: a 503 without kstate's JSON body, as a
    front proxy may send; (status, code): that status instead of 503)."""

    def __init__(self, code: str | None, codes: tuple[Code, ...] = ()) -> None:
        self.code = code
        self.codes = list(codes)
        self.url = ""
        self.writes = 0

    async def handle(self, req: Request) -> Response:
        if req.path == b"/groupinfo":
            table = {f"t-{p}": self.url for p in range(10)}
            return Response(200, [(b"content-type", b"application/json"),
                                  (GENERATION_HEADER.encode(), b"1")], orjson.dumps(table))
        self.writes += 1
        code = self.codes.pop(0) if self.codes else self.code
        if code is None:
            return Response(503, [(b"content-type", b"text/plain")], b"Service Unavailable")
        if isinstance(code, tuple):
            return Response(code[0], [(b"content-type", b"application/json")],
                            error_body(code[1], "refused"))
        return Response(503, [(b"content-type", b"application/json"), (b"retry-after", b"1")],
                        error_body(code, "the owner did not answer"))


async def writes_until_given_up(code: str | None, if_match: str | None,
                                codes: tuple[Code, ...] = ()) -> tuple[str, int]:
    node = FakeNode(code, codes)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        node.url = await nursery.start(partial(serve_front, Front(handle=node.handle),
                                               "127.0.0.1:0", shutdown_trigger=stop.wait))
        async with KstateClient([node.url], retries=2, max_retry_after=0.01) as kc:
            with pytest.raises(Unavailable) as info:
                await kc.put("a@b.c", "A", if_match=if_match)
        stop.set()
    return info.value.code, node.writes


@pytest.mark.parametrize("code", ["owner_no_answer", "write_unconfirmed", "write_timeout",
                                  "broker_unavailable", "shutting_down"])
async def test_a_write_that_may_have_applied_leaves_a_conditional_write_unknown_at_once(
        code: str):
    assert await writes_until_given_up(code, '"1-2"') == ("outcome_unknown", 1)


async def test_no_answer_to_an_unconditional_write_is_retried_then_unknown():
    assert await writes_until_given_up("owner_no_answer", None) == ("outcome_unknown", 3)


async def test_an_unconfirmed_attempt_is_not_forgotten_behind_later_refusals():
    """The first attempt's record may still land (its key stays locked meanwhile, so
    the retries get key_busy): the write's outcome is unknown, not refused."""
    assert await writes_until_given_up("key_busy", None, ("write_timeout",)) == (
        "outcome_unknown", 3)


async def test_an_unconfirmed_attempt_is_not_forgotten_behind_a_final_refusal():
    """Nor behind a later answer the client does not retry: a 408 (the request arrived
    too slowly, so nothing of it was written) says nothing of the first attempt, which
    may still land."""
    assert await writes_until_given_up("key_busy", None, ("write_timeout",
                                                          (408, "request_timeout"))) == (
        "outcome_unknown", 2)


async def test_refusals_that_say_nothing_was_written_stay_what_they_are():
    assert await writes_until_given_up("key_busy", None) == ("key_busy", 3)


@pytest.mark.parametrize("code", [None, "something_a_newer_node_says"])
async def test_a_503_the_client_cannot_read_leaves_a_conditional_write_unknown(code):
    assert await writes_until_given_up(code, '"1-2"') == ("outcome_unknown", 1)


async def test_not_reached_is_retried_even_for_a_conditional_write():
    assert await writes_until_given_up("owner_not_reached", '"1-2"') == (
        "owner_not_reached", 3)
