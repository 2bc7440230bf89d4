"""The OpenAPI 3.1 description of every HTTP route, served at ``GET /openapi.json``.

Kept true by tests/integration/test_openapi.py: every route of the app is here with
its methods (and nothing else is), and a schemathesis run against a live node finds no
undocumented status, header or body. HEAD and OPTIONS, which the framework answers for
every GET route, are not listed. The websocket ``/changes`` is not an HTTP operation;
it is listed under ``x-websockets``.
"""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response
from quart_trio import QuartTrio

from kstate.core.wire import GENERATION_HEADER, PARTITIONS_HEADER

Json = dict[str, Any]

# One '@', text on both sides, no whitespace or control characters; surrounding
# whitespace is trimmed first. What a schema cannot say is in the description (such
# emails get 400): the limit of 254 UTF-8 bytes after trimming (a maxLength would count
# characters, padding included) and that every character must be printable (no format,
# private-use or unassigned code points).
_EMAIL_CHAR = r"[^@\s\x00-\x1f\x7f-\x9f]"
EMAIL: Json = {
    "type": "string",
    "pattern": rf"^\s*{_EMAIL_CHAR}+@{_EMAIL_CHAR}+\s*$",
    "description": "the key: one '@' with text on both sides, at most 254 UTF-8 bytes, "
                   "printable characters only, no spaces (surrounding whitespace is "
                   "trimmed)",
    "examples": ["ada@example.com"],
}


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _err(description: str) -> Json:
    return {"description": description,
            "content": {"application/json": {"schema": _ref("schemas", "Error")}}}


def _unavailable() -> Json:
    return {"description": "no owner known, owner unreachable, partition catching up or "
                           "moving, too many hops, or Kafka unavailable: retry after "
                           "Retry-After seconds",
            "headers": {"Retry-After": _ref("headers", "RetryAfter")},
            "content": {"application/json": {"schema": _ref("schemas", "Error")}}}


def _etag(required: bool) -> Json:
    return {"ETag": {**_ref("headers", "ETag"), "required": required}} if required \
        else {"ETag": _ref("headers", "ETag")}


COMMON: Json = {"400": _ref("responses", "BadRequest"), "503": _ref("responses", "Unavailable")}
WRITE_ERRORS: Json = {"401": _ref("responses", "Unauthorized"),
                      "412": _ref("responses", "PreconditionFailed")}
BODY_ERRORS: Json = {"411": _ref("responses", "LengthRequired"),
                     "413": _ref("responses", "TooLarge"),
                     "415": _ref("responses", "UnsupportedMediaType")}
IF_MATCH: Json = {
    "name": "If-Match", "in": "header", "required": False,
    "description": "write only if the key's current ETag is this one ('*': if it exists); "
                   "412 otherwise",
    "schema": {"type": "string"},
}
WRITE_SECURITY: list[Json] = [{}, {"bearerAuth": []}]  # a token is needed only if the node has one


