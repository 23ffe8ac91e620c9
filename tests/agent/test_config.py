"""agent.toml (docs/design.md §9): defaults, every key, errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    CloudConfig,
    Config,
    DeviceConfig,
    LocalApiConfig,
    PathsConfig,
    ProvisioningConfig,
    load,
    parse,
    resolve_path,
)
from agent.errors import ConfigError

SRC = "/etc/camagent/test-agent.toml"

FULL = """
[device]
id = "AA-BB-CC-DD-EE-01"
kind = "nvr"
password_file = "/srv/pw"
name = "Lobby"
[cloud]
url = "https://vms.example.net:8443"
ca_file = "/srv/ca.pem"
trust_keys = ["/srv/k1.pem", "/srv/k2.pem"]
[provisioning]
fast_interval = 2
fast_attempts = 3
slow_interval = 30.5
slow_jitter = 0.25
long_poll = 0
[paths]
state_dir = "/tmp/state"
run_dir = "/tmp/run"
[local_api]
enabled = false
listen = "127.0.0.1"
port = 10443
mdns = false
"""


def test_an_empty_file_gives_the_defaults_of_the_design() -> None:
    config = parse("", SRC)
    assert config.source == SRC
    assert config.device == DeviceConfig(
        id="", kind="camera", password_file="/etc/camagent/password", name=""
    )
    assert config.cloud == CloudConfig(url="https://cloud.example.com", ca_file="", trust_keys=())
    assert config.provisioning == ProvisioningConfig(
        fast_interval=60, fast_attempts=5, slow_interval=3600, slow_jitter=0.10, long_poll=50
    )
    assert config.paths == PathsConfig(state_dir="/var/lib/camagent", run_dir="/run/camagent")
    assert config.local_api == LocalApiConfig(enabled=True, listen="0.0.0.0", port=9443, mdns=True)
    assert config.state_dir == Path("/var/lib/camagent")
    assert config.control_socket == Path("/run/camagent/control.sock")


def test_empty_sections_give_the_defaults_too() -> None:
    text = "[device]\n[cloud]\n[provisioning]\n[paths]\n[local_api]\n"
    assert parse(text, SRC) == parse("", SRC)


def test_every_key_is_read() -> None:
    config = parse(FULL, SRC)
    assert config.device == DeviceConfig(
        id="AA-BB-CC-DD-EE-01", kind="nvr", password_file="/srv/pw", name="Lobby"
    )
    assert config.cloud == CloudConfig(
        url="https://vms.example.net:8443",
        ca_file="/srv/ca.pem",
        trust_keys=("/srv/k1.pem", "/srv/k2.pem"),
    )
    assert config.provisioning == ProvisioningConfig(
        fast_interval=2.0, fast_attempts=3, slow_interval=30.5, slow_jitter=0.25, long_poll=0.0
    )
    assert isinstance(config.provisioning.fast_interval, float)  # ints are taken as numbers
    assert isinstance(config.provisioning.fast_attempts, int)
    assert config.paths == PathsConfig(state_dir="/tmp/state", run_dir="/tmp/run")
    assert config.local_api == LocalApiConfig(
        enabled=False, listen="127.0.0.1", port=10443, mdns=False
    )
    assert config.control_socket == Path("/tmp/run/control.sock")


def test_missing_keys_keep_their_defaults() -> None:
    config = parse('[provisioning]\nfast_interval = 1\n[device]\nname = "x"\n', SRC)
    assert config.provisioning == ProvisioningConfig(fast_interval=1.0)
    assert config.device == DeviceConfig(name="x")
    assert config.local_api == LocalApiConfig()


def test_a_config_is_immutable() -> None:
    config = parse("", SRC)
    with pytest.raises(AttributeError):
        config.device.kind = "nvr"  # type: ignore[misc]


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, SRC)
    message = str(info.value)
    assert message.startswith(SRC + ": "), message
    return message


def test_unknown_section() -> None:
    message = config_error("[camera]\nid = 1\n")
    assert "unknown section [camera]" in message
    assert "device" in message  # says what is known


def test_top_level_key_is_an_unknown_section() -> None:
    assert "unknown section [verbose]" in config_error("verbose = true\n")


def test_a_section_that_is_not_a_table() -> None:
    assert "device must be a table" in config_error('device = "x"\n')


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[device]\nmac = 'aa'\n", "device.mac"),
        ("[cloud]\nURL = 'https://x'\n", "cloud.URL"),
        ("[provisioning]\nfast_intervall = 5\n", "provisioning.fast_intervall"),
        ("[local_api]\nhost = 'x'\n", "local_api.host"),
        ("[paths]\nlog_dir = '/x'\n", "paths.log_dir"),
    ],
)
def test_unknown_key_names_it(text: str, key: str) -> None:
    message = config_error(text)
    assert f"unknown key {key}" in message


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[provisioning]\nfast_attempts = "5"\n', "provisioning.fast_attempts", "an integer"),
        ("[provisioning]\nfast_attempts = true\n", "provisioning.fast_attempts", "an integer"),
        ("[provisioning]\nfast_attempts = 5.0\n", "provisioning.fast_attempts", "an integer"),
        ('[local_api]\nport = "9443"\n', "local_api.port", "an integer"),
        ("[local_api]\nport = true\n", "local_api.port", "an integer"),
        ('[provisioning]\nfast_interval = "60"\n', "provisioning.fast_interval", "a number"),
        ("[provisioning]\nslow_interval = true\n", "provisioning.slow_interval", "a number"),
        ("[local_api]\nenabled = 1\n", "local_api.enabled", "true or false"),
        ('[local_api]\nmdns = "yes"\n', "local_api.mdns", "true or false"),
        ("[device]\nid = 5\n", "device.id", "a string"),
        ("[device]\nname = ['a']\n", "device.name", "a string"),
        ("[cloud]\ntrust_keys = [1, 2]\n", "cloud.trust_keys", "a list of strings"),
        ("[cloud]\ntrust_keys = ['a', 2]\n", "cloud.trust_keys", "a list of strings"),
        ("[cloud]\ntrust_keys = '/k.pem'\n", "cloud.trust_keys", "a list of strings"),
        ("[paths]\nstate_dir = 1\n", "paths.state_dir", "a string"),
    ],
)
def test_wrong_types_name_the_key(text: str, key: str, expected: str) -> None:
    message = config_error(text)
    assert f"{key} must be {expected}" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[provisioning]\nfast_interval = 0\n", "provisioning.fast_interval"),
        ("[provisioning]\nfast_interval = -1\n", "provisioning.fast_interval"),
        ("[provisioning]\nslow_interval = 0.0\n", "provisioning.slow_interval"),
        ("[provisioning]\nfast_attempts = -1\n", "provisioning.fast_attempts"),
        ("[provisioning]\nslow_jitter = 0.51\n", "provisioning.slow_jitter"),
        ("[provisioning]\nslow_jitter = -0.1\n", "provisioning.slow_jitter"),
        ("[provisioning]\nlong_poll = -5\n", "provisioning.long_poll"),
        ("[local_api]\nport = -1\n", "local_api.port"),
        ("[local_api]\nport = 70000\n", "local_api.port"),
        ("[local_api]\nport = 65536\n", "local_api.port"),
        ('[device]\nkind = "dvr"\n', "device.kind"),
        ('[device]\nkind = "Camera"\n', "device.kind"),
        ('[cloud]\nurl = "http://cloud.example.com"\n', "cloud.url"),
        ('[cloud]\nurl = "cloud.example.com"\n', "cloud.url"),
        ('[cloud]\nurl = "https://"\n', "cloud.url"),
        ('[device]\nid = "not a valid id"\n', "device.id"),
        ('[device]\nid = "-x"\n', "device.id"),
        ('[paths]\nstate_dir = ""\n', "paths.state_dir"),
        ('[paths]\nrun_dir = ""\n', "paths.run_dir"),
    ],
)
def test_out_of_range_values_name_the_key(text: str, key: str) -> None:
    assert key in config_error(text)


@pytest.mark.parametrize(
    "text",
    [
        "[provisioning]\nslow_jitter = 0.5\n",
        "[provisioning]\nslow_jitter = 0\n",
        "[provisioning]\nfast_attempts = 0\n",
        "[provisioning]\nlong_poll = 0\n",
        "[local_api]\nport = 1\n",
        "[local_api]\nport = 65535\n",
        '[device]\nid = "cam-01"\n',
    ],
)
def test_boundary_values_are_accepted(text: str) -> None:
    parse(text, SRC)


@pytest.mark.parametrize("key", ["fast_interval", "slow_interval", "long_poll"])
def test_nan_intervals_are_refused(key: str) -> None:
    assert f"provisioning.{key}" in config_error(f"[provisioning]\n{key} = nan\n")


def test_invalid_toml_names_the_file() -> None:
    assert "not valid TOML" in config_error("[device\n")


def test_load_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(FULL)
    config = load(path)
    assert config.source == str(path)
    assert config == parse(FULL, str(path))


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[device]\nkind = "dvr"\n')
    with pytest.raises(ConfigError, match=r"device\.kind") as info:
        load(path)
    assert str(path) in str(info.value)


def test_load_of_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="no such configuration file") as info:
        load(path)
    assert str(path) in str(info.value)
    assert "--config" in str(info.value)


def test_load_of_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[device]\nname = "Caméra"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read it") as info:
        load(path)
    assert str(path) in str(info.value)


def test_load_of_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load(tmp_path)


def test_resolve_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert resolve_path(None) == DEFAULT_CONFIG_PATH == Path("/etc/camagent/agent.toml")
    monkeypatch.setenv(CONFIG_ENV, "/from/env.toml")
    assert resolve_path(None) == Path("/from/env.toml")
    assert resolve_path("/from/cli.toml") == Path("/from/cli.toml")
    monkeypatch.setenv(CONFIG_ENV, "")
    assert resolve_path(None) == DEFAULT_CONFIG_PATH


def test_default_config_object() -> None:
    assert Config().source == "<defaults>"
    assert Config().device == DeviceConfig()
