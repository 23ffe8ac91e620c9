"""cloud_mock.installer without a server: filling the template, choosing the package."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cloud_mock.installer import (
    DEB_NAME,
    VALUE_NAMES,
    WHEEL_NAME,
    Installer,
    TemplateError,
    render,
)
from tests.install.standins import repo_script

VALUES = dict.fromkeys(VALUE_NAMES, "")
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_render_fills_only_the_placeholder_lines() -> None:
    values = {**VALUES, "CLOUD_URL": "https://[::1]:8443", "KEYS_SHA256": "ab" * 32}
    text = render(repo_script(), values, CA)
    assert '\tCLOUD_URL="https://[::1]:8443"\n' in text
    assert f'\tKEYS_SHA256="{"ab" * 32}"\n' in text
    assert "\nMIIB\n-----END CERTIFICATE-----\nCAMAGENT_CA_PEM\n" in text
    # The check for an unfilled script is still there, untouched.
    assert "\t@*@)\n" in text


@pytest.mark.parametrize(
    "value", ['https://x"; reboot; "', "https://x/$(id)", "https://x/`id`", "a\\b", "a b"]
)
def test_render_refuses_values_the_shell_would_interpret(value: str) -> None:
    with pytest.raises(ValueError, match=r"cannot go into install\.sh"):
        render(repo_script(), {**VALUES, "DEB_URL": value}, CA)


def test_render_refuses_a_ca_that_could_end_the_heredoc() -> None:
    with pytest.raises(ValueError, match="PEM"):
        render(repo_script(), VALUES, CA + "CAMAGENT_CA_PEM\nrm -rf /\n")


def test_template_without_placeholders() -> None:
    broken = repo_script().replace('\tDEB_URL="@DEB_URL@"\n', "")
    with pytest.raises(TemplateError, match="DEB_URL"):
        Installer(broken, None)
    with pytest.raises(TemplateError, match="CA_PEM"):
        render(repo_script().replace("@CA_PEM@\n", ""), VALUES, CA)


def test_latest_version_and_names(tmp_path: Path) -> None:
    for name in (
        "camagent_0.9.1_all.deb",
        "camagent_0.10.0_all.deb",
        "camagent_0.10.0_amd64.deb",
        "other_1.0_all.deb",
        "camagent-0.2.0-py3-none-any.whl",
        "camagent-0.10.0-py3-none-any.whl",
    ):
        (tmp_path / name).write_bytes(name.encode())
    installer = Installer(repo_script(), tmp_path)
    deb = installer.latest(DEB_NAME)
    assert deb is not None
    assert deb.name == "camagent_0.10.0_all.deb"
    assert deb.sha256 == hashlib.sha256(deb.name.encode()).hexdigest()
    wheel = installer.latest(WHEEL_NAME)
    assert wheel is not None
    assert wheel.version == "0.10.0"
    assert Installer(repo_script(), None).latest(DEB_NAME) is None


def test_sha256_follows_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "camagent_1.0_all.deb"
    path.write_bytes(b"one")
    installer = Installer(repo_script(), tmp_path)
    first = installer.latest(DEB_NAME)
    path.write_bytes(b"two, longer")
    second = installer.latest(DEB_NAME)
    assert first is not None
    assert second is not None
    assert second.sha256 == hashlib.sha256(b"two, longer").hexdigest() != first.sha256


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "", "sub", "link.deb"])
def test_file_refuses(tmp_path: Path, name: str) -> None:
    (tmp_path / "pk").mkdir()
    (tmp_path / "pk" / ".hidden").write_text("x")
    (tmp_path / "pk" / "sub").mkdir()
    (tmp_path / "secret").write_text("x")
    (tmp_path / "pk" / "link.deb").symlink_to(tmp_path / "secret")
    assert Installer(repo_script(), tmp_path / "pk").file(name) is None
