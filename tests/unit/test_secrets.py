"""Secrets in kstate/settings.py: from an env var or a file, never a flag (``ps`` shows
flags to every user), never echoed in an error, a file read once with one trailing
newline dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from kstate.settings import SettingsError, describe, load_settings

TOKEN = "tok-0123456789abcdef"
SECRET_VALUE = "s3cret-value-that-must-not-echo"


def test_env_vars_give_the_secrets():
    s = load_settings([], {"KSTATE_API_TOKEN": TOKEN})
    assert s.api_token == TOKEN
    assert TOKEN not in repr(s)


@pytest.mark.parametrize(("flag", "env"), [("--api-token", "KSTATE_API_TOKEN"),
                                           ("--sasl-password", "KSTATE_SASL_PASSWORD")])
def test_a_secret_flag_is_refused_by_name_without_echoing_it(flag, env):
    for argv in ([flag, SECRET_VALUE], [f"{flag}={SECRET_VALUE}"]):
        with pytest.raises(SettingsError) as info:
            load_settings(argv, {})
        message = str(info.value)
        assert flag in message
        assert env in message
        assert f"{flag}-file" in message
        assert SECRET_VALUE not in message


def test_flags_are_never_abbreviated():
    with pytest.raises(SettingsError, match="unrecognized"):
        load_settings(["--api-token-fi", "/x"], {})


def test_the_table_shows_secrets_without_a_flag():
    rows = {env: flag for flag, env, _, _ in describe()}
    assert rows["KSTATE_API_TOKEN"] == "-"
    assert rows["KSTATE_SASL_PASSWORD"] == "-"
    assert rows["KSTATE_API_TOKEN_FILE"] == "--api-token-file"
    assert rows["KSTATE_SASL_PASSWORD_FILE"] == "--sasl-password-file"


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_token_file_by_flag_or_env(tmp_path: Path, ending: str):
    path = tmp_path / "token"
    path.write_bytes(f"{TOKEN}{ending}".encode())
    assert load_settings(["--api-token-file", str(path)], {}).api_token == TOKEN
    assert load_settings([], {"KSTATE_API_TOKEN_FILE": str(path)}).api_token == TOKEN


def test_password_file_keeps_spaces_and_drops_one_newline(tmp_path: Path):
    path = tmp_path / "pw"
    path.write_bytes(b" pw with spaces \n\n")
    env = {"KSTATE_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KSTATE_SASL_USERNAME": "u",
           "KSTATE_SASL_PASSWORD_FILE": str(path)}
    s = load_settings([], env)
    assert s.sasl_password == " pw with spaces \n"
    assert "spaces" not in repr(s)


def _error(argv: list[str], env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(argv, env)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_secret_files_are_one_line_errors_that_never_quote_the_content(tmp_path: Path):
    missing = tmp_path / "missing"
    assert "cannot read" in _error(["--api-token-file", str(missing)], {})
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    assert "is empty" in _error(["--api-token-file", str(empty)], {})
    huge = tmp_path / "huge"
    huge.write_bytes(SECRET_VALUE.encode() * 1000)
    assert SECRET_VALUE not in _error(["--api-token-file", str(huge)], {})
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + SECRET_VALUE.encode())
    assert "UTF-8" in _error(["--api-token-file", str(binary)], {})
    short = tmp_path / "short"
    short.write_bytes(b"short\n")
    message = _error(["--api-token-file", str(short)], {})
    assert "api_token" in message
    assert "short'" not in message
    a_dir = tmp_path
    assert "cannot read" in _error(["--api-token-file", str(a_dir)], {})


def test_a_secret_from_both_env_and_file_is_ambiguous(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    message = _error(["--api-token-file", str(path)], {"KSTATE_API_TOKEN": TOKEN})
    assert "KSTATE_API_TOKEN" in message
    assert TOKEN not in message
