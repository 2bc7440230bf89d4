"""Unit tests of kstate/settings.py: load_settings(argv, environ) — defaults, KSTATE_*
env vars, flags beating env vars, conversions, and one-line errors for bad values."""

from __future__ import annotations

import dataclasses

import pytest
import trustme

from kstate.settings import Settings, SettingsError, describe, load_settings
from kstate.settings_help import env_name


def test_defaults_without_flags_or_env():
    s = load_settings([], {})
    assert s == Settings()
    assert s.advertised_url == s.listen  # advertise defaults to listen
    assert s.heartbeat_ms == s.session_timeout_ms // 6


def test_env_names_are_kstate_upper_field():
    for flag, env, _default, _text in describe():
        assert env.startswith("KSTATE_")
        if flag != "-":
            assert env == "KSTATE_" + flag.removeprefix("--").replace("-", "_").upper()
    assert env_name("session_timeout_ms") == "KSTATE_SESSION_TIMEOUT_MS"


def test_every_field_is_described():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {env_name(f) for f in fields} == {env for _, env, _, _ in describe()}


ENV = {
    "KSTATE_BOOTSTRAP": "k1:9092,k2:9093",
    "KSTATE_TOPIC": "users.v2",
    "KSTATE_PARTITIONS": "12",
    "KSTATE_REPLICATION": "3",
    "KSTATE_GROUP": "g1",
    "KSTATE_LISTEN": "0.0.0.0:8000",
    "KSTATE_ADVERTISE": "node-1.svc:8000",
    "KSTATE_INSTANCE_ID": "node-1",
    "KSTATE_SESSION_TIMEOUT_MS": "6000",
    "KSTATE_CATCHUP_TIMEOUT": "2.5",
    "KSTATE_WRITE_TIMEOUT": "3",
    "KSTATE_MAX_BODY": "2048",
    "KSTATE_LOG_LEVEL": "debug",
    "KSTATE_LOG_FORMAT": "json",
}


def test_env_vars_are_read_and_converted():
    s = load_settings([], ENV)
    assert s.bootstrap == "k1:9092,k2:9093"
    assert s.topic == "users.v2"
    assert s.partitions == 12
    assert s.replication == 3
    assert s.group == "g1"
    assert s.listen == "0.0.0.0:8000"
    assert s.advertise == "node-1.svc:8000"
    assert s.advertised_url == "node-1.svc:8000"
    assert s.instance_id == "node-1"
    assert s.session_timeout_ms == 6000
    assert s.heartbeat_ms == 1000  # a sixth: see Settings.heartbeat_ms
    assert s.catchup_timeout == 2.5
    assert isinstance(s.write_timeout, float)
    assert s.write_timeout == 3.0
    assert s.max_body == 2048
    assert s.log_level == "debug"
    assert s.log_format == "json"


def test_flags_beat_env_vars():
    s = load_settings(["--partitions", "4", "--topic", "flagged", "--catchup-timeout", "0.5",
                       "--listen", "127.0.0.1:9000", "--advertise", "10.0.0.1:9000"], ENV)
    assert s.partitions == 4
    assert s.topic == "flagged"
    assert s.catchup_timeout == 0.5
    assert s.listen == "127.0.0.1:9000"
    assert s.advertise == "10.0.0.1:9000"
    assert s.replication == 3  # not given as a flag: the env var still counts


def test_a_valid_flag_overrides_an_invalid_env_var():
    s = load_settings(["--partitions", "2"], {"KSTATE_PARTITIONS": "ten"})
    assert s.partitions == 2


def test_strings_are_trimmed():
    s = load_settings([], {"KSTATE_TOPIC": "  spaced  ", "KSTATE_GROUP": " g "})
    assert s.topic == "spaced"
    assert s.group == "g"


def test_other_env_vars_are_ignored():
    s = load_settings([], {"PARTITIONS": "0", "KSTATE_NOT_A_SETTING": "x", "kstate_topic": "t"})
    assert s == Settings()


def test_wildcard_listen_is_fine_with_advertise():
    s = load_settings(["--listen", "0.0.0.0:8080", "--advertise", "127.0.0.1:8080"], {})
    assert s.advertised_url == "127.0.0.1:8080"
    s = load_settings(["--listen", "127.0.0.1:0"], {})  # port 0: any free port
    assert s.listen == "127.0.0.1:0"


