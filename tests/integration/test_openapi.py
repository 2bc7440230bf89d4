"""The OpenAPI document stays true to the app: every route is described (and nothing
else), it is served by a live node, and schemathesis, fuzzing that node over real HTTP,
finds no 5xx and no response the document does not describe."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.offline import offline_services
from tools.procs import REPO, wait_ready, wait_stable
from web.app import create_app
from web.openapi import spec

IMPLICIT = {"HEAD", "OPTIONS"}  # answered by the framework for every GET route
OPERATIONS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SCHEMATHESIS_EXAMPLES = 100  # per operation and phase: keeps the run well under a minute


def openapi_path(rule: str) -> str:
    """werkzeug's /users/<path:email> -> OpenAPI's /users/{email}."""
    out, rest = "", rule
    while "<" in rest:
        head, _, tail = rest.partition("<")
        converter, _, tail = tail.partition(">")
        out += head + "{" + converter.rpartition(":")[2] + "}"
        rest = tail
    return out + rest


def test_every_route_is_in_the_spec_and_nothing_else():
    app = create_app(offline_services())
    doc = spec()
    routes: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    for rule in app.url_map.iter_rules():
        if rule.websocket:
            sockets.add(openapi_path(rule.rule))
            continue
        for method in (rule.methods or set()) - IMPLICIT:
            routes.add((openapi_path(rule.rule), method.lower()))
    documented = {(path, method) for path, ops in doc["paths"].items()
                  for method in ops if method in OPERATIONS}
    assert routes - documented == set(), "routes missing from web/openapi.py"
    assert documented - routes == set(), "web/openapi.py describes routes the app lacks"
    assert sockets == set(doc["x-websockets"]), "websocket routes and x-websockets differ"
    assert len(routes) >= 12  # the seed API, REST, ops and the dashboard


def test_every_operation_documents_its_errors():
    doc = spec()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            statuses = set(op["responses"])
            assert op.get("operationId"), (path, method)
            if path in ("/user", "/users/{email}"):
                assert {"400", "503"} <= statuses, (path, method)
                if method == "get":
                    assert {"200", "404"} <= statuses
                else:
                    assert {"401", "412"} <= statuses, (path, method)
                if method == "put":
                    assert {"411", "413", "415"} <= statuses, (path, method)
    unavailable = doc["components"]["responses"]["Unavailable"]
    assert unavailable["headers"]["Retry-After"]["$ref"] == "#/components/headers/RetryAfter"
    assert doc["components"]["headers"]["RetryAfter"]["required"] is True
    found = doc["paths"]["/users/{email}"]["get"]["responses"]["200"]
    assert found["headers"]["ETag"]["required"] is True
    assert "Allow" in doc["components"]["responses"]["MethodNotAllowed"]["headers"]


async def test_live_node_serves_the_spec(make_node, client):
    node = make_node()
    await wait_ready(client, node)
    r = await client.get(f"{node.base}/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["paths"] == spec()["paths"]
    assert doc["info"]["x-node"] == node.url


async def test_schemathesis_finds_no_server_error_or_schema_violation(make_node, client,
                                                                      artifacts: Path):
    """Two nodes with an API token, so about half the keys are forwarded to their owner
    and writes need the token; every phase (examples, coverage, fuzzing, and stateful:
    the links of web/openapi.py chain a write to a read, a conditional replace and a
    conditional delete), positive and negative data. Every check but
    positive_data_acceptance: "schema-valid" requests may rightly get 400 (a body email
    that differs from the URL's, a non-ASCII email over 254 bytes) or 412 (a random
    If-Match): rules JSON Schema cannot state."""
    token = "tok-" + secrets.token_hex(16)
    a = make_node(KSTATE_API_TOKEN=token)
    await wait_ready(client, a)  # the first node creates the topic
    b = make_node(KSTATE_API_TOKEN=token)
    table = await wait_stable(client, [a, b], 10)
    assert set(table.values()) == {a.url, b.url}
    report = artifacts / "schemathesis-junit.xml"
    # Links come from the document only: inferred ones would make the seed GET (no
    # path parameter, so "likely to succeed") the only entry point of every scenario,
    # and a random email's GET leads nowhere; the writes the links start from are PUTs.
    config = artifacts / "schemathesis.toml"
    config.write_text("[phases.stateful.inference]\nalgorithms = []\n")
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config),
           "run", f"{a.base}/openapi.json", "-H", f"Authorization: Bearer {token}",
           "--phases", "examples,coverage,fuzzing,stateful", "--mode", "all",
           "--checks", "all", "--exclude-checks", "positive_data_acceptance",
           "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--seed", "7", "--workers", "1",
           "--request-timeout", "15", "--generation-database", "none", "--no-color",
           "--report", "junit", "--report-junit-path", str(report)]
    started = time.monotonic()
    result = await trio.run_process(
        cmd, capture_stdout=True, stderr=subprocess.STDOUT, check=False, cwd=artifacts,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.monotonic() - started
    out = result.stdout.decode(errors="replace")
    (artifacts / "schemathesis.txt").write_text(out)
    assert result.returncode == 0, out[-6000:]
    # Every operation was fuzzed (schemathesis leaves out the document's own URL), and
    # the stateful phase ran.
    fuzzed = {case.get("name") for case in ElementTree.parse(report).iter("testcase")}
    expected = {f"{method.upper()} {path}" for path, ops in spec()["paths"].items()
                for method in ops} - {"GET /openapi.json"}
    assert expected <= fuzzed, expected - fuzzed
    links = next(line for line in out.splitlines() if "API Links:" in line)
    covered, _, rest = links.partition(":")[2].strip().partition(" covered / ")
    assert int(covered) > 0, links
    assert int(covered) == int(rest.split()[0]), links
    # a (the only node schemathesis talks to) forwarded requests to b, and the writes
    # among them were signed and accepted: a forwards a write without the client's
    # token, so b answers it 2xx only for a node signature that verified, and a 401
    # there is a signature b refused.
    forwarded = sample(await metrics_of(client, a), "kstate_proxy_forwarded_total")
    assert sum(forwarded.values()) > 0, forwarded
    at_b = sample(await metrics_of(client, b), "kstate_http_requests_total")
    writes = {labels: n for labels, n in at_b.items()
              if dict(labels)["method"] in ("PUT", "DELETE")}
    accepted = sum(n for labels, n in writes.items() if dict(labels)["status"][0] == "2")
    assert accepted > 0, writes
    assert not [labels for labels in writes if dict(labels)["status"] == "401"], writes
    for node in (a, b):
        assert node.alive(), node.log_text()[-3000:]
        assert "Traceback" not in node.log_text(), node.log_text()[-3000:]
    print(f"\nschemathesis: {seconds:.1f}s, {out.strip().splitlines()[-1]}; forwarded writes "
          f"b accepted: {accepted:.0f}")


async def metrics_of(client, node) -> str:
    r = await client.get(f"{node.base}/metrics")
    assert r.status_code == 200
    return r.text


def sample(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples ``name`` of a Prometheus exposition: sorted labels -> value."""
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(exposition)
            for s in family.samples if s.name == name}
