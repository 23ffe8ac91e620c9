"""Fuzzing agent.toml: random text and random TOML structures give a Config or a
ConfigError naming the file (and the key, when one is at fault) — nothing else."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import _SECTIONS, Config, NvrCamera, parse
from agent.errors import ConfigError
from tests.examples import examples
from tests.hardening.strategies import refusal

SOURCE = "/etc/camagent/fuzz.toml"
INT64 = 2**63 - 1


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise AssertionError(value)


def toml_document(sections: dict[str, Any]) -> str:
    lines = []
    for name, body in sections.items():
        if isinstance(body, dict):
            lines.append(f"[{json.dumps(name)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in body.items()]
        else:
            lines.append(f"{json.dumps(name)} = {toml_value(body)}")
    return "\n".join(lines) + "\n"


scalar = st.one_of(
    st.booleans(),
    st.integers(-INT64 - 1, INT64),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        ["camera", "nvr", "https://cloud.example.com", "https://h:99999", "https://", "rtsp://x/1"]
    ),
)
values = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
camera_tables = st.lists(
    st.dictionaries(
        st.sampled_from([f.name for f in fields(NvrCamera)] + ["x"]), values, max_size=5
    ),
    max_size=3,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    names = draw(st.lists(st.sampled_from([*_SECTIONS, "extra"]), unique=True, max_size=4))
    sections: dict[str, Any] = {}
    for name in names:
        known = [f.name for f in fields(_SECTIONS[name])] if name in _SECTIONS else []
        keys = draw(st.lists(st.sampled_from([*known, "unknown_key"]), unique=True, max_size=5))
        body = {key: draw(camera_tables if key == "cameras" else values) for key in keys}
        sections[name] = draw(st.sampled_from([body, body, body, "not a table"]))
    return toml_document(sections)


def check(text: str) -> None:
    message = refusal(parse, text, SOURCE, allowed=ConfigError)
    if message:
        assert message.startswith(f"{SOURCE}: ")
        return
    config = parse(text, SOURCE)
    assert isinstance(config, Config)
    assert config.cloud.url.startswith("https://")
    assert config.device.kind in ("camera", "nvr")
    assert math.isfinite(config.provisioning.fast_interval)
    assert config.provisioning.fast_interval > 0


@settings(max_examples=examples(500))
@given(documents())
def test_any_toml_structure_is_a_config_or_a_config_error(text: str) -> None:
    check(text)


@settings(max_examples=examples(300))
@given(st.one_of(st.text(max_size=200), st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    check(text)


VALID: dict[str, Any] = {
    "device": {"id": "aa:bb:cc:dd:ee:ff", "kind": "camera", "password_file": "/p", "name": ""},
    "cloud": {"url": "https://cloud.example.com:8443", "ca_file": "", "trust_keys": ["/k.pem"]},
    "provisioning": {"fast_interval": 60, "fast_attempts": 5, "slow_jitter": 0.1},
    "paths": {"state_dir": "/var/lib/camagent", "run_dir": "/run/camagent"},
    "local_api": {"enabled": True, "listen": "0.0.0.0", "port": 9443, "mdns": True},
}


@settings(max_examples=examples(400))
@given(st.sampled_from([(s, k) for s, body in VALID.items() for k in body]), values)
def test_one_bad_value_in_a_good_file_names_its_key(where: tuple[str, str], value: Any) -> None:
    section, key = where
    document = {name: dict(body) for name, body in VALID.items()}
    document[section][key] = value
    message = refusal(parse, toml_document(document), SOURCE, allowed=ConfigError)
    if message:
        assert f"{section}.{key}" in message or "not valid TOML" in message, message


def test_the_good_file_is_good() -> None:
    assert parse(toml_document(VALID), SOURCE).cloud.url == VALID["cloud"]["url"]


def test_an_integer_beyond_float_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"provisioning\.fast_interval"):
        parse("[provisioning]\nfast_interval = 1" + "0" * 400 + "\n", SOURCE)
