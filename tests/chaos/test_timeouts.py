"""The harness's client timeout against a node's answer bound: a timeout means the node
broke its bound (a violation), and the report counts timeouts apart from latency."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from actors.router import TABLE_WAIT
from kstate.settings import Settings
from tools.chaos.checker import Checker
from tools.chaos.harness import ChaosConfig, client_timeout, node_answer_bound
from tools.chaos.report import timeouts
from tools.chaos.traffic import Traffic

pytestmark = pytest.mark.fast  # pure logic, no broker


def test_the_client_waits_longer_than_a_node_may_take() -> None:
    bound = node_answer_bound({})
    # a forwarded request: the first node's wait for a routing table, then the proxy's
    # deadline, which covers the owner's own worst case
    assert bound == TABLE_WAIT + Settings().proxy_deadline
    assert bound > Settings().owner_worst_case
    assert client_timeout(ChaosConfig(), bound) > bound
    assert client_timeout(ChaosConfig(timeout=3.0), bound) == 3.0
    # the nodes' settings move the bound
    slow = node_answer_bound({"KSTATE_WRITE_TIMEOUT": "9", "KSTATE_CATCHUP_TIMEOUT": "7"})
    assert slow == TABLE_WAIT + Settings(write_timeout=9.0, catchup_timeout=7.0).proxy_deadline
    assert slow > bound
    assert node_answer_bound({"KSTATE_PROXY_TIMEOUT": "40"}) == TABLE_WAIT + 40.0


def traffic(timeout: float, bound: float, up: bool = True) -> Traffic:
    cluster: Any = SimpleNamespace(still_up=lambda m, inc: up)
    return Traffic(SimpleNamespace(), cluster, Checker([]), random.Random(1), timeout, 0.0,
                   SimpleNamespace(), bound=bound)  # type: ignore[arg-type]


def test_a_live_node_without_an_answer_in_its_bound_is_a_violation() -> None:
    m: Any = SimpleNamespace(name="n1")
    t = traffic(22.0, 20.0)
    assert t._err(m, 0, httpx.ReadTimeout("slow"), "GET k").kind == "answer_timeout"
    assert t._err(m, 0, httpx.WriteTimeout("slow"), "PUT k").kind == "answer_timeout"
    # the harness's side of the connection: not the node's answer
    assert t._err(m, 0, httpx.ConnectTimeout("syn"), "GET k").kind == "timeout"
    assert t._err(m, 0, httpx.PoolTimeout("pool"), "GET k").kind == "timeout"
    # a client timeout under the bound says nothing about the node
    assert traffic(10.0, 20.0)._err(m, 0, httpx.ReadTimeout("x"), "GET k").kind == "timeout"
    # a node the harness stopped meanwhile
    assert traffic(22.0, 20.0, up=False)._err(
        m, 0, httpx.ReadTimeout("x"), "GET k").kind == "node_down"


def test_the_report_counts_timeouts() -> None:
    t = traffic(22.0, 20.0)
    t.stats.add("workload", "read", "answer_timeout", 22.0, answered=False)
    t.stats.add("probe", "read", "timeout", 2.0, answered=False)
    t.stats.add("workload", "write", "acked", 0.01, answered=True)
    assert timeouts(SimpleNamespace(traffic=t)) == {  # type: ignore[arg-type]
        "client_timeout_s": 22.0, "node_answer_bound_s": 20.0, "answer_timeout": 1,
        "timeout": 1}
    assert t.stats.latency == {"write": [0.01]}  # a request without an answer has none
