"""The README's table of error codes ("Errors") is the codes the nodes emit, kept in step.

The source (kstate/, actors/, web/) is read, not run: every call that makes an error
answer names its code there, as a literal, in one of a few ways (:data:`EMITTERS`). A
call whose code is not a literal must be a known wrapper or pass-through
(:data:`PASS_THROUGH`), whose codes are found where they come from; any other fails the
test, and so does a new builder of the JSON error body, so a new way to make an error
cannot slip past it. Then each code
found must have its row, with its status and ``Retry-After``, and each row must still be
emitted. The client's retry sets (kstate/client/_errors.py) must be the table's "a write"
column of the 503 rows.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import werkzeug.exceptions
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest
from werkzeug.exceptions import HTTPException, InternalServerError

import actors.feed_limits
from kstate.client import AMBIGUOUS_WRITE_CODES, NOT_APPLIED_CODES
from kstate.core.outcomes import Unavailable
from kstate.core.wire import retry_after_value
from tools.procs import REPO
from web import render

SCANNED = ("kstate", "actors", "web")
# The client's own codes (outcome_unknown, ...) are what it raises, not what a node says.
NOT_A_NODE = ("kstate/client/",)

CODE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
NONE = "—"
WRITE_COLUMN = {"not applied", "may have been applied", NONE}


@dataclass(frozen=True)
class Emitter:
    """How a call names its answer: the status (a fixed one, or the position of the
    argument holding it), the position of the code, and the Retry-After it gives by
    default (None: no header) and where a ``retry_after`` argument may be."""

    status: int | None  # None: the argument at status_arg
    code_arg: int
    status_arg: int = 0
    retry_default: float | None = None
    retry_arg: int | None = None  # positional place of retry_after, if it has one


EMITTERS: dict[str, Emitter] = {
    # kstate/core/outcomes.py, rendered 503 by web/render.unavailable
    "Unavailable": Emitter(503, 0, retry_default=Unavailable.__dataclass_fields__[
        "retry_after"].default, retry_arg=2),
    # kstate/core/users.py, rendered 400 by web/errors.BadRequest.of
    "InvalidUser": Emitter(400, 0),
    "BadRequest": Emitter(None, 1),  # web/errors.py
    "Refused": Emitter(None, 1),  # actors/feed_resume.py, rendered by web/routes_feed.py
    "Reject": Emitter(None, 1),  # web/http1/connection.py, sent by web/http1/server.py
    # web/http1/heads.py: raised as a Reject by the front, answered by web/http1/guard.py
    # on a handed-over connection
    "Refusal": Emitter(None, 1),
    "render.error": Emitter(None, 1),  # web/render.py
    "error_response": Emitter(None, 1),  # web/http1/wire.py
    "error_bytes": Emitter(None, 1),  # web/http1/wire.py
    "unauthorized": Emitter(401, 0),  # web/auth.py (+ WWW-Authenticate)
}
# web/render.py calls its own error() by its bare name
# (and web/errors.BadRequest.of builds its 400 as ``cls(...)``)
LOCAL_EMITTERS = {"web/render.py": {"error": EMITTERS["render.error"]},
                  "web/errors.py": {"cls": EMITTERS["BadRequest"]}}

# Calls whose code is not a literal (file, function, the code's expression), and where
# their codes come from. Each origin is scanned on its own (an emitter above, or a rule
# of emitted()), so these add nothing but must be known: a new one fails until it is
# understood.
PASS_THROUGH = {
    ("web/http1/wire.py", "error_bytes", "code"): "its callers (an emitter)",
    ("web/auth.py", "unauthorized", "code"): "its callers (an emitter)",
    ("web/render.py", "http_error", "code"): "werkzeug's exceptions (QUART_RAISES, imports)",
    ("web/render.py", "unavailable", "u.reason"): "Unavailable",
    ("web/render.py", "bad_request", "e.code"): "BadRequest",
    ("web/errors.py", "of", "exc.code"): "InvalidUser",
    ("web/routes_feed.py", "changes", "admitted"): "actors/feed_limits.py's constants",
    ("web/routes_feed.py", "changes", "ended.error"): "Refused",
    ("web/http1/server.py", "_connection", "r.code"): "Reject",
    ("web/http1/guard.py", "asgi", "code"): "Refusal",
}
# The only functions that build the JSON error body {"error": code, ...} (web/openapi.py:
# the schema of it): error_response is an emitter, and error_body is called by
# render.error alone.
BODY_BUILDERS = {("kstate/core/wire.py", "error_body"), ("web/http1/wire.py", "error_response"),
                 ("web/openapi.py", "_components")}
# werkzeug's errors quart raises by itself (a route that raised; a plain request to the
# websocket route), rendered by web/render.http_error; the ones kstate raises are found
# in the source.
QUART_RAISES: tuple[type[HTTPException], ...] = (InternalServerError, WerkzeugBadRequest)


@dataclass(frozen=True)
class Found:
    code: str
    status: int
    retry_after: str  # the header's value, or NONE
    where: str


def _sources() -> list[tuple[str, ast.Module]]:
    out = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if not rel.startswith(NOT_A_NODE):
                out.append((rel, ast.parse(path.read_text(), rel)))
    return out


def _constants(tree: ast.Module) -> dict[str, object]:
    """A module's top-level ``NAME = <literal>`` assignments."""
    out: dict[str, object] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)):
            out[node.targets[0].id] = node.value.value
    return out


