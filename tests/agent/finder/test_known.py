"""Trust on first use: the known-devices file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent.finder.errors import FinderError, FingerprintError
from agent.finder.known import KnownDevices, Trust, default_path

OLD, NEW = "a" * 64, "b" * 64


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_path() == tmp_path / "camagent" / "known_devices.json"


def test_first_use_remembers_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "camagent" / "known_devices.json"
    known = KnownDevices.load(path)
    assert known.verify("dev1", OLD, accept_new=False) is Trust.NEW
    known.remember("dev1", OLD, "10.0.0.5:9443")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KnownDevices.load(path)
    assert again.devices["dev1"].fp == OLD
    assert again.devices["dev1"].address == "10.0.0.5:9443"
    assert again.verify("dev1", OLD, accept_new=False) is Trust.KNOWN


def test_changed_fingerprint_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "known_devices.json"
    known = KnownDevices.load(path)
    known.remember("dev1", OLD, "h:1")
    with pytest.raises(FingerprintError) as refused:
        known.verify("dev1", NEW, accept_new=False)
    message = str(refused.value)
    assert OLD in message
    assert NEW in message
    assert "--accept-new-fp" in message
    assert known.verify("dev1", NEW, accept_new=True) is Trust.REPLACED
    known.remember("dev1", NEW, "h:1")
    assert KnownDevices.load(path).devices["dev1"].fp == NEW


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"devices": []}', json.dumps({"devices": {"d": {"fp": "short"}}})],
)
def test_damaged_file_is_reported_and_kept(tmp_path: Path, content: str) -> None:
    path = tmp_path / "known_devices.json"
    path.write_text(content)
    with pytest.raises(FinderError, match="fix or remove it"):
        KnownDevices.load(path)
    assert path.read_text() == content  # nothing lost
