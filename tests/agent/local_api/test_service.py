"""The device model shown in /v1/info."""

from __future__ import annotations

from pathlib import Path

from agent.local_api.service import device_model


def test_model_from_the_first_readable_file(tmp_path: Path) -> None:
    dmi, tree = tmp_path / "product_name", tmp_path / "model"
    tree.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert device_model((dmi, tree)) == "Raspberry Pi 4 Model B Rev 1.4"
    dmi.write_text("Standard PC (Q35 + ICH9, 2009)\n")
    assert device_model((dmi, tree)) == "Standard PC (Q35 + ICH9, 2009)"


def test_no_model_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert device_model((tmp_path / "missing", empty)) == ""