def _json_ok(description: str, schema: Json, headers: Json | None = None) -> Json:
    out: Json = {"description": description,
                 "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _written_links() -> Json:
    """What a client may do next with a user it wrote (OpenAPI links: schemathesis'
    stateful phase follows them): read it, replace or delete it on its version."""
    email = "$request.path.email"
    version = "$response.header.ETag"
    return {
        "ReadIt": {"operationId": "getUser", "parameters": {"path.email": email}},
        "ReadItSeed": {"operationId": "seedGetUser", "parameters": {"query.email": email}},
        "ReplaceIfUnchanged": {"operationId": "putUser",
                               "parameters": {"path.email": email, "header.If-Match": version}},
        "DeleteIfUnchanged": {"operationId": "deleteUser",
                              "parameters": {"path.email": email, "header.If-Match": version}},
    }


def _users() -> Json:
    email_query = {"name": "email", "in": "query", "required": True, "schema": EMAIL}
    email_path = {"name": "email", "in": "path", "required": True, "schema": EMAIL}
    user_body = {"required": True, "content": {"application/json": {
        "schema": _ref("schemas", "UserIn")}}}
    found = _json_ok("the user, as stored", _ref("schemas", "User"), _etag(True))
    missing = _err("no such user (answered only by a caught-up owner), or no such route")
    no_route = _err("no such route: the path's email starts with '/' or has a line break "
                    "after its first character (use /user?email= for such keys)")
    return {
        "/user": {
            "get": {"operationId": "seedGetUser", "tags": ["seed"],
                    "summary": "Read a user (seed API)", "parameters": [email_query],
                    "responses": {"200": found, "404": missing, **COMMON}},
            "put": {"operationId": "seedPutUser", "tags": ["seed"],
                    "summary": "Create or replace a user (seed API)",
                    "description": "The key is the query email, else the body email; both "
                                   "given and different is a 400. Besides JSON, the seed's "
                                   "form-encoded and text/plain content types are accepted "
                                   "when the body is JSON.",
                    "parameters": [{**email_query, "required": False}, IF_MATCH],
                    "requestBody": user_body, "security": WRITE_SECURITY,
                    "responses": {"200": {"description": "written and applied",
                                          "headers": _etag(True)},
                                  **COMMON, **WRITE_ERRORS, **BODY_ERRORS}},
            "delete": {"operationId": "seedDeleteUser", "tags": ["seed"],
                       "summary": "Delete a user (seed API; idempotent)",
                       "parameters": [email_query, IF_MATCH], "security": WRITE_SECURITY,
                       "responses": {"200": {"description": "deleted, or there was none",
                                             "headers": _etag(False)},
                                     **COMMON, **WRITE_ERRORS}},
        },
        "/users/{email}": {
            "get": {"operationId": "getUser", "tags": ["users"], "summary": "Read a user",
                    "parameters": [email_path],
                    "responses": {"200": found, "404": missing, **COMMON}},
            "put": {"operationId": "putUser", "tags": ["users"],
                    "summary": "Create or replace a user",
                    "description": "The body's email, if given, must equal the path's.",
                    "parameters": [email_path, IF_MATCH], "requestBody": user_body,
                    "security": WRITE_SECURITY,
                    "responses": {
                        "404": no_route,
                        "201": {**_json_ok("created", _ref("schemas", "User"), _etag(True)),
                                "links": _written_links()},
                        "200": {**_json_ok("replaced", _ref("schemas", "User"), _etag(True)),
                                "links": _written_links()},
                        **COMMON, **WRITE_ERRORS, **BODY_ERRORS}},
            "delete": {"operationId": "deleteUser", "tags": ["users"],
                       "summary": "Delete a user (idempotent)",
                       "parameters": [email_path, IF_MATCH], "security": WRITE_SECURITY,
                       "responses": {"404": no_route,
                                     "204": {"description": "deleted, or there was none "
                                                            "(then without ETag)",
                                             "headers": _etag(False)},
                                     **COMMON, **WRITE_ERRORS}},
        },
    }


def _ops() -> Json:
    anything = {"type": "object"}
    return {
        "/healthz": {"get": {"operationId": "healthz", "tags": ["ops"],
                             "summary": "The process is alive",
                             "responses": {"200": _json_ok("alive", {
                                 "type": "object", "required": ["status"],
                                 "properties": {"status": {"const": "ok"}}})}}},
        "/readyz": {"get": {"operationId": "readyz", "tags": ["ops"],
                            "summary": "Member of the group and every owned partition "
                                       "caught up",
                            "responses": {
                                "200": _json_ok("ready", _ref("schemas", "Readiness")),
                                "503": _json_ok("not ready (yet)",
                                                _ref("schemas", "Readiness"))}}},
        "/groupinfo": {"get": {"operationId": "groupinfo", "tags": ["ops"],
                               "summary": "Partition owners, seed-compatible "
                                          "(\"<topic>-<partition>\": \"host:port\")",
                               "responses": {"200": _json_ok(
                                   "the routing table",
                                   {"type": "object",
                                    "additionalProperties": {"type": "string"}},
                                   {GENERATION_HEADER: {
                                       "required": True,
                                       "description": "group generation of the table",
                                       "schema": {"type": "string",
                                                  "pattern": "^-?[0-9]+$"}},
                                    PARTITIONS_HEADER: {
                                       "required": True,
                                       "description": "the topic's partition count (a "
                                                      "table that lists fewer lacks some)",
                                       "schema": {"type": "string",
                                                  "pattern": "^[1-9][0-9]*$"}}})}}},
        "/metrics": {"get": {"operationId": "metrics", "tags": ["ops"],
                             "summary": "Prometheus metrics (text exposition format)",
                             "responses": {"200": {"description": "metrics", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "tags": ["ops"],
                                  "summary": "This document",
                                  "responses": {"200": _json_ok("OpenAPI 3.1", anything)}}},
        "/": {"get": {"operationId": "dashboard", "tags": ["dashboard"],
                      "summary": "The dashboard page",
                      "responses": {"200": {"description": "HTML", "content": {
                          "text/html": {"schema": {"type": "string"}}}}}}},
        "/dashboard/{name}": {"get": {
            "operationId": "dashboardFile", "tags": ["dashboard"],
            "summary": "A file of the dashboard page (dashboard.js, dashboard.css, ...)",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "examples": ["dashboard.js"]}}],
            "responses": {
                "200": {"description": "the file", "content": {
                    "text/javascript": {"schema": {"type": "string"}},
                    "text/css": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                    "image/svg+xml": {"schema": {"type": "string"}}}},
                "404": _err("no such file")}}},
        "/cluster": {"get": {"operationId": "cluster", "tags": ["dashboard"],
                             "summary": "Every member's /readyz through this node's "
                                        "routing table (feeds the dashboard)",
                             "responses": {"200": _json_ok("the cluster", anything)}}},
    }


