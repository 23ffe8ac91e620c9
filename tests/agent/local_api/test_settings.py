"""The `[local_api]` keys this package adds to agent.toml: port 0 and the lockout."""

from __future__ import annotations

import pytest

from agent.config import parse
from agent.errors import ConfigError


def test_port_0_and_lockout_keys() -> None:
    config = parse("[local_api]\nport = 0\nlockout_after = 3\nlockout_base_s = 0.5\n", "t.toml")
    assert config.local_api.port == 0
    assert config.local_api.lockout_after == 3
    assert config.local_api.lockout_base_s == 0.5
    defaults = parse("", "t.toml").local_api
    assert (defaults.lockout_after, defaults.lockout_base_s) == (5, 30.0)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("lockout_after = 0", "local_api.lockout_after"),
        ("lockout_base_s = 0", "local_api.lockout_base_s"),
        ('lockout_base_s = "30"', "local_api.lockout_base_s"),
        ("port = -1", "local_api.port"),
    ],
)
def test_bad_values_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        parse(f"[local_api]\n{text}\n", "t.toml")
