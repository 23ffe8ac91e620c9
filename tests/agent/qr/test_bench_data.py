"""The QR photos in tests/data/qr-bench: complete, listed, and carrying their licence."""

from __future__ import annotations

import json

from tests.agent.qr.test_decode import BENCH, ROOT, bench_dir


def test_the_photos_live_in_the_repository() -> None:
    assert BENCH.resolve().is_relative_to(ROOT)


def test_every_photo_is_listed_once_and_every_listed_photo_exists() -> None:
    lines = (bench_dir() / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["file", "expected_json", "set"]
    rows = [line.split("\t") for line in lines[1:]]
    listed = [name for name, _, _ in rows]
    on_disk = sorted(str(p.relative_to(BENCH)) for p in BENCH.glob("*/*.png"))
    assert sorted(listed) == on_disk
    assert len(listed) == len(set(listed)) == 114
    for name, expected, set_name in rows:
        assert name.split("/")[0] == set_name
        assert expected == "null" or isinstance(json.loads(expected), str)
    with_code = [r for r in rows if r[1] != "null"]
    assert len(with_code) == 89
    assert {r[2] for r in rows if r[1] == "null"} == {"falsepositives-2"}


def test_the_apache_licence_and_the_notice_travel_with_the_photos() -> None:
    licence = (bench_dir() / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    notice = (bench_dir() / "NOTICE").read_text(encoding="utf-8")
    assert "ZXing authors" in notice
    assert "github.com/zxing/zxing" in notice
