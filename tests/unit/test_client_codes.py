"""The routing-aware client (kstate/client) and the two ways a forward can fail, against
a node the test plays over a real socket: ``owner_no_answer`` leaves a conditional
write's outcome unknown (raised at once, never retried), ``owner_not_reached`` is
retried like any 503 (the owner never saw the request)."""

from __future__ import annotations

from functools import partial

import orjson
import pytest
import trio

from kstate.client import KstateClient, KstateError, Unavailable
from kstate.core.wire import GENERATION_HEADER, error_body
from web.http1 import Front, Request, Response, serve_front

# a 503's code, None, or (status, code); (status, None): that status, no JSON body
Code = str | None | tuple[int, str | None]


class FakeNode:
    """Owns every partition; answers every write 503 with ``code`` (the n-th write with
    ``codes[n]`` while there are some; None: a 503 without kstate's JSON body, as a
    front proxy may send; (status, code): that status instead of 503)."""

    def __init__(self, code: Code, codes: tuple[Code, ...] = ()) -> None:
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
        if isinstance(code, tuple) and code[1] is None:  # a front proxy's own page
            return Response(code[0], [(b"content-type", b"text/html")],
                            b"<html><body>Bad Gateway</body></html>")
        if isinstance(code, tuple):
            return Response(code[0], [(b"content-type", b"application/json")],
                            error_body(code[1], "refused"))
        return Response(503, [(b"content-type", b"application/json"), (b"retry-after", b"1")],
                        error_body(code, "the owner did not answer"))


async def writes_until_given_up(code: Code, if_match: str | None,
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


# A 500 internal_error is a node's bug, raised after it may have written ("Errors": may
# have been applied); a front proxy's 502 or 504 says it had no answer from the node
# it sent the write to. None says the write was not applied.
MAYBE_APPLIED_5XX: list[Code] = [(500, "internal_error"), (502, None), (504, None),
                                 (500, None)]


@pytest.mark.parametrize("code", MAYBE_APPLIED_5XX)
async def test_another_5xx_leaves_a_conditional_write_unknown_at_once(code: Code):
    assert await writes_until_given_up(code, '"1-2"') == ("outcome_unknown", 1)


@pytest.mark.parametrize("code", MAYBE_APPLIED_5XX)
async def test_another_5xx_leaves_an_unconditional_write_unknown_after_retries(code: Code):
    assert await writes_until_given_up(code, None) == ("outcome_unknown", 3)


async def test_an_unconditional_write_retried_past_a_5xx_succeeds():
    """Writing the same value again is safe: a later success is the write's answer."""
    node = FakeNode("unused", ((502, None),))
    stop = trio.Event()

    async def handle(req: Request) -> Response:
        if req.path != b"/groupinfo" and node.writes == 1:
            node.writes += 1
            return Response(201, [(b"content-type", b"application/json"),
                                  (b"etag", b'"3-4"')], b"{}")
        return await node.handle(req)

    async with trio.open_nursery() as nursery:
        node.url = await nursery.start(partial(serve_front, Front(handle=handle),
                                               "127.0.0.1:0", shutdown_trigger=stop.wait))
        async with KstateClient([node.url], retries=2, max_retry_after=0.01) as kc:
            assert await kc.put("a@b.c", "A") == '"3-4"'
        stop.set()
    assert node.writes == 2


async def test_a_read_answered_with_what_is_not_json_is_a_kstate_error():
    """A 200 to a GET whose body is not JSON (a front proxy's page, a truncated body)
    is the client's KstateError like any answer it cannot use, not a JSON decoder's
    exception the caller never heard of."""
    node = FakeNode(None)
    stop = trio.Event()

    async def handle(req: Request) -> Response:
        if req.path == b"/groupinfo":
            return await node.handle(req)
        return Response(200, [(b"content-type", b"text/html")], b"<html>hello</html>")

    async with trio.open_nursery() as nursery:
        node.url = await nursery.start(partial(serve_front, Front(handle=handle),
                                               "127.0.0.1:0", shutdown_trigger=stop.wait))
        async with KstateClient([node.url], retries=0) as kc:
            with pytest.raises(KstateError) as info:
                await kc.get("a@b.c")
        stop.set()
    assert (info.value.status, info.value.code) == (200, "invalid_answer")


@pytest.mark.parametrize("if_match", ['"1-2"\n', ' "1-2"', '"1-2"\r\nx-a: b', "\u00e9"])
async def test_an_if_match_that_cannot_be_sent_is_refused_before_sending(if_match: str):
    """An ETag read with its newline, say: it cannot be a header value, so nothing can
    be sent. That is the caller's ValueError, not outcome_unknown (nothing was sent,
    so nothing may have been applied), and the node is not counted down for it."""
    node = FakeNode("write_timeout")
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        node.url = await nursery.start(partial(serve_front, Front(handle=node.handle),
                                               "127.0.0.1:0", shutdown_trigger=stop.wait))
        async with KstateClient([node.url], retries=2, max_retry_after=0.01) as kc:
            with pytest.raises(ValueError, match="if_match"):
                await kc.put("a@b.c", "A", if_match=if_match)
            with pytest.raises(ValueError, match="if_match"):
                await kc.delete("a@b.c", if_match=if_match)
            stats = kc.statistics()
        stop.set()
    assert (node.writes, stats.attempts, stats.transport_errors) == (0, 0, 0)