def test_settings_are_frozen():
    s = load_settings([], {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.partitions = 3  # type: ignore[misc]


INVALID = [
    ("listen_port_too_big", ["--listen", "127.0.0.1:65536"], {}, "listen"),
    ("listen_port_not_number", ["--listen", "127.0.0.1:x"], {}, "listen"),
    ("listen_no_port", ["--listen", "localhost"], {}, "listen"),
    ("wildcard_listen", ["--listen", "0.0.0.0:8080"], {}, "listen"),
    ("wildcard_listen_ipv6", [], {"KSTATE_LISTEN": ":::8080"}, "listen"),
    ("empty_listen_host", ["--listen", ":8080"], {}, "listen"),
    ("wildcard_advertise", ["--advertise", "0.0.0.0:8080"], {}, "advertise"),
    ("advertise_port_zero", ["--advertise", "10.0.0.1:0"], {}, "advertise"),
    ("advertise_not_ascii", ["--advertise", "n\u00f6de-1.svc:8000"], {}, "advertise"),
    ("advertise_space", ["--advertise", "node 1:8000"], {}, "advertise"),
    ("advertise_userinfo", ["--advertise", "evil@node-1:8000"], {}, "advertise"),
    ("listen_not_ascii", ["--listen", "n\u00f6de:8000"], {}, "listen"),
    # str.isdigit() takes these; int() refuses "²" (a ValueError, not a one-line refusal)
    # and reads "٨٠٨٠" as 8080, a url every peer drops (member_url_ok): no owner, ever
    ("listen_port_superscript", [], {"KSTATE_LISTEN": "127.0.0.1:\u00b2"}, "listen"),
    ("listen_port_arabic_indic", ["--listen", "127.0.0.1:\u0668\u0660"], {}, "listen"),
    ("advertise_port_arabic_indic", [], {"KSTATE_ADVERTISE": "node1:\u0668\u0660\u0668\u0660"},
     "advertise"),
    ("bootstrap_port_superscript", ["--bootstrap", "k1:9\u00b2"], {}, "bootstrap"),
    ("advertise_port_six_digits", ["--advertise", "node1:008080"], {}, "advertise"),
    ("listen_port_six_digits", ["--listen", "127.0.0.1:008080"], {}, "listen"),
    ("bootstrap_no_port", ["--bootstrap", "kafka"], {}, "bootstrap"),
    ("bootstrap_trailing_comma", [], {"KSTATE_BOOTSTRAP": "k1:9092,"}, "bootstrap"),
    ("partitions_zero", ["--partitions", "0"], {}, "partitions"),
    ("partitions_negative", [], {"KSTATE_PARTITIONS": "-1"}, "partitions"),
    ("partitions_not_int", [], {"KSTATE_PARTITIONS": "ten"}, "KSTATE_PARTITIONS"),
    ("partitions_float", ["--partitions", "2.5"], {}, "partitions"),
    ("partitions_empty_env", [], {"KSTATE_PARTITIONS": ""}, "KSTATE_PARTITIONS"),
    ("replication_zero", ["--replication", "0"], {}, "replication"),
    ("session_too_short", ["--session-timeout-ms", "10"], {}, "session_timeout_ms"),
    ("catchup_zero", ["--catchup-timeout", "0"], {}, "catchup_timeout"),
    ("catchup_nan", [], {"KSTATE_CATCHUP_TIMEOUT": "nan"}, "catchup_timeout"),
    ("catchup_inf", [], {"KSTATE_CATCHUP_TIMEOUT": "inf"}, "catchup_timeout"),
    ("write_timeout_negative", ["--write-timeout", "-1"], {}, "write_timeout"),
    ("max_body_tiny", ["--max-body", "10"], {}, "max_body"),
    ("log_level_unknown", ["--log-level", "chatty"], {}, "log_level"),
    ("log_format_unknown", [], {"KSTATE_LOG_FORMAT": "xml"}, "log_format"),
    ("topic_bad_chars", ["--topic", "a/b"], {}, "topic"),
    ("topic_empty", [], {"KSTATE_TOPIC": "   "}, "topic"),
    ("topic_too_long", ["--topic", "t" * 250], {}, "topic"),
    ("group_empty", ["--group", ""], {}, "group"),
    ("auth_window_zero", ["--cluster-auth-window", "0"], {}, "cluster_auth_window"),
    ("auth_window_huge", [], {"KSTATE_CLUSTER_AUTH_WINDOW": "3600"}, "cluster_auth_window"),
    ("auth_nonces_tiny", ["--cluster-auth-nonces", "10"], {}, "cluster_auth_nonces"),
    ("require_durable_word", [], {"KSTATE_REQUIRE_DURABLE": "maybe"}, "require_durable"),
    ("feed_subscribers_zero", ["--feed-max-subscribers", "0"], {}, "feed_max_subscribers"),
    ("feed_resumed_over_all", ["--feed-max-subscribers", "4", "--feed-max-resumed", "5"], {},
     "feed_max_resumed"),
    ("feed_resumed_negative", [], {"KSTATE_FEED_MAX_RESUMED": "-1"}, "feed_max_resumed"),
    ("feed_stall_zero", ["--feed-stall-timeout", "0"], {}, "feed_stall_timeout"),
    ("unknown_flag", ["--nope", "1"], {}, "--nope"),
    ("flag_without_value", ["--topic"], {}, "--topic"),
]


@pytest.mark.parametrize(("argv", "env", "mentions"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_values_raise_one_line_errors(argv, env, mentions):
    with pytest.raises(SettingsError) as info:
        load_settings(argv, env)
    message = str(info.value)
    assert mentions in message
    assert "\n" not in message
    assert message.strip() == message
    assert message


DURATIONS = ["catchup_timeout", "write_timeout", "http_head_timeout", "http_body_timeout",
             "http_idle_timeout", "feed_stall_timeout", "cluster_auth_window", "proxy_timeout"]


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("raw", ["-1", "nan", "inf", "-inf", "0.0005", "1e-9"])
def test_every_duration_refuses_nonsense_in_one_line(name, raw):
    # write_timeout 0.0005 used to pass and become Kafka's request_timeout_ms=0
    flag = "--" + name.replace("_", "-")
    for argv, env in (([f"{flag}={raw}"], {}), ([], {"KSTATE_" + name.upper(): raw})):
        with pytest.raises(SettingsError) as info:
            load_settings(argv, env)
        assert str(info.value).startswith(name + ":")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", [d for d in DURATIONS if d != "proxy_timeout"])
def test_every_duration_refuses_zero(name):
    with pytest.raises(SettingsError, match=f"^{name}:"):
        load_settings(["--" + name.replace("_", "-"), "0"], {})


def test_shortest_durations_are_taken():
    s = load_settings(["--write-timeout", "0.1", "--catchup-timeout", "0.1",
                       "--feed-stall-timeout", "0.1", "--http-head-timeout", "0.1"], {})
    assert s.kafka().request_timeout_ms == 100
    assert load_settings(["--proxy-timeout", "0"], {}).proxy_timeout == 0  # derived


def test_listen_port_zero_is_the_bound_one():
    assert load_settings(["--listen", "127.0.0.1:0"], {}).listen == "127.0.0.1:0"


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        load_settings(["--help"], {})
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag, env, _default, _text in describe():
        if flag != "-":
            assert flag in out
            assert env in out


@pytest.mark.parametrize(("raw", "want"), [
    ("true", True), ("1", True), ("YES", True), (" on ", True),
    ("false", False), ("0", False), ("no", False), ("Off", False),
])
def test_standby_takes_true_and_false_words(raw, want):
    assert load_settings([], {"KSTATE_STANDBY": raw}).standby is want
    assert load_settings(["--standby", raw], {}).standby is want


def test_standby_is_off_by_default_and_rejects_other_words():
    assert load_settings([], {}).standby is False
    with pytest.raises(SettingsError, match="standby: KSTATE_STANDBY 'maybe' is not true/false"):
        load_settings([], {"KSTATE_STANDBY": "maybe"})


def test_proxy_timeout_is_derived_from_the_owners_worst_case_and_never_shorter():
    s = load_settings([], {})
    assert s.proxy_timeout == 0
    # 2 s table wait + write_timeout (lock) + catchup_timeout + write_timeout + 1 s
    assert s.proxy_deadline == s.owner_worst_case == 2 + 5 + 5 + 5 + 1
    s = load_settings(["--write-timeout", "2", "--catchup-timeout", "1"], {})
    assert s.proxy_deadline == 2 + 2 + 1 + 2 + 1
    assert load_settings(["--proxy-timeout", "30"], {}).proxy_deadline == 30
    with pytest.raises(SettingsError, match=r"proxy_timeout: 5\.0s is shorter"):
        load_settings(["--proxy-timeout", "5"], {})


def test_http_front_limits_are_settings():
    s = load_settings(["--http-max-connections", "10", "--http-head-timeout", "2.5",
                       "--http-idle-timeout", "9", "--http-max-head-bytes", "4096"], {})
    assert (s.http_max_connections, s.http_head_timeout, s.http_idle_timeout,
            s.http_max_head_bytes, s.http_body_timeout) == (10, 2.5, 9.0, 4096, 30.0)
    for flag, value in (("--http-max-connections", "0"), ("--http-head-timeout", "0"),
                        ("--http-max-head-bytes", "100")):
        with pytest.raises(SettingsError, match=flag[2:].replace("-", "_")):
            load_settings([flag, value], {})


def test_tls_files_must_exist_go_together_and_load(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (tmp_path / n for n in ("c.pem", "k.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    s = load_settings(["--tls-certfile", str(cert_file), "--tls-keyfile", str(key_file),
                       "--tls-cafile", str(ca_file)], {})
    assert s.tls_certfile == str(cert_file)
    with pytest.raises(SettingsError, match="go together"):
        load_settings(["--tls-certfile", str(cert_file)], {})
    with pytest.raises(SettingsError, match="tls_cafile needs tls_certfile"):
        load_settings(["--tls-cafile", str(ca_file)], {})
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(["--tls-certfile", str(tmp_path / "nope.pem"),
                       "--tls-keyfile", str(key_file)], {})
    with pytest.raises(SettingsError, match="cannot be used"):  # a key that is no key
        load_settings(["--tls-certfile", str(cert_file), "--tls-keyfile", str(ca_file)], {})
