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
    NvrCamera,
    PathsConfig,
    ProvisioningConfig,
    VideoConfig,
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


# -- [video] and [[nvr.cameras]]: what a video tunnel may reach (docs/design.md §12.1) -----

VIDEO = """
[video]
main = "rtsp://admin:s3cret@127.0.0.1:554/stream1"
sub = "rtsps://127.0.0.1/stream2"
snapshot = "https://127.0.0.1/snap.jpg"
max_tunnels = 2
idle_timeout = 30
"""

NVR = """
[device]
kind = "nvr"
[[nvr.cameras]]
name = "gate"
url = "rtsp://u:p@10.0.0.5/main"
sub_url = "rtsp://u:p@10.0.0.5/sub"
onvif_url = "http://10.0.0.5/onvif/device_service"
[[nvr.cameras]]
name = "Back yard"
url = "rtsp://10.0.0.6/main"
"""


def toml_string(value: str) -> str:
    """`value` as a TOML basic string (control characters escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if 32 <= ord(c) != 127 else f"\\u{ord(c):04x}" for c in escaped) + '"'


def test_video_defaults_to_no_video() -> None:
    config = parse("", SRC)
    assert config.video == VideoConfig(
        main="", sub="", snapshot="", max_tunnels=4, idle_timeout=60.0
    )
    assert config.video_targets() == ()
    assert parse("[video]\n", SRC) == config


def test_every_video_key_is_read() -> None:
    config = parse(VIDEO, SRC)
    assert config.video == VideoConfig(
        main="rtsp://admin:s3cret@127.0.0.1:554/stream1",
        sub="rtsps://127.0.0.1/stream2",
        snapshot="https://127.0.0.1/snap.jpg",
        max_tunnels=2,
        idle_timeout=30.0,
    )
    assert isinstance(config.video.idle_timeout, float)


def test_a_camera_offers_main_sub_and_snapshot_in_order_and_only_those_set() -> None:
    assert parse(VIDEO, SRC).video_targets() == ("main", "sub", "snapshot")
    only_main = '[video]\nmain = "rtsp://cam/"\n'
    assert parse(only_main, SRC).video_targets() == ("main",)
    main_and_snapshot = '[video]\nsnapshot = "http://cam/s.jpg"\nmain = "rtsp://cam/"\n'
    assert parse(main_and_snapshot, SRC).video_targets() == ("main", "snapshot")
    assert parse('[video]\nsnapshot = "http://cam/s.jpg"\n', SRC).video_targets() == ("snapshot",)


def test_an_nvr_offers_name_slash_main_and_sub() -> None:
    config = parse(NVR, SRC)
    assert config.nvr.cameras == (
        NvrCamera(
            name="gate",
            url="rtsp://u:p@10.0.0.5/main",
            sub_url="rtsp://u:p@10.0.0.5/sub",
            onvif_url="http://10.0.0.5/onvif/device_service",
        ),
        NvrCamera(name="Back yard", url="rtsp://10.0.0.6/main"),
    )
    assert config.video_targets() == ("gate/main", "gate/sub", "Back yard/main")
    # the [video] section is a camera's own: an NVR offers only its cameras
    assert (
        parse(NVR + '[video]\nmain = "rtsp://x/"\n', SRC).video_targets() == config.video_targets()
    )
    assert parse('[device]\nkind = "nvr"\n', SRC).video_targets() == ()


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[video]\nmain = 5\n", "video.main", "a string"),
        ("[video]\nsnapshot = true\n", "video.snapshot", "a string"),
        ('[video]\nmax_tunnels = "4"\n', "video.max_tunnels", "an integer"),
        ("[video]\nmax_tunnels = 4.0\n", "video.max_tunnels", "an integer"),
        ('[video]\nidle_timeout = "60"\n', "video.idle_timeout", "a number"),
        ("[video]\nidle_timeout = nan\n", "video.idle_timeout", "a finite number"),
        ("[video]\nidle_timeout = inf\n", "video.idle_timeout", "a finite number"),
        ("[[nvr.cameras]]\nname = 1\nurl = 'rtsp://x/'\n", "nvr.cameras[0].name", "a string"),
        (
            "[[nvr.cameras]]\nname = 'a'\nurl = 'rtsp://x/'\nsub_url = 2\n",
            "nvr.cameras[0].sub_url",
            "a string",
        ),
    ],
)
def test_wrong_video_types_name_the_key(text: str, key: str, expected: str) -> None:
    assert f"{key} must be {expected}" in config_error(text)


def test_an_unknown_video_key_is_named() -> None:
    message = config_error('[video]\nurl = "rtsp://x/"\n')
    assert "unknown key video.url" in message
    assert "main, sub, snapshot, max_tunnels, idle_timeout" in message


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("main", "http://cam/stream1", "rtsp:// or rtsps:// URL with a host"),
        ("main", "cam/stream1", "rtsp:// or rtsps:// URL with a host"),
        ("main", "rtmp://cam/live", "rtsp:// or rtsps:// URL with a host"),
        ("main", "/dev/video0", "rtsp:// or rtsps:// URL with a host"),
        ("main", "rtsp://", "rtsp:// or rtsps:// URL with a host"),
        ("main", "rtsp:///stream1", "rtsp:// or rtsps:// URL with a host"),
        ("main", "rtsp://:554/stream1", "rtsp:// or rtsps:// URL with a host"),
        ("main", "rtsp://cam:99999/", "valid port"),
        ("main", "rtsp://cam:65536/", "valid port"),
        ("main", "rtsp://cam:0/", "valid port"),
        ("main", "rtsp://cam:port/", "valid port"),
        ("main", "rtsp://cam:-1/", "valid port"),
        ("main", "rtsp://[::1/stream", "valid port"),
        ("main", "rtsp://cam/my stream", "spaces or control characters"),
        ("main", " rtsp://cam/stream", "spaces or control characters"),
        ("main", "rtsp://cam/stream ", "spaces or control characters"),
        ("main", "rtsp://cam/a\tb", "spaces or control characters"),
        ("main", "rtsp://cam/a\nb", "spaces or control characters"),
        ("main", "rtsp://cam/a\u007fb", "spaces or control characters"),
        ("sub", "https://cam/sub", "rtsp:// or rtsps:// URL with a host"),
        ("snapshot", "rtsp://cam/snap.jpg", "http:// or https:// URL with a host"),
        ("snapshot", "ftp://cam/snap.jpg", "http:// or https:// URL with a host"),
        ("snapshot", "file:///tmp/snap.jpg", "http:// or https:// URL with a host"),
        ("snapshot", "http://cam:http/snap.jpg", "valid port"),
    ],
)
def test_bad_video_urls_name_the_key(key: str, value: str, problem: str) -> None:
    main = "" if key == "main" else 'main = "rtsp://cam/"\n'
    message = config_error(f"[video]\n{main}{key} = {toml_string(value)}\n")
    assert f"video.{key} must" in message
    assert problem in message


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://admin:hunter2@cam:99999/stream1",
        "rtsp://admin:hunter2@cam:port/stream1",
        "rtsp://admin:hunter2@[::1/stream1",
        "rtsp://admin:hunter2@:554/stream1",
        "http://admin:hunter2@cam/stream1",
        "rtsp://admin:hunter2@cam/my stream",
        "rtsp://admin:hunter2@cam:0/stream1",
        "rtsp://admin:hunt/er2@cam/stream1",  # a "/" not percent-encoded: no host left
    ],
)
@pytest.mark.parametrize("where", ["video.main", "video.sub", "nvr.cameras[0].url", "sub_url"])
def test_the_password_never_appears_in_an_error(url: str, where: str) -> None:
    good = "rtsp://cam/"
    if where == "video.main":
        text = f"[video]\nmain = {toml_string(url)}\n"
    elif where == "video.sub":
        text = f"[video]\nmain = {toml_string(good)}\nsub = {toml_string(url)}\n"
    elif where == "nvr.cameras[0].url":
        text = f"[[nvr.cameras]]\nname = 'gate'\nurl = {toml_string(url)}\n"
        where = "nvr.cameras[0].url"
    else:
        text = f"[[nvr.cameras]]\nname = 'gate'\nurl = '{good}'\nsub_url = {toml_string(url)}\n"
        where = "nvr.cameras[0].sub_url"
    message = config_error(text)
    assert f"{where} must" in message
    assert "hunter2" not in message
    assert "hunt" not in message


def test_a_substream_needs_a_main_stream() -> None:
    message = config_error('[video]\nsub = "rtsp://cam/sub"\n')
    assert "video.sub needs video.main" in message
    parse('[video]\nsnapshot = "http://cam/s.jpg"\n', SRC)  # a snapshot alone is fine


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[video]\nmax_tunnels = 0\n", "video.max_tunnels"),
        ("[video]\nmax_tunnels = -1\n", "video.max_tunnels"),
        ("[video]\nmax_tunnels = 65\n", "video.max_tunnels"),
        ("[video]\nidle_timeout = 0\n", "video.idle_timeout"),
        ("[video]\nidle_timeout = 0.5\n", "video.idle_timeout"),
        ("[video]\nidle_timeout = -60\n", "video.idle_timeout"),
        ("[video]\nidle_timeout = 3600.5\n", "video.idle_timeout"),
    ],
)
def test_video_limits_out_of_range_name_the_key(text: str, key: str) -> None:
    assert f"{key} must be from 1 to " in config_error(text)


@pytest.mark.parametrize(
    "text",
    [
        "[video]\nmax_tunnels = 1\n",
        "[video]\nmax_tunnels = 64\n",
        "[video]\nidle_timeout = 1\n",
        "[video]\nidle_timeout = 3600\n",
        '[video]\nmain = "rtsp://cam:1/x"\n',
        '[video]\nmain = "rtsp://cam:65535/x"\n',
        '[video]\nmain = "RTSPS://[fe80::1]:322/x?a=b&c=d"\n',
        '[video]\nmain = "rtsp://us%40er:p%3Ass%20word@cam/x"\n',
        '[video]\nmain = "rtsp://cam"\nsub = "rtsp://cam"\nsnapshot = "HTTPS://cam"\n',
    ],
)
def test_video_boundary_values_are_accepted(text: str) -> None:
    parse(text, SRC)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "must be set"),
        ("gate/main", "must not hold '/' or control characters"),
        ("/", "must not hold '/' or control characters"),
        ("gate\n", "must not hold '/' or control characters"),
        ("ga\tte", "must not hold '/' or control characters"),
        ("gate\u0000", "must not hold '/' or control characters"),
        ("gate\u007f", "must not hold '/' or control characters"),
        ("g" * 65, "must be at most 64 characters"),
    ],
)
def test_bad_nvr_camera_names_name_the_key(name: str, problem: str) -> None:
    first = "[[nvr.cameras]]\nname = 'ok'\nurl = 'rtsp://x/'\n"
    text = f"{first}[[nvr.cameras]]\nname = {toml_string(name)}\nurl = 'rtsp://y/'\n"
    message = config_error(text)
    assert f"nvr.cameras[1].name {problem}" in message
    assert "\n" not in message  # a control character is shown escaped
    assert "\t" not in message


@pytest.mark.parametrize("name", ["g" * 64, "g", "Front door", "Caméra 1", "gate.main", "a:b"])
def test_nvr_camera_names_that_are_accepted(name: str) -> None:
    text = (
        f"[device]\nkind = 'nvr'\n[[nvr.cameras]]\nname = {toml_string(name)}\nurl = 'rtsp://x/'\n"
    )
    assert parse(text, SRC).video_targets() == (f"{name}/main",)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("url", "", "must be set (an rtsp:// or rtsps:// URL)"),
        ("url", "http://x/", "rtsp:// or rtsps:// URL with a host"),
        ("sub_url", "http://x/", "rtsp:// or rtsps:// URL with a host"),
        ("sub_url", "rtsp://x:99999/", "valid port"),
        ("sub_url", "rtsp://x/a b", "spaces or control characters"),
        ("onvif_url", "rtsp://x/", "http:// or https:// URL with a host"),
    ],
)
def test_bad_nvr_camera_urls_name_the_key(key: str, value: str, problem: str) -> None:
    values = {"url": "rtsp://x/", key: value}
    body = "".join(f"{k} = {toml_string(v)}\n" for k, v in values.items())
    message = config_error(f"[[nvr.cameras]]\nname = 'gate'\n{body}")
    assert f"nvr.cameras[0].{key} must" in message
    assert problem in message


def test_nvr_camera_names_must_be_unique() -> None:
    text = "[[nvr.cameras]]\nname = 'a'\nurl = 'rtsp://x/'\n" * 2
    assert "nvr.cameras names must be unique" in config_error(text)


@pytest.mark.parametrize(
    ("device_id", "hint"),
    [
        ("02:aa:bb:cc:dd:0g", "'g' is not a hex digit"),
        ("02:AA:BB:CC:DD:O7", "'O' is a letter, not the digit 0"),
        ("02:aa:bb:cc:dd:ee:", "separator at the start or the end"),
        ("02ca.fe00.0001", "dotted form"),
    ],
)
def test_a_mistyped_mac_as_device_id_is_refused_naming_the_rule(device_id: str, hint: str) -> None:
    message = config_error(f'[device]\nid = "{device_id}"\n')
    assert "device.id" in message
    assert hint in message
    assert "exactly 6 octets of two hex digits" in message
