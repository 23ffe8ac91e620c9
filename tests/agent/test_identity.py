"""Who the device is: its ID (config or first MAC) and the password from its label."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import parse
from agent.errors import ConfigError
from agent.identity import (
    MAX_PASSWORD_LEN,
    PasswordFileError,
    PasswordProblem,
    device_id,
    password_in,
    read_password,
)
from agent.label import LabelError, read_password_file

SRC = "/etc/camagent/agent.toml"


def fake_net(root: Path, interfaces: dict[str, str | None]) -> Path:
    """A /sys/class/net look-alike: one directory per interface, `address` inside."""
    net = root / "net"
    net.mkdir()
    for name, address in interfaces.items():
        (net / name).mkdir()
        if address is not None:
            (net / name / "address").write_text(address + "\n")
    return net


def test_configured_id_is_normalized_and_wins(tmp_path: Path) -> None:
    net = fake_net(tmp_path, {"eth0": "11:22:33:44:55:66"})
    config = parse('[device]\nid = "AA-BB-CC-DD-EE-FF"\n', SRC)
    assert device_id(config, net) == "aa:bb:cc:dd:ee:ff"


def test_configured_explicit_id(tmp_path: Path) -> None:
    config = parse('[device]\nid = "lobby-cam-7"\n', SRC)
    assert device_id(config, tmp_path / "nowhere") == "lobby-cam-7"


def test_first_non_loopback_interface_by_name(tmp_path: Path) -> None:
    net = fake_net(
        tmp_path,
        {
            "lo": "00:00:00:00:00:00",
            "wlan0": "de:ad:be:ef:00:02",
            "eth1": "DE:AD:BE:EF:00:01",
            "eth0": "DE:AD:BE:EF:00:00",
            "dummy0": "00:00:00:00:00:00",  # all zero: not a MAC to name a device by
            "bond0": None,  # no address file
            "ip6tnl0": "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00",  # not a MAC
        },
    )
    assert device_id(parse("", SRC), net) == "de:ad:be:ef:00:00"


def test_loopback_is_skipped_even_with_an_address(tmp_path: Path) -> None:
    net = fake_net(tmp_path, {"lo": "02:00:00:00:00:01", "zz0": "02:00:00:00:00:09"})
    assert device_id(parse("", SRC), net) == "02:00:00:00:00:09"


@pytest.mark.parametrize(
    "interfaces",
    [
        {},
        {"lo": "00:00:00:00:00:00"},
        {"lo": "02:00:00:00:00:01", "dummy0": "00:00:00:00:00:00", "tun0": None},
        {"wg0": ""},
    ],
)
def test_no_usable_interface_is_a_config_error(
    tmp_path: Path, interfaces: dict[str, str | None]
) -> None:
    net = fake_net(tmp_path, interfaces)
    with pytest.raises(ConfigError, match=r"set device\.id") as info:
        device_id(parse("", SRC), net)
    assert SRC in str(info.value)


def test_no_sys_class_net_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no network interface"):
        device_id(parse("", SRC), tmp_path / "missing")


def password_config(path: Path):  # type: ignore[no-untyped-def]
    return parse(f'[device]\npassword_file = "{path}"\n', SRC)


def test_read_password(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("s3cret pass\n")
    assert read_password(password_config(path)) == "s3cret pass"


def test_password_keeps_inner_and_trailing_spaces(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(" pass word \r\n")
    assert read_password(password_config(path)) == " pass word "


def test_password_of_the_maximum_length(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("p" * MAX_PASSWORD_LEN)
    assert read_password(password_config(path)) == "p" * 256


def test_missing_password_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ConfigError, match="does not exist") as info:
        read_password(password_config(path))
    assert str(path) in str(info.value)
    assert "device.password_file" in str(info.value)


@pytest.mark.parametrize("content", ["", "\n", "\r\n\n"])
def test_empty_password_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "password"
    path.write_text(content)
    with pytest.raises(ConfigError, match="is empty") as info:
        read_password(password_config(path))
    assert str(path) in str(info.value)


def test_too_long_password(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("p" * (MAX_PASSWORD_LEN + 1))
    with pytest.raises(ConfigError, match="more than 256 characters") as info:
        read_password(password_config(path))
    assert str(path) in str(info.value)


def test_unreadable_password_file(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_bytes(b"\xff\xfe bad utf-8")
    with pytest.raises(ConfigError, match="cannot read the password file") as info:
        read_password(password_config(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, PasswordProblem.MISSING),
        (b"\xff bad utf-8", PasswordProblem.UNREADABLE),
        (b"\r\n", PasswordProblem.EMPTY),
        (b"p" * (MAX_PASSWORD_LEN + 1), PasswordProblem.TOO_LONG),
    ],
)
def test_the_daemon_and_the_label_read_a_password_file_alike(
    tmp_path: Path, content: bytes | None, problem: PasswordProblem
) -> None:
    # One reader (`password_in`); the daemon and `label make` only word its faults.
    path = tmp_path / "password"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PasswordFileError) as caught:
        password_in(path)
    assert (caught.value.path, caught.value.problem) == (path, problem)
    with pytest.raises(ConfigError, match=problem.value.split()[-1]):
        read_password(password_config(path))
    with pytest.raises(LabelError, match=problem.value.split()[-1]) as worded:
        read_password_file(path)
    assert str(path) in str(worded.value)


def test_both_readers_give_the_same_password(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(" UH4YH-BEMUV ü \r\n")
    assert password_in(path) == read_password(password_config(path)) == " UH4YH-BEMUV ü "
    assert read_password_file(path) == " UH4YH-BEMUV ü "


def test_the_label_says_who_may_read_a_password_file_it_is_denied(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.mkdir()  # reading a directory fails like a file it may not read
    with pytest.raises(LabelError, match=rf"cannot read {path}: "):
        read_password_file(path)
