"""The one table of what an answer says about a request (tools/chaos/outcomes.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from actors.feed_limits import FULL as FEED_FULL
from actors.feed_limits import RESUMED_FULL as FEED_RESUMED_FULL
from kstate.client import AMBIGUOUS_WRITE_CODES, NOT_APPLIED_CODES
from tools.chaos.outcomes import CODES_503, classify, error_code

pytestmark = pytest.mark.fast  # pure logic, no broker

REPO = Path(__file__).resolve().parents[2]

NOT_APPLIED = ["not_owner", "key_busy", "no_owner", "rebalancing", "too_many_hops",
               "catching_up", "owner_isolated", "superseded", "owner_not_reached",
               "claiming", "partition_undecodable", "cluster_auth_busy", "write_refused",
               "too_many_connections"]
AMBIGUOUS = ["write_timeout", "broker_unavailable", "owner_no_answer", "write_unconfirmed",
             "shutting_down"]


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


# The /changes handshake's refusals (a websocket subscriber's, before the upgrade): never
# the answer to a read or a write, so nothing the judge classifies can get them, and they
# say nothing about whether a write applied. Not in the table on purpose.
FEED_ONLY = {"feed_unavailable", FEED_FULL, FEED_RESUMED_FULL}
FEED_MODULES = {"web/routes_feed.py", "actors/feed_resume.py"}
# 503s whose code is no literal where they are made: (file, the code's expression) ->
# the codes it can be, found elsewhere. A new indirect site must be added on purpose.
INDIRECT: dict[tuple[str, str | None], set[str]] = {
    # render.unavailable: the reason of an Unavailable(...), each found at its call
    ("web/render.py", "u.reason"): set(),
    # FeedLimits.admit's refusals
    ("web/routes_feed.py", "admitted"): {FEED_FULL, FEED_RESUMED_FULL},
    # /readyz not ready: the readiness document, no error code
    ("web/routes_ops.py", None): set(),
}


def answered_503s() -> tuple[dict[str, set[str]], set[tuple[str, str | None]]]:
    """Every 503 the node code can answer: code -> the files that make it, and the
    indirect sites seen. An ``Unavailable("code", ...)`` (rendered 503 by web/render.py)
    and any call with the arguments ``503, "code"`` (render.error, error_bytes,
    Refused, ...) give their code; any other 503 in the code is an indirect site."""
    made: dict[str, set[str]] = {}
    indirect: set[tuple[str, str | None]] = set()
    for folder in ("actors", "web", "kstate"):
        for path in (REPO / folder).rglob("*.py"):
            if "client" in path.parts:
                continue  # the routing-aware client's own error codes
            where = path.relative_to(REPO).as_posix()
            tree = ast.parse(path.read_text(), where)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                code: ast.expr | None = None
                if name == "Unavailable":
                    code = node.args[0] if node.args else next(
                        (k.value for k in node.keywords if k.arg == "reason"), None)
                    assert isinstance(code, ast.Constant), (where, node.lineno)
                    made.setdefault(code.value, set()).add(where)
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    if not (isinstance(child, ast.Constant) and type(child.value) is int
                            and child.value == 503):
                        continue
                    args = node.args if isinstance(node, ast.Call) else []
                    at = next((i for i, a in enumerate(args) if a is child), None)
                    code = args[at + 1] if at is not None and at + 1 < len(args) else None
                    if isinstance(code, ast.Constant) and isinstance(code.value, str):
                        made.setdefault(code.value, set()).add(where)
                    else:
                        indirect.add((where, None if code is None else ast.unparse(code)))
    return made, indirect


def test_every_503_code_the_nodes_answer_is_in_the_table() -> None:
    """A new code in the node code must be placed in the table on purpose."""
    made, indirect = answered_503s()
    assert indirect == set(INDIRECT), "a 503 whose code this scan cannot read: " \
        f"new {indirect - set(INDIRECT)}, gone {set(INDIRECT) - indirect}"
    codes = set(made).union(*INDIRECT.values())
    # the scan sees each way a 503 is made: Unavailable(...), render.error (web/auth.py),
    # the front's own error_bytes at accept (web/http1/server.py)
    assert {"write_timeout", "cluster_auth_busy", "too_many_connections"} <= codes
    assert FEED_ONLY <= codes, "a feed refusal is gone: update FEED_ONLY"
    for code in FEED_ONLY & set(made):
        assert made[code] <= FEED_MODULES, (code, made[code])
    assert codes - FEED_ONLY <= set(CODES_503), codes - FEED_ONLY - set(CODES_503)
    assert not FEED_ONLY & set(CODES_503)
