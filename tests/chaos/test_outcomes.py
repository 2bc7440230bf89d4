"""The one table of what an answer says about a request (tools/chaos/outcomes.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kstate.client import AMBIGUOUS_WRITE_CODES, NOT_APPLIED_CODES
from tools.chaos.outcomes import CODES_503, classify, error_code

pytestmark = pytest.mark.fast  # pure logic, no broker

REPO = Path(__file__).resolve().parents[2]

NOT_APPLIED = ["not_owner", "key_busy", "no_owner", "rebalancing", "too_many_hops",
               "catching_up", "owner_isolated", "superseded", "owner_not_reached",
               "claiming", "partition_undecodable", "cluster_auth_busy", "write_refused",
               "too_many_connections"]
AMBIGUOUS = ["write_timeout", "broker_unavailable", "owner_no_answer", "write_unconfirmed"]


@pytest.mark.parametrize("code", NOT_APPLIED)
def test_503_codes_that_promise_nothing_was_written_fail(code: str) -> None:
    assert classify("put", 503, code) == "fail"
    assert classify("delete", 503, code) == "fail"


@pytest.mark.parametrize("code", AMBIGUOUS)
def test_503_codes_that_promise_nothing_are_unknown(code: str) -> None:
    assert classify("put", 503, code) == "unknown"


def test_the_table_is_exactly_these_codes() -> None:
    assert set(CODES_503) == set(NOT_APPLIED) | set(AMBIGUOUS)


def test_the_client_and_the_judge_agree_on_what_may_have_applied() -> None:
    # the routing-aware client retries (or, with If-Match, reports outcome_unknown for)
    # exactly the codes the chaos judge treats as "may have applied": a code missing
    # there (write_unconfirmed was) made the client retry a conditional write that may
    # have landed, and report its own write's 412 as the answer
    assert set(AMBIGUOUS_WRITE_CODES) == set(AMBIGUOUS)
    # and the only codes after which it retries a conditional write are the ones the
    # judge takes for "not applied"
    assert set(NOT_APPLIED_CODES) == set(NOT_APPLIED)


@pytest.mark.parametrize("code", [None, "", "something_new", "write_timeout_v2"])
def test_a_code_not_in_the_table_is_unknown_never_fail(code: str | None) -> None:
    assert classify("put", 503, code) == "unknown"
    assert classify("delete", 503, code) == "unknown"


def test_statuses() -> None:
    assert classify("get", 200, None) == "ok"
    assert classify("get", 404, "not_found") == "ok"
    assert classify("put", 200, None) == "ok"
    assert classify("put", 201, None) == "ok"
    assert classify("delete", 204, None) == "ok"
    for op in ("get", "put", "delete"):
        assert classify(op, None, None) == "unknown"  # no answer
        assert classify(op, 500, None) == "unknown"
        assert classify(op, 502, None) == "unknown"
        for status in (400, 405, 411, 412, 413, 415, 401, 403):
            assert classify(op, status, "x") == "fail"
    # an answer that is not what a completed operation of its kind looks like
    assert classify("put", 204, None) == "unknown"
    assert classify("delete", 200, None) == "unknown"
    assert classify("get", 201, None) == "unknown"
    assert classify("put", 404, "not_found") == "fail"  # a 4xx: nothing was written


def test_error_code() -> None:
    assert error_code(b'{"error":"write_timeout","message":"m"}') == "write_timeout"
    assert error_code(b"not json") is None
    assert error_code(b'["error"]') is None
    assert error_code(b'{"error":3}') is None


def test_every_503_code_the_nodes_answer_is_in_the_table() -> None:
    """A new code in the node code must be placed in the table on purpose."""
    made: set[str] = set()
    for folder in ("actors", "web", "kstate"):
        for path in (REPO / folder).rglob("*.py"):
            if "client" in path.parts:
                continue  # the routing-aware client's own error codes
            made |= set(re.findall(r'Unavailable\(\s*"([a-z_]+)"', path.read_text()))
    assert made, "no Unavailable(...) found: did the code move?"
    assert made <= set(CODES_503), made - set(CODES_503)
