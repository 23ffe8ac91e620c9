"""NVR pieces without a network: renewal timing, settings, checks' judgements, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import config
from agent.config import NvrCamera
from agent.errors import ConfigError, StateError, WireError
from agent.nvr import checks, settings
from agent.nvr.activation import Activation
from agent.token_store import DeviceRecord
from tests.agent.tokens import verified


def activation(expires_at: float, lifetime: float) -> Activation:
    return Activation("ABCD-EFGH-JK12", "c2VjcmV0", expires_at, lifetime, "https://c/a?code=x")


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [(86400.0, 3600.0), (36000.0, 3600.0), (3600.0, 360.0), (10.0, 1.0)],
)
def test_codes_are_renewed_before_they_expire(lifetime: float, margin: float) -> None:
    now = 1_000_000.0
    act = activation(now + lifetime, lifetime)
    assert act.renew_at() == pytest.approx(now + lifetime - margin)
    assert not act.needs_renewal(now)
    assert not act.needs_renewal(act.renew_at() - 0.001)
    assert act.needs_renewal(act.renew_at())
    assert act.needs_renewal(now + lifetime + 1)


def test_activation_round_trips_and_hides_its_secret() -> None:
    act = activation(123.0, 86400.0)
    assert Activation.from_json(json.loads(json.dumps(act.to_json()))) == act
    assert "secret" not in act.public()
    assert act.public()["code"] == "ABCD-EFGH-JK12"
    assert act.key() == b"secret"


def test_a_new_token_or_a_reset_spends_the_code() -> None:
    record = DeviceRecord(device_id="d", activation=activation(1.0, 2.0).to_json())
    assert record.with_token(verified("poll")).activation is None
    assert record.without_token().activation is None


CAMERAS = (
    NvrCamera("Gate", "rtsp://admin:s3cr%40t@10.0.0.5/s"),
    NvrCamera(
        "Yard",
        "rtsp://10.0.0.6/s",
        "http://onvif:pw@10.0.0.6/onvif",
        sub_url="rtsp://u:p@10.0.0.6:8554/low?x=1",
    ),
)


def test_sync_lists_cameras_without_credentials() -> None:
    listed = settings.camera_list(CAMERAS)
    assert listed == [
        {"name": "Gate", "url": "rtsp://10.0.0.5/s", "streams": ["main"]},
        {
            "name": "Yard",
            "url": "rtsp://10.0.0.6/s",
            "sub_url": "rtsp://10.0.0.6:8554/low?x=1",
            "onvif_url": "http://10.0.0.6/onvif",
            "streams": ["main", "sub"],
        },
    ]
    assert "s3cr" not in repr(listed)
    assert "pw@" not in repr(listed)


def test_broadcast_may_name_the_cameras_that_stream() -> None:
    parsed = settings.parse({"broadcast": {"enabled": True, "cameras": ["Yard"]}})
    applied = {a["name"]: a["broadcast"]["enabled"] for a in settings.apply(parsed, CAMERAS)}
    assert applied == {"Gate": False, "Yard": True}
    everyone = settings.parse({"broadcast": {"enabled": True, "cameras": None}})
    assert all(a["broadcast"]["enabled"] for a in settings.apply(everyone, CAMERAS))
    for bad in ("Yard", [1], [""], ["x"] * 513):
        with pytest.raises(WireError, match=r"broadcast\.cameras"):
            settings.parse({"broadcast": {"enabled": True, "cameras": bad}})


def test_configure_is_validated_applied_and_kept(tmp_path: Path) -> None:
    parsed = settings.parse(
        {
            "broadcast": {"enabled": True, "quality": "high"},
            "archive": {"enabled": True, "days": 30},
        }
    )
    applied = settings.apply(parsed, CAMERAS)
    assert [a["name"] for a in applied] == ["Gate", "Yard"]
    assert applied[1]["archive"] == {"enabled": True, "days": 30}
    assert applied[0]["broadcast"] == {"enabled": True, "quality": "high"}
    settings.save(tmp_path, parsed)
    assert (tmp_path / settings.SETTINGS_FILE).stat().st_mode & 0o777 == 0o600
    assert settings.load(tmp_path) == parsed
    assert settings.load(tmp_path / "nothing-here") is None
    (tmp_path / settings.SETTINGS_FILE).write_text("{broken")
    with pytest.raises(StateError, match="unreadable"):
        settings.load(tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        [],
        {"broadcast": {"enabled": "yes"}},
        {"broadcast": {"enabled": True, "quality": "ultra"}},
        {"archive": {"enabled": True, "days": 0}},
        {"archive": {"enabled": True, "days": True}},
        {"archive": "on"},
    ],
)
def test_bad_configure_args_are_refused(args: object) -> None:
    with pytest.raises(WireError):
        settings.parse(args)


def test_partial_configure_keeps_defaults() -> None:
    parsed = settings.parse({"archive": {"enabled": True, "days": 3}})
    assert parsed.broadcast == settings.Broadcast()
    assert parsed.archive == settings.Archive(True, 3)


@pytest.mark.parametrize(("free_gib", "status"), [(0.5, "fail"), (5, "warn"), (50, "ok")])
def test_disk_judgement(free_gib: float, status: str) -> None:
    result = checks.judge_disk(Path("/srv/archive"), int(free_gib * checks.GIB))
    assert result.status == status
    assert "/srv/archive" in result.detail
    assert (result.fix != "") == (status != "ok")


def test_disk_of_a_path_not_made_yet_uses_its_parent(tmp_path: Path) -> None:
    result = checks.disk(tmp_path / "not" / "yet")
    assert result.name == "archive disk"
    assert "GiB free" in result.detail


@pytest.mark.parametrize(("mib", "status"), [(64, "fail"), (256, "warn"), (2048, "ok")])
def test_memory_judgement(tmp_path: Path, mib: int, status: str) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 999999 kB\nMemAvailable: {mib * 1024} kB\n")
    assert checks.memory(meminfo).status == status


def test_unreadable_meminfo_is_a_warning(tmp_path: Path) -> None:
    assert checks.memory(tmp_path / "missing").status == "warn"


def test_cpu_judgement() -> None:
    assert checks.judge_cpu(2, 1.0).status == "ok"
    assert checks.judge_cpu(2, 5.0).status == "warn"


def test_nvr_config_cameras_and_errors() -> None:
    parsed = config.parse(
        '[device]\nkind = "nvr"\n[nvr]\narchive_path = "/srv/a"\n'
        '[[nvr.cameras]]\nname = "Gate"\nurl = "rtsp://h/s"\n',
        "agent.toml",
    )
    assert parsed.nvr.archive_path == "/srv/a"
    assert parsed.nvr.cameras == (NvrCamera("Gate", "rtsp://h/s"),)
    for text, words in [
        ('[[nvr.cameras]]\nurl = "rtsp://h"\n', "nvr.cameras[0].name"),
        ('[[nvr.cameras]]\nname = "a"\nurl = "http://h"\n', "nvr.cameras[0].url"),
        ('[[nvr.cameras]]\nname = "a"\nurl = "rtsp://h"\nonvif_url = "ftp://x"\n', "onvif_url"),
        (
            '[[nvr.cameras]]\nname = "a"\nurl = "rtsp://h"\n[[nvr.cameras]]\nname = "a"\n'
            'url = "rtsp://i"\n',
            "unique",
        ),
        ('[nvr]\ncameras = "x"\n', "[[nvr.cameras]]"),
        ('[[nvr.cameras]]\nname = "a"\nurl = "rtsp://h"\nuser = "x"\n', "nvr.cameras[0].user"),
    ]:
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
            config.parse(text, "agent.toml")