def _components() -> Json:
    err = {"type": "object", "required": ["error", "message"],
           "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}
    return {
        "schemas": {
            "Email": EMAIL,
            "User": {"type": "object", "required": ["name", "email"],
                     "additionalProperties": False,
                     "properties": {"name": {"type": "string"},
                                    "email": {"type": "string"}}},
            "UserIn": {"type": "object", "required": ["name"],
                       "additionalProperties": False,
                       "properties": {"name": {"type": "string"},
                                      "email": {"anyOf": [EMAIL, {"type": "null"}]}},
                       "description": "email: the key when the URL has none; must equal "
                                      "the URL's when both are given; null is as if "
                                      "absent"},
            "Error": err,
            "Readiness": {"type": "object",
                          "required": ["ready", "url", "generation", "member", "owned",
                                       "partitions"],
                          "properties": {
                              "ready": {"type": "boolean"}, "url": {"type": "string"},
                              "generation": {"type": "integer"},
                              "member": {"type": "boolean"},
                              "owned": {"type": "array", "items": {"type": "integer"}},
                              "halted": {"type": "object",
                                         "description": "owned partitions stopped at a "
                                                        "batch this node cannot decode: "
                                                        "partition -> offset and reason",
                                         "additionalProperties": {"type": "string"}},
                              "partitions": {"type": "object", "additionalProperties": {
                                  "type": "object",
                                  "properties": {"position": {"type": "integer"},
                                                 "target": {"type": "integer"},
                                                 "lag": {"type": "integer"},
                                                 "caught_up": {"type": "boolean"}}}}}},
        },
        "headers": {
            "ETag": {"description": "the version: \"<partition>-<offset>\"",
                     "schema": {"type": "string", "pattern": "^\"[0-9]+-[0-9]+\"$"}},
            "RetryAfter": {"required": True, "description": "seconds to wait before retrying",
                           "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        },
        "responses": {
            "BadRequest": _err("invalid email, JSON, fields or If-Match use; If-None-Match "
                               "on a write (unsupported_precondition)"),
            "Unauthorized": {"description": "the node has an API token and the request "
                                            "did not carry it",
                             "headers": {"WWW-Authenticate": {
                                 "required": True, "schema": {"type": "string"}}},
                             "content": {"application/json": {
                                 "schema": _ref("schemas", "Error")}}},
            "PreconditionFailed": _err("If-Match does not match the current version"),
            "LengthRequired": _err("a body without Content-Length (and not chunked)"),
            "TooLarge": _err("body larger than max_body (body_too_large), or a value larger "
                             "than the topic takes (value_too_large)"),
            "UnsupportedMediaType": _err("Content-Type is not JSON"),
            "Unavailable": _unavailable(),
            "MethodNotAllowed": {
                "description": "any method a path does not list (answered for every path)",
                "headers": {"Allow": {"required": True, "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": _ref("schemas", "Error")}}},
        },
        "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "the node's API token (KSTATE_API_TOKEN or --api-token-file); "
                           "needed for PUT and DELETE "
                           "only when the node has one"}},
    }


def spec(node: str | None = None) -> Json:
    """The whole document (``node`` only names the node in ``info``)."""
    info: Json = {"title": "kstate", "version": "1",
                  "description": "Users in a compacted Kafka topic, sharded by a consumer "
                                 "group. Any node answers any request (forwarding to the "
                                 "key's owner). Errors are JSON {error, message}; a method a "
                                 "path does not list gets 405 with Allow "
                                 "(#/components/responses/MethodNotAllowed)."}
    if node is not None:
        info["x-node"] = node
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": {**_users(), **_ops()},
        "components": _components(),
        "x-websockets": {"/changes": {
            "summary": "Every change of the topic as JSON messages {key, value|null, "
                       "partition, offset}, after a hello {type, node, positions}",
            "parameters": [
                {"name": "from", "in": "query", "required": False,
                 "schema": {"type": "string"},
                 "description": "'beginning', or p:offset[,p:offset...] to resume after"},
                {"name": "key", "in": "query", "required": False, "schema": EMAIL}],
            "handshake_errors": {
                "400": "bad from or key, or a from offset past its partition's end "
                       "(invalid_from) (JSON error)",
                "503": "the node holds as many subscribers, or resumed ones, as it takes, "
                       "or cannot reach Kafka to replay from=, or a live subscriber's "
                       "wake of the idle feed got no end offsets within 10 s "
                       "(feed_unavailable) (JSON error, Retry-After)"},
            "close_codes": {"4001": "the subscriber lagged, or took nothing for "
                                    "feed_stall_timeout seconds: reconnect with from="}}},
    }


def register(app: QuartTrio, node: str) -> None:
    body = orjson.dumps(spec(node))

    @app.route("/openapi.json", methods=["GET"])
    async def openapi() -> Response:
        return Response(body, status=200, content_type="application/json")
