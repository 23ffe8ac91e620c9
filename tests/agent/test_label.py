"""`camagent label make`: generated passwords, the password file (never overwritten
without --force, mode 0640), the label's QR text read back, valid SVG."""

from __future__ import annotations

import argparse
import math
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent import label
from agent.errors import CamagentError
from agent.qr.payloads import Label, parse


def _args(tmp_path: Path, **kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "device_id": "00-11-22-33-44-55",
        "password_file": tmp_path / "password",
        "generate": False,
        "force": False,
        "png": None,
        "svg": None,
    }
    return argparse.Namespace(**{**base, **kw})


def test_generated_passwords_are_long_unambiguous_and_grouped() -> None:
    assert label.password_bits() >= 60
    seen = {label.generate_password() for _ in range(200)}
    assert len(seen) == 200
    for password in seen:
        groups = password.split("-")
        assert [len(g) for g in groups] == [label.GROUP_LEN] * label.GROUPS
        assert set("".join(groups)) <= set(label.ALPHABET)
    assert not set("01OIL") & set(label.ALPHABET)
    assert label.password_bits() == pytest.approx(15 * math.log2(31))


def test_generate_writes_0640_and_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    svg = tmp_path / "label.svg"
    assert label.run(_args(tmp_path, generate=True, svg=svg)) == 0
    pw_file = tmp_path / "password"
    first = pw_file.read_text()
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o640
    with pytest.raises(CamagentError, match=r"already exists.*--force"):
        label.run(_args(tmp_path, generate=True))
    assert pw_file.read_text() == first
    assert label.run(_args(tmp_path, generate=True, force=True)) == 0
    second = pw_file.read_text()
    assert second != first
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o640
    # The SVG is well-formed XML and shows the ID and the password as text.
    root = ET.parse(svg).getroot()
    texts = [node.text for node in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["ID 00:11:22:33:44:55", f"PW {first.strip()}"]


def test_generate_refuses_a_symlink_planted_where_the_file_goes(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep me")
    (tmp_path / "password").symlink_to(target)
    with pytest.raises(CamagentError, match="already exists"):
        label.run(_args(tmp_path, generate=True))
    assert target.read_text() == "keep me"


def test_an_existing_password_file_is_read_and_checked(tmp_path: Path) -> None:
    with pytest.raises(CamagentError, match=r"does not exist.*--generate"):
        label.run(_args(tmp_path))
    (tmp_path / "password").write_text("\n")
    with pytest.raises(CamagentError, match="is empty"):
        label.run(_args(tmp_path))
    (tmp_path / "password").write_text('a;b,c:d"e\\f g\n')
    svg = tmp_path / "l.svg"
    assert label.run(_args(tmp_path, svg=svg)) == 0
    assert 'PW a;b,c:d"e\\f g' in [n.text for n in ET.parse(svg).getroot().iter()]
    with pytest.raises(CamagentError, match="--force only goes with --generate"):
        label.run(_args(tmp_path, force=True))
    with pytest.raises(CamagentError, match="invalid device ID"):
        label.run(_args(tmp_path, device_id="bad id with spaces"))


@pytest.mark.parametrize(
    "password", ["UH4YH-BEMUV-THWDS", 'a;b,c:d"e\\f', '"quoted"', "-starts-with-dash", "ünï 📷"]
)
def test_label_payload_reads_back_as_a_label(password: str) -> None:
    text = label.payload(Label("cam:0042", password))
    payload = parse(text)
    assert payload.type == "label"
    assert payload.label == Label("cam:0042", password)
    assert payload.to_json()["device_id"] == "cam:0042"
    assert not payload.token
    assert payload.wifi is None


def test_a_password_with_control_characters_makes_no_label() -> None:
    with pytest.raises(CamagentError, match="control characters"):
        label.payload(Label("cam", "abc\x1b[2Jdef"))


def test_png_is_a_png(tmp_path: Path) -> None:
    png = tmp_path / "l.png"
    label.write_png(Label("cam", "PW"), label.payload(Label("cam", "PW")), png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the label shows the password: its images are as private as the password file ---------


def test_png_and_svg_are_created_0640_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    png, svg = tmp_path / "l.png", tmp_path / "l.svg"
    seen: dict[str, int] = {}
    replace = os.replace

    def spying_replace(src: str, dst: str) -> None:  # the file as it is the moment it gets its name
        seen[Path(dst).name] = stat.S_IMODE(os.stat(src).st_mode)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)
    previous = os.umask(0)
    try:
        assert label.run(_args(tmp_path, generate=True, png=png, svg=svg)) == 0
    finally:
        os.umask(previous)
    assert seen == {"l.png": 0o640, "l.svg": 0o640}
    for path in (png, svg):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert path.stat().st_gid == (tmp_path / "password").stat().st_gid
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_label_is_never_more_readable_than_its_password_file(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("UH4YH-BEMUV-THWDS\n")
    (tmp_path / "password").chmod(0o600)
    svg = tmp_path / "l.svg"
    svg.write_text("an old label, world-readable")
    svg.chmod(0o644)
    assert label.run(_args(tmp_path, svg=svg)) == 0
    assert stat.S_IMODE(svg.stat().st_mode) == 0o600
    assert "UH4YH-BEMUV-THWDS" in svg.read_text()


def test_a_link_planted_at_the_label_path_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    png = tmp_path / "l.png"
    png.symlink_to(victim)
    assert label.run(_args(tmp_path, generate=True, png=png)) == 0
    assert victim.read_text() == "keep me"
    assert not png.is_symlink()
    assert stat.S_IMODE(png.stat().st_mode) == 0o640


def test_a_label_that_cannot_be_written_says_where_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("UH4YH-BEMUV-THWDS\n")
    with pytest.raises(CamagentError, match=r"cannot write .*/missing/l\.png"):
        label.run(_args(tmp_path, png=tmp_path / "missing" / "l.png"))