def _header(seconds: object) -> str:
    if seconds is None:
        return NONE
    assert isinstance(seconds, (int, float)), seconds
    return retry_after_value(float(seconds))


class _Scan(ast.NodeVisitor):
    def __init__(self, rel: str, tree: ast.Module) -> None:
        self.rel = rel
        self.constants = _constants(tree)
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.found: list[Found] = []
        self.passed: set[tuple[str, str, str]] = set()  # a non-literal code: where, what
        self.bodies: set[tuple[str, str]] = set()  # functions building {"error": ...}
        self.body_calls: set[tuple[str, str]] = set()  # functions calling error_body

    def _function(self) -> str:
        return self.functions[-1].name if self.functions else "<module>"

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    def visit_Dict(self, node: ast.Dict) -> None:
        for k, v in zip(node.keys, node.values, strict=True):
            if (isinstance(k, ast.Constant) and k.value == "error"
                    and not (isinstance(v, ast.Constant) and v.value is None)):
                self.bodies.add((self.rel, self._function()))
        self.generic_visit(node)

    def _value(self, node: ast.expr) -> object:
        """A literal, or a module constant named; raises LookupError otherwise."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        raise LookupError(ast.unparse(node))

    def visit_Call(self, node: ast.Call) -> None:
        callee = ast.unparse(node.func)
        if callee.rsplit(".", 1)[-1] == "error_body":
            self.body_calls.add((self.rel, self._function()))
        emitter = LOCAL_EMITTERS.get(self.rel, {}).get(callee) or EMITTERS.get(callee)
        if emitter is not None:
            self._emitted(node, callee, emitter)
        self.generic_visit(node)

    def _emitted(self, node: ast.Call, callee: str, e: Emitter) -> None:
        where = f"{self.rel}:{node.lineno} {callee}"
        args = node.args
        assert not any(isinstance(a, ast.Starred) for a in args), where
        assert len(args) > e.code_arg, f"{where}: the code is not positional"
        try:
            code = self._value(args[e.code_arg])
            status = e.status if e.status is not None else self._value(args[e.status_arg])
        except LookupError:
            self.passed.add((self.rel, self._function(), ast.unparse(args[e.code_arg])))
            return
        retry: object = e.retry_default
        if e.retry_arg is not None and len(args) > e.retry_arg:
            retry = self._value(args[e.retry_arg])
        for kw in node.keywords:
            if kw.arg == "retry_after":
                retry = self._value(kw.value)
        assert isinstance(code, str), f"{where}: code {code!r}"
        assert CODE.fullmatch(code), f"{where}: code {code!r}"
        assert isinstance(status, int), f"{where}: status {status!r}"
        self.found.append(Found(code, status, _header(retry), where))


@dataclass(frozen=True)
class Scanned:
    found: list[Found]
    passed: set[tuple[str, str, str]]
    bodies: set[tuple[str, str]]
    body_calls: set[tuple[str, str]]
    werkzeug: set[str]  # names of werkzeug exceptions kstate's source uses, but those
    # an ``errorhandler`` of their own renders (its code is found where it is made)


def scan() -> Scanned:
    found: list[Found] = []
    passed: set[tuple[str, str, str]] = set()
    bodies: set[tuple[str, str]] = set()
    body_calls: set[tuple[str, str]] = set()
    werkzeug: set[str] = set()
    handled: set[str] = set()
    for rel, tree in _sources():
        s = _Scan(rel, tree)
        s.visit(tree)
        found += s.found
        passed |= s.passed
        bodies |= s.bodies
        body_calls |= s.body_calls
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "werkzeug.exceptions":
                werkzeug |= {a.name for a in node.names if a.name != "HTTPException"}
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "errorhandler":
                handled |= {a.id for a in node.args if isinstance(a, ast.Name)}
    return Scanned(found, passed, bodies, body_calls, werkzeug - handled)


def emitted() -> dict[str, dict[tuple[int, str], list[str]]]:
    """code -> every (status, Retry-After) some node answer gives it -> where."""
    s = scan()
    out: dict[str, dict[tuple[int, str], list[str]]] = {}

    def add(code: str, status: int, retry_after: str, where: str) -> None:
        out.setdefault(code, {}).setdefault((status, retry_after), []).append(where)

    for f in s.found:
        add(f.code, f.status, f.retry_after, f.where)
    # web/routes_feed.py answers 503 + Retry-After 1 with the admission's refusal, one of
    # actors/feed_limits.py's string constants
    limits = _constants(ast.parse(Path(actors.feed_limits.__file__).read_text()))
    for name, value in limits.items():
        if isinstance(value, str):
            add(value, 503, _header(1), f"actors/feed_limits.py {name}")
    # werkzeug's exceptions, as web/render.http_error renders them
    classes = [getattr(werkzeug.exceptions, name) for name in sorted(s.werkzeug)]
    for cls in (*classes, *QUART_RAISES):
        r = render.http_error(cls())
        code = re.search(rb'"error":"([^"]+)"', r.body)
        assert code is not None, r.body
        retry = dict(r.headers).get(b"retry-after")
        add(code.group(1).decode(), r.status, NONE if retry is None else retry.decode(),
            f"werkzeug {cls.__name__}")
    return out


@dataclass(frozen=True)
class Row:
    code: str
    status: int
    retry_after: str
    write: str


def table() -> dict[str, Row]:
    text = (REPO / "README.md").read_text()
    section = text.split("<!-- error-codes -->")[1].split("<!-- /error-codes -->")[0]
    lines = [line for line in section.strip().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["code", "status", "Retry-After", "when", "a write", "retry"], header
    rows: dict[str, Row] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(header), line
        code = cells[0].strip("`")
        assert code not in rows, f"{code} has two rows"
        assert cells[4] in WRITE_COLUMN, line
        rows[code] = Row(code, int(cells[1]), cells[2], cells[4])
    return rows


def test_every_error_answer_is_made_in_a_way_the_scan_knows():
    s = scan()
    assert s.passed == set(PASS_THROUGH), (
        "a code that is not a literal: find where it comes from, scan that, and list the "
        "call in PASS_THROUGH", s.passed ^ set(PASS_THROUGH))
    assert s.bodies == BODY_BUILDERS, s.bodies
    assert s.body_calls == {("web/render.py", "error")}, s.body_calls
    assert {"NotFound", "MethodNotAllowed"} <= s.werkzeug, s.werkzeug


def test_every_code_a_node_emits_has_its_row():
    codes, rows = emitted(), table()
    missing = {code: codes[code] for code in sorted(set(codes) - set(rows))}
    assert not missing, f"README 'Errors' has no row for {missing}"
    for code, seen in codes.items():
        row = rows[code]
        assert set(seen) == {(row.status, row.retry_after)}, (code, seen, row)


def test_every_row_is_still_emitted():
    gone = sorted(set(table()) - set(emitted()))
    assert not gone, f"README 'Errors' lists codes no node emits: {gone}"


def test_the_clients_retry_sets_are_the_tables_write_column():
    rows = table().values()
    assert NOT_APPLIED_CODES == {r.code for r in rows
                                 if r.status == 503 and r.write == "not applied"}
    assert AMBIGUOUS_WRITE_CODES == {r.code for r in rows
                                     if r.status == 503 and r.write == "may have been applied"}
