"""Tunnel targets (docs/design.md §12.1, §12.2): names resolved from the device's own
config, never an address from the cloud; the session check; what `hello` lists."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import Config, parse
from agent.control_channel import Hello
from agent.errors import TunnelRefused
from agent.video.targets import Target, check_session, parse_target, resolve

SRC = "/etc/camagent/agent.toml"
SESSION_CHARS = string.ascii_letters + string.digits + "_-"

CAMERA = parse(
    """
[video]
main = "rtsp://admin:s3cret@127.0.0.1:8554/stream1"
sub = "rtsps://cam.local/stream2?channel=1&subtype=1"
snapshot = "http://127.0.0.1/snap.jpg"
""",
    SRC,
)
NVR = parse(
    """
[device]
kind = "nvr"
[[nvr.cameras]]
name = "gate"
url = "rtsp://u:p@10.0.0.5/main"
sub_url = "rtsp://u:p@10.0.0.5:10554/sub"
[[nvr.cameras]]
name = "Back yard"
url = "rtsps://10.0.0.6/live"
""",
    SRC,
)


def refusal(config: Config, name: object) -> str:
    with pytest.raises(TunnelRefused) as info:
        resolve(config, name)
    return str(info.value)


def test_a_camera_resolves_each_of_its_names() -> None:
    assert resolve(CAMERA, "main") == Target(
        name="main",
        scheme="rtsp",
        host="127.0.0.1",
        port=8554,
        path="/stream1",
        username="admin",
        password="s3cret",
    )
    assert resolve(CAMERA, "sub") == Target(
        name="sub",
        scheme="rtsps",
        host="cam.local",
        port=322,
        path="/stream2?channel=1&subtype=1",
        username=None,
        password=None,
    )
    assert resolve(CAMERA, "snapshot") == Target(
        name="snapshot",
        scheme="http",
        host="127.0.0.1",
        port=80,
        path="/snap.jpg",
        username=None,
        password=None,
    )


def test_an_nvr_resolves_camera_slash_stream() -> None:
    gate_main = resolve(NVR, "gate/main")
    assert (gate_main.host, gate_main.port, gate_main.path) == ("10.0.0.5", 554, "/main")
    assert (gate_main.username, gate_main.password) == ("u", "p")
    gate_sub = resolve(NVR, "gate/sub")
    assert (gate_sub.port, gate_sub.path) == (10554, "/sub")
    yard = resolve(NVR, "Back yard/main")
    assert (yard.scheme, yard.host, yard.port) == ("rtsps", "10.0.0.6", 322)


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("rtsp://cam/", 554),
        ("rtsps://cam/", 322),
        ("http://cam/", 80),
        ("https://cam/", 443),
        ("RTSP://cam/", 554),
        ("rtsp://cam:8554/", 8554),
        ("https://cam:8443/", 8443),
    ],
)
def test_default_ports(url: str, port: int) -> None:
    target = parse_target("main", url)
    assert target.port == port
    assert target.scheme == url.split(":", 1)[0].lower()


def test_user_and_password_are_percent_decoded() -> None:
    config = parse('[video]\nmain = "rtsp://us%40er:p%3Aa%2Fs%40s%25@cam.local/x"\n', SRC)
    target = resolve(config, "main")
    assert (target.username, target.password) == ("us@er", "p:a/s@s%")
    assert target.grant() == {
        "target": "main",
        "scheme": "rtsp",
        "path": "/x",
        "username": "us@er",
        "password": "p:a/s@s%",
    }


@pytest.mark.parametrize(
    ("url", "username", "password"),
    [
        ("rtsp://cam/", None, None),
        ("rtsp://viewer@cam/", "viewer", None),
        ("rtsp://viewer:@cam/", "viewer", ""),
    ],
)
def test_missing_credentials_are_none(url: str, username: str | None, password: str | None) -> None:
    target = parse_target("main", url)
    assert (target.username, target.password) == (username, password)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("rtsp://cam", "/"),
        ("rtsp://cam/", "/"),
        ("rtsp://cam:554/Streaming/Channels/101", "/Streaming/Channels/101"),
        ("rtsp://cam/cam/realmonitor?channel=1&subtype=0", "/cam/realmonitor?channel=1&subtype=0"),
        ("rtsp://cam?token=a%20b", "/?token=a%20b"),
        ("rtsp://cam/live#fragment", "/live"),
    ],
)
def test_path_is_the_path_and_query(url: str, path: str) -> None:
    assert parse_target("main", url).path == path


def test_an_ipv6_host_is_shown_in_brackets() -> None:
    target = parse_target("main", "rtsp://[::1]:8554/x")
    assert target.host == "::1"
    assert target.address == "[::1]:8554"
    assert parse_target("main", "rtsp://10.0.0.5/x").address == "10.0.0.5:554"


@pytest.mark.parametrize(
    "name",
    [
        "127.0.0.1:554",
        "127.0.0.1",
        "rtsp://127.0.0.1/",
        "rtsp://admin:s3cret@127.0.0.1:8554/stream1",
        "../main",
        "main/../sub",
        "/main",
        "main/",
        "main ",
        " main",
        "MAIN",
        "main\n",
        "",
        "gate/main",
        "streams",
    ],
)
def test_anything_but_a_name_of_the_camera_is_refused_naming_what_it_offers(name: str) -> None:
    message = refusal(CAMERA, name)
    assert message.startswith("unknown target ")
    assert message.endswith("this device offers main, sub, snapshot")


@pytest.mark.parametrize("name", [None, 5, 1.5, b"main", ["main"], {"name": "main"}, True])
def test_a_target_that_is_not_text_is_refused_naming_what_it_offers(name: object) -> None:
    assert "this device offers main, sub, snapshot" in refusal(CAMERA, name)


@pytest.mark.parametrize(
    "name", ["main", "sub", "gate", "gate/", "gate/snapshot", "yard/main", "Back yard/sub", 7]
)
def test_an_nvr_refuses_anything_but_its_cameras_streams(name: object) -> None:
    assert "this device offers gate/main, gate/sub, Back yard/main" in refusal(NVR, name)


def test_a_device_without_video_says_where_to_set_it() -> None:
    assert refusal(parse("", SRC), "main") == (
        "unknown target 'main': this camera has no video ([video] main is empty in its config)"
    )
    nvr = parse('[device]\nkind = "nvr"\n', SRC)
    assert "this NVR has no cameras ([[nvr.cameras]] in its config)" in refusal(nvr, "x/main")


def test_an_nvr_ignores_the_video_section() -> None:
    config = parse('[device]\nkind = "nvr"\n[video]\nmain = "rtsp://cam/"\n', SRC)
    assert config.video_targets() == ()
    assert "this NVR has no cameras" in refusal(config, "main")


def test_a_hostile_target_is_shown_cut_short_and_on_one_line() -> None:
    hostile = "rtsp://" + "A" * 100_000 + "\nWARNING forged log line"
    message = refusal(CAMERA, hostile)
    assert len(message) < 120
    assert "…" in message
    assert "\n" not in message
    assert "forged" not in message
    control = refusal(CAMERA, "x\r\nWARNING forged\x1b[31m")
    assert "\n" not in control
    assert "\r" not in control
    assert "\x1b" not in control


@pytest.mark.parametrize("length", [22, 23, 43, 63, 64])
def test_a_session_of_22_to_64_url_safe_characters_is_accepted(length: int) -> None:
    session = (SESSION_CHARS * 2)[:length]
    assert check_session(session) == session


@pytest.mark.parametrize(
    "session",
    [
        "",
        "a" * 21,
        "a" * 65,
        "a" * 30 + "=",
        "a" * 30 + "+",
        "a" * 30 + "/",
        "a" * 30 + ".",
        "a" * 30 + " ",
        "a" * 30 + "\n",
        "../../../../v1/devices/ws#aaaaa",
        "a" * 30 + "é",
        "a" * 30 + "\u0661",  # an Arabic-Indic digit: a digit to str.isdigit, not to us
        None,
        5,
        b"a" * 30,
        ["a" * 30],
    ],
)
def test_any_other_session_is_refused(session: object) -> None:
    with pytest.raises(TunnelRefused) as info:
        check_session(session)
    message = str(info.value)
    assert message == "session must be 22 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"


@given(st.text(alphabet=SESSION_CHARS, min_size=22, max_size=64))
def test_every_well_formed_session_is_accepted(session: str) -> None:
    assert check_session(session) == session


@given(
    st.text(min_size=22, max_size=64).filter(lambda s: any(c not in SESSION_CHARS for c in s))
    | st.text(alphabet=SESSION_CHARS, max_size=21)
    | st.text(alphabet=SESSION_CHARS, min_size=65, max_size=200)
)
def test_every_other_session_is_refused(session: str) -> None:
    with pytest.raises(TunnelRefused):
        check_session(session)


def test_hello_lists_the_targets_in_config_order() -> None:
    assert CAMERA.video_targets() == ("main", "sub", "snapshot")
    assert Hello("id", "camera", "1.0", CAMERA.video_targets()).message()["video"] == [
        "main",
        "sub",
        "snapshot",
    ]
    assert Hello("id", "nvr", "1.0", NVR.video_targets()).message()["video"] == [
        "gate/main",
        "gate/sub",
        "Back yard/main",
    ]
    assert Hello("id", "camera", "1.0").message()["video"] == []  # an empty list: no video
