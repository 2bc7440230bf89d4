"""The sticky, balanced assignment plan and the routing-table wire format."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kstate.core.assignment import (
    Claim,
    decode_claim,
    decode_table,
    encode_claim,
    encode_table,
    member_url_ok,
    plan,
)


def claims(**owned: list[int]) -> dict[str, Claim]:
    return {f"m-{name}": Claim(url=f"{name}:80", owned=frozenset(parts))
            for name, parts in owned.items()}


def test_single_member_gets_everything():
    assert plan(10, claims(a=[])) == {"m-a": list(range(10))}


def test_members_keep_what_they_hold_when_balanced():
    members = claims(a=[0, 1, 2, 3, 4], b=[5, 6, 7, 8, 9])
    assert plan(10, members) == {"m-a": [0, 1, 2, 3, 4], "m-b": [5, 6, 7, 8, 9]}


def test_join_moves_only_what_the_new_member_needs():
    before = {"m-a": [0, 1, 2, 3, 4], "m-b": [5, 6, 7, 8, 9]}
    members = claims(a=before["m-a"], b=before["m-b"], c=[])
    after = plan(10, members)
    moved = sum(1 for m, parts in after.items() for p in parts if p not in before.get(m, []))
    assert sorted(len(p) for p in after.values()) == [3, 3, 4]
    assert moved == 3  # the minimum: c needs 3


def test_restart_with_same_url_gets_its_quota_back_without_moving_others():
    # c restarted: it holds nothing now, but a and b keep exactly what they had.
    members = claims(a=[0, 1, 2, 3], b=[4, 5, 6], c=[])
    after = plan(10, members)
    assert after["m-a"] == [0, 1, 2, 3]
    assert after["m-b"] == [4, 5, 6]
    assert after["m-c"] == [7, 8, 9]


def test_conflicting_claims_go_to_one_member():
    after = plan(4, claims(a=[0, 1], b=[1, 2]))
    all_parts = sorted(p for parts in after.values() for p in parts)
    assert all_parts == [0, 1, 2, 3]


@given(n=st.integers(1, 64), owned=st.lists(st.sets(st.integers(-2, 70)), min_size=1,
                                            max_size=8))
def test_plan_is_complete_disjoint_and_balanced(n, owned):
    members = {f"m{i}": Claim(url=f"h{i}:1", owned=frozenset(o)) for i, o in enumerate(owned)}
    after = plan(n, members)
    flat = [p for parts in after.values() for p in parts]
    assert sorted(flat) == list(range(n))
    sizes = [len(p) for p in after.values()]
    assert max(sizes) - min(sizes) <= 1


def test_claim_and_table_round_trip():
    claim = Claim(url="127.0.0.1:8080", owned=frozenset({3, 1}))
    assert decode_claim(encode_claim(claim)) == claim
    assert decode_claim(b"garbage") == Claim(url="", owned=frozenset())
    # a rejoin asked for a stale table: the claim differs from the one before it
    again = Claim(url="127.0.0.1:8080", owned=frozenset({3, 1}), rejoin=1)
    assert encode_claim(again) != encode_claim(claim)
    assert decode_claim(encode_claim(again)) == again
    members = claims(a=[], b=[])
    assigned = plan(4, members)
    table = decode_table(encode_table(assigned, members), generation=7)
    assert table.generation == 7
    assert table.owners == {p: members[m].url for m, parts in assigned.items() for p in parts}
    assert sorted(table.owners) == [0, 1, 2, 3]
    assert sorted(table.members.values()) == ["a:80", "b:80"]


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "node-1.svc.cluster.local:8000",
                                 "[::1]:8080", "::1:8080", "[fe80::1%eth0]:80", "h_1:1"])
def test_member_urls_peers_can_dial(url):
    assert member_url_ok(url)


@pytest.mark.parametrize("url", ["", "node:", "node:0", "node:65536", "node:123456",
                                 ":8080", "n\u00f6de:8080", "node 1:8080", "evil@node:80",
                                 "node/x:80", "node?:80", "node#:80", "node\r\n:80",
                                 "node:8\u0663", "node"])
def test_member_urls_refused(url):
    assert not member_url_ok(url)


def test_a_member_url_peers_cannot_dial_is_in_no_claim_and_owns_nothing():
    # a member of another version (or a hand-made claim) with a url that is not
    # host:port as peers dial it: it holds nothing, and its partitions have no owner
    # (no_owner, 503) rather than an owner that can never be reached
    bad = orjson.dumps({"url": "n\u00f6de:8080", "owned": [0, 1]})
    assert decode_claim(bad) == Claim(url="", owned=frozenset())
    assert decode_claim(orjson.dumps({"url": 8080, "owned": [0]})).url == ""
    raw = orjson.dumps({"owners": {"0": "a:80", "1": "b c:80", "2": "n\u00f6de:80"},
                        "members": {"m1": "a:80", "m2": "b c:80"}})
    table = decode_table(raw, generation=3)
    assert table.owners == {0: "a:80"}
    assert table.members == {"m1": "a:80", "m2": ""}
