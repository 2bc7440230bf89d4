"""Every Kafka codec is readable: the codec libraries are runtime dependencies (installed by
``just setup`` and by deploy/Dockerfile, which installs the wheel's dependencies), and the
``compression`` setting picks the codec the node's producer writes with."""

from __future__ import annotations

import re
import tomllib

import pytest
from aiokafka import codec

from kstate.settings import COMPRESSION, SettingsError, load_settings
from tools.procs import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_aiokafka_is_installed_with_every_codec_extra():
    (dep,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("aiokafka")]
    m = re.fullmatch(r"aiokafka\[([a-z0-9,]+)\](.*)", dep)
    assert m, f"{dep!r}: aiokafka needs its codec extras"
    assert {"snappy", "lz4", "zstd"} <= set(m[1].split(","))


def test_this_environment_decodes_every_codec():
    # gzip is the standard library's; snappy, lz4 and zstd come with the extras (cramjam)
    for has in (codec.has_gzip, codec.has_snappy, codec.has_lz4, codec.has_zstd):
        assert has(), has.__name__
    payload = b'{"name":"Ann","email":"ann@example.com"}' * 20
    for encode, decode in ((codec.snappy_encode, codec.snappy_decode),
                           (codec.lz4_encode, codec.lz4_decode),
                           (codec.zstd_encode, codec.zstd_decode)):
        assert decode(encode(payload)) == payload


def test_the_image_installs_the_wheels_dependencies():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    installs = [line for line in text.splitlines() if re.search(r"\bpip install\b", line)]
    assert installs, "the image installs kstate with pip"
    assert not any("--no-deps" in line for line in installs), \
        "the image must install the wheel's dependencies (the codecs among them)"


def test_compression_setting():
    assert load_settings([], {}).kafka().compression == "none"
    for name in COMPRESSION:
        assert load_settings([], {"KSTATE_COMPRESSION": name}).kafka().compression == name
    assert load_settings(["--compression", "zstd"],
                         {"KSTATE_COMPRESSION": "gzip"}).kafka().compression == "zstd"
    with pytest.raises(SettingsError, match="compression: must be one of none, gzip"):
        load_settings([], {"KSTATE_COMPRESSION": "brotli"})
