"""Unit tests of kstate/core/users.py: emails and user documents (and that web/errors.py
maps an invalid user to a 400)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstate.core.users import MAX_EMAIL_BYTES, InvalidUser, parse_email, user_value
from web.errors import BadRequest

# -- parse_email --------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "email"), [
    ("bob@example.com", "bob@example.com"),
    ("  bob@example.com\t", "bob@example.com"),
    ("Bob.Smith+tag@Example.COM", "Bob.Smith+tag@Example.COM"),  # kept exactly
    ("é@exämple.com", "é@exämple.com"),
    ("a@b", "a@b"),
    ("x" * (MAX_EMAIL_BYTES - 2) + "@y", "x" * (MAX_EMAIL_BYTES - 2) + "@y"),
])
def test_valid_emails(raw, email):
    assert parse_email(raw) == email


@pytest.mark.parametrize("raw", [
    "", "   ", "plain", "@", "@b.com", "a@", "a@b@c", "a b@c.com", "a@b .com",
    "a\tb@c.com", "a\x00b@c.com", "a\x1fb@c.com", "a\x7fb@c.com", "a\x9bb@c.com",
    "a\u200bb@c.com", "a\u00a0b@c.com",
    "x" * (MAX_EMAIL_BYTES - 1) + "@y",  # 255 bytes
    "é" * 125 + "@y.com",  # 125 characters, 256 bytes
])
def test_invalid_emails(raw):
    with pytest.raises(InvalidUser) as info:
        parse_email(raw, "path email")
    assert BadRequest.of(info.value).status == 400
    assert info.value.code == "invalid_email"
    assert "path email" in info.value.message


def test_missing_email():
    with pytest.raises(InvalidUser) as info:
        parse_email(None, "email")
    assert (BadRequest.of(info.value).status, info.value.code) == (400, "missing_email")


# -- user_value ---------------------------------------------------------------------


def test_user_value_is_canonical_compact_json_name_first():
    key, value = user_value({"email": "a@b.c", "name": "A"}, None)
    assert key == "a@b.c"
    assert value == b'{"name":"A","email":"a@b.c"}'
    key, value = user_value({"name": "Zoë \"Z\""}, "z@b.c")
    assert key == "z@b.c"
    assert orjson.loads(value) == {"name": "Zoë \"Z\"", "email": "z@b.c"}


def test_key_email_wins_when_body_has_none_or_the_same():
    assert user_value({"name": "A"}, "a@b.c")[0] == "a@b.c"
    assert user_value({"name": "A", "email": None}, "a@b.c")[0] == "a@b.c"
    assert user_value({"name": "A", "email": " a@b.c "}, "a@b.c") == \
        ("a@b.c", b'{"name":"A","email":"a@b.c"}')


@pytest.mark.parametrize(("doc", "key", "code"), [
    ({"name": "A", "email": "other@b.c"}, "a@b.c", "email_mismatch"),
    ({"name": "A", "email": "A@b.c"}, "a@b.c", "email_mismatch"),  # case matters
    ({"name": "A"}, None, "missing_email"),
    ({"name": "A", "email": None}, None, "missing_email"),
    ({"name": "A", "email": "bad"}, None, "invalid_email"),
    ({"name": "A", "email": "bad"}, "a@b.c", "invalid_email"),
    ({"name": "A", "email": 3}, "a@b.c", "invalid_email"),
    ({"name": "A", "email": ["a@b.c"]}, None, "invalid_email"),
    ({}, "a@b.c", "invalid_name"),
    ({"name": None}, "a@b.c", "invalid_name"),
    ({"name": 1}, "a@b.c", "invalid_name"),
    ({"name": True}, "a@b.c", "invalid_name"),
    ({"name": {"first": "A"}}, "a@b.c", "invalid_name"),
    ({"name": "A", "age": 3}, "a@b.c", "unknown_fields"),
    ({"name": "A", "Email": "a@b.c"}, "a@b.c", "unknown_fields"),
])
def test_user_value_refusals(doc, key, code):
    with pytest.raises(InvalidUser) as info:
        user_value(doc, key)
    assert BadRequest.of(info.value).status == 400
    assert info.value.code == code
    assert info.value.message


def test_unknown_fields_are_all_named():
    with pytest.raises(InvalidUser) as info:
        user_value({"name": "A", "zeta": 1, "alpha": 2}, "a@b.c")
    assert "alpha" in info.value.message
    assert "zeta" in info.value.message




@settings(max_examples=2000)
@given(st.text())
def test_the_space_and_control_rule_is_any_space_or_unprintable_char(text):
    # parse_email's check, two C loops, is this per-character rule
    assert (" " in text or not text.isprintable()) == any(
        c.isspace() or not c.isprintable() for c in text)
