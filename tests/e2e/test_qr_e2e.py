"""QR cards end to end: `camagent qr make` → PNG → `camagent qr scan`, and a daemon that
watches its own video in a child process, joins the WiFi and takes the token on a card.
There is no radio here: nmcli is a recording stand-in on PATH."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from agent.qr.payloads import parse
from agent.trust import PLAIN_REFUSED
from cloud_mock import sandbox
from tests.card_video import video_with_card
from tests.e2e.conftest import AddCamera, Fleet, RunCli, polls
from tests.eventually import eventually

pytestmark = pytest.mark.e2e

HOSTILE_SSID = 'Café ";\\: 📷'
HOSTILE_PASSWORD = 'p;a,s:s"w\\o rd ü'


def test_every_kind_round_trips_through_png_and_the_reader(
    tmp_path: Path, run_cli: RunCli, fleet: Fleet, add_camera: AddCamera
) -> None:
    _config, device_id, password = fleet.configure()
    token = add_camera(device_id, password)["sealed_token"]  # what a camera's card holds
    cards = {
        "wifi": ["wifi", "--ssid", HOSTILE_SSID, "--password", HOSTILE_PASSWORD, "--hidden"],
        "combined": [
            "wifi",
            "--ssid",
            HOSTILE_SSID,
            "--password",
            HOSTILE_PASSWORD,
            "--security",
            "SAE",
            "--token",
            token,
        ],
        "token": ["token", token],
        "url": ["url", "https://cloud.example.com/registrators/activate?code=ABCD"],
    }
    files = []
    for kind, argv in cards.items():
        png = tmp_path / f"{kind}.png"
        made = run_cli(None, "qr", "make", *argv, "--png", str(png))
        assert made.returncode == 0, made.stderr
        files.append(str(png))
    result = run_cli(None, "qr", "scan", "--json", *files)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["payloads"][0]["type"] for line in lines] == list(cards)
    wifi = parse(lines[0]["payloads"][0]["text"]).wifi
    assert wifi is not None
    assert (wifi.ssid, wifi.password, wifi.hidden) == (HOSTILE_SSID, HOSTILE_PASSWORD, True)
    combined = parse(lines[1]["payloads"][0]["text"])
    assert combined.token == token
    assert combined.wifi is not None
    assert combined.wifi.security == "SAE"
    assert parse(lines[2]["payloads"][0]["text"]).token == token


def _video_with_card(path: Path, card_png: Path, blank_seconds: float = 2.0) -> None:
    video_with_card(path, card_png, blank_seconds, card_frames=20)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_daemon_reads_a_card_in_its_video_joins_wifi_and_connects(
    tmp_path: Path, fleet: Fleet, cloud: sandbox.Cloud, session: str, run_cli: RunCli
) -> None:
    # The provisioning service is down (every poll answers 503): polls never bring the
    # token, the card must. It holds the token the cloud sealed for the camera's label
    # (docs/design.md §2.9), as the owner's add answered it.
    config, device_id, password = fleet.configure(fast_interval=2.0, long_poll=1.0)
    cloud.inject_poll_fault(status=503, retry_after=1, count=1000)
    token = cloud.add_camera(session, device_id, password)["sealed_token"]
    card = tmp_path / "card.png"
    made = run_cli(
        None,
        "qr",
        "make",
        "wifi",
        "--ssid",
        HOSTILE_SSID,
        "--password",
        HOSTILE_PASSWORD,
        "--token",
        token,
        "--png",
        str(card),
    )
    assert made.returncode == 0, made.stderr
    video = tmp_path / "camera.avi"
    _video_with_card(video, card)
    config.write_text(config.read_text() + f'\n[qr]\nsource = "{video}"\nfps = 5\n')

    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "nmcli.log"
    nmcli = bindir / "nmcli"
    nmcli.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    nmcli.chmod(0o755)
    agent = fleet.start(config, env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    idle_rss = _rss_kib(agent.process.pid)
    agent.wait_for_state("connected", timeout=30)
    log = agent.log_text()
    assert "scanning" in log
    assert f"joined WiFi {HOSTILE_SSID!r}" in log
    assert "QR scanning stopped: the device holds a token" in log
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    add = next(c for c in recorded if c[:2] == ["connection", "add"])
    assert add[add.index("ssid") + 1] == HOSTILE_SSID
    assert add[add.index("wifi-sec.psk") + 1] == HOSTILE_PASSWORD
    # The heavy libraries lived in the child: the daemon never mapped them.
    maps = Path(f"/proc/{agent.process.pid}/maps").read_text()
    assert "cv2" not in maps
    assert "zxing" not in maps
    assert _rss_kib(agent.process.pid) < idle_rss + 16 * 1024
    assert agent.status()["token"]["jti"]
    assert {p["result"] for p in polls(cloud, device_id)} == {"fault"}  # the card did it


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("token", PLAIN_REFUSED),
        ("sealed_token", "sealed_token does not open with this device's key"),
    ],
)
def test_the_daemon_refuses_a_card_of_someone_who_added_its_id_with_another_password(
    tmp_path: Path,
    fleet: Fleet,
    cloud: sandbox.Cloud,
    session: str,
    run_cli: RunCli,
    field: str,
    reason: str,
) -> None:
    """Issue 25: whoever adds the camera's ID gets a token the cloud signed for it; on a
    card in front of the camera, neither form of it is taken (docs/design.md §2.9)."""
    config, device_id, _ = fleet.configure(fast_interval=600.0, long_poll=0.0)
    squatter = cloud.add_camera(session, device_id, "what-the-squatter-typed")
    card = tmp_path / "card.png"
    made = run_cli(None, "qr", "make", "token", "--png", str(card), input=squatter[field])
    assert made.returncode == 0, made.stderr
    video = tmp_path / "camera.avi"
    _video_with_card(video, card)
    config.write_text(config.read_text() + f'\n[qr]\nsource = "{video}"\nfps = 5\n')
    agent = fleet.start(config)
    log = eventually(
        agent.log_text,
        until=lambda text: "token from a QR card refused" in text,
        timeout=30,
        what="the card read and refused",
    )
    assert f"token from a QR card refused: {reason}" in log
    status = agent.status()
    assert (status["state"], status["token"]) == ("provisioning", {"present": False})
    assert cloud.camera(session, squatter["camera_id"])["status"] == "waiting"


def test_scan_apply_with_a_garbage_card_changes_nothing(
    tmp_path: Path, run_cli: RunCli, fleet: Fleet
) -> None:
    config, _, _ = fleet.configure()
    card = tmp_path / "text.png"
    assert (
        run_cli(None, "qr", "make", "url", "https://x.example", "--png", str(card)).returncode == 0
    )
    result = run_cli(config, "qr", "scan", "--apply", str(card))
    assert result.returncode == 0
    assert "nothing to apply" in result.stdout
    missing = run_cli(config, "qr", "scan", "--json", str(tmp_path / "none.png"))
    assert missing.returncode == 1
    assert "no such file" in json.loads(missing.stdout)["error"]


def test_a_card_shown_on_a_real_rtsp_stream_after_blank_seconds(
    tmp_path: Path, run_cli: RunCli
) -> None:
    import subprocess

    card = tmp_path / "card.png"
    assert (
        run_cli(
            None,
            "qr",
            "make",
            "wifi",
            "--ssid",
            HOSTILE_SSID,
            "--password",
            HOSTILE_PASSWORD,
            "--png",
            str(card),
        ).returncode
        == 0
    )
    video = tmp_path / "stream.avi"
    _video_with_card(video, card, blank_seconds=3.0)
    server = subprocess.Popen(
        [
            "/usr/bin/python3",
            str(Path(__file__).with_name("rtsp_server.py")),
            str(video),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stderr is not None
        ready, _, port = server.stdout.readline().strip().partition(" ")
        assert ready == "ready", server.stderr.read()
        started = time.monotonic()
        result = run_cli(
            None,
            "qr",
            "scan",
            "--json",
            "--timeout",
            "20",
            "--fps",
            "5",
            f"rtsp://127.0.0.1:{port}/cam",
        )
        took = time.monotonic() - started
    finally:
        server.terminate()
        server.communicate()  # waits, and closes its pipes
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    assert found["found"] is True
    wifi = parse(found["payloads"][0]["text"]).wifi
    assert wifi is not None
    assert wifi.ssid == HOSTILE_SSID
    assert took >= 2.5, "the card only appears after the blank seconds"


def test_a_video_is_watched_until_a_card_that_can_be_applied(
    tmp_path: Path, run_cli: RunCli
) -> None:
    import cv2

    url_card, wifi_card = tmp_path / "url.png", tmp_path / "wifi.png"
    assert (
        run_cli(
            None, "qr", "make", "url", "https://shop.example/poster", "--png", str(url_card)
        ).returncode
        == 0
    )
    assert (
        run_cli(
            None,
            "qr",
            "make",
            "wifi",
            "--ssid",
            "site",
            "--password",
            "password1",
            "--png",
            str(wifi_card),
        ).returncode
        == 0
    )
    first, second = tmp_path / "a.avi", tmp_path / "b.avi"
    _video_with_card(first, url_card, blank_seconds=0.5)
    _video_with_card(second, wifi_card, blank_seconds=0.5)
    joined = tmp_path / "both.avi"
    writer = cv2.VideoWriter(str(joined), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 480))
    for part in (first, second):
        capture = cv2.VideoCapture(str(part))
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            writer.write(frame)
        capture.release()
    writer.release()
    result = run_cli(None, "qr", "scan", "--json", str(joined))
    assert result.returncode == 0, result.stderr
    assert [p["type"] for p in json.loads(result.stdout)["payloads"]] == ["wifi"]


def test_label_make_png_then_qr_scan_reads_the_label_and_applies_nothing(
    tmp_path: Path, run_cli: RunCli, fleet: Fleet
) -> None:
    config, _, _ = fleet.configure()
    password_file, png = tmp_path / "password", tmp_path / "label.png"
    made = run_cli(
        None,
        "label",
        "make",
        "--device-id",
        "00-11-22-33-44-55",
        "--generate",
        "--password-file",
        str(password_file),
        "--png",
        str(png),
    )
    assert made.returncode == 0, made.stderr
    password = password_file.read_text().strip()
    again = run_cli(
        None,
        "label",
        "make",
        "--device-id",
        "x",
        "--generate",
        "--password-file",
        str(password_file),
    )
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert password_file.read_text().strip() == password
    scanned = run_cli(None, "qr", "scan", "--json", str(png))
    assert scanned.returncode == 0, scanned.stderr
    found = json.loads(scanned.stdout)["payloads"]
    assert [p["type"] for p in found] == ["label"]
    assert found[0]["device_id"] == "00:11:22:33:44:55"
    label = parse(found[0]["text"]).label
    assert label is not None
    assert (label.device_id, label.password) == ("00:11:22:33:44:55", password)
    applied = run_cli(config, "qr", "scan", "--apply", str(png))
    assert "a camera label is read by the cloud's console" in applied.stdout
    assert json.loads(run_cli(config, "status", "--json").stdout)["token"]["present"] is False


def test_a_combined_card_applies_each_part_on_its_own(
    tmp_path: Path, run_cli: RunCli, fleet: Fleet, add_camera: AddCamera
) -> None:
    # No radio here: nmcli is a stand-in on PATH that refuses to bring the network up.
    config, device_id, password = fleet.configure()
    token = add_camera(device_id, password)["sealed_token"]
    card = tmp_path / "combined.png"
    made = run_cli(
        None, "qr", "make", "wifi", "--ssid=-site", "--password", '"quoted pw"'
        , "--token", token, "--png", str(card)
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    bindir = tmp_path / "bin"
    bindir.mkdir()
    nmcli = bindir / "nmcli"
    nmcli.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "if sys.argv[1:3] == ['connection', 'up']:\n"
        "    print('Error: no WiFi device', file=sys.stderr)\n"
        "    sys.exit(10)\n"
    )
    nmcli.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    result = run_cli(config, "qr", "scan", "--apply", "--json", str(card), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    steps = json.loads(result.stdout)["steps"]
    assert [(s["part"], s["ok"]) for s in steps] == [("wifi", False), ("token", True)]
    assert "'-site' not joined" in steps[0]["message"]
    assert "no WiFi device" in steps[0]["message"]
    status = json.loads(run_cli(config, "status", "--json").stdout)
    assert status["token"]["present"] is True
    human = run_cli(config, "qr", "scan", "--apply", str(card), env=env)
    assert human.returncode == 1
    assert "✗ WiFi '-site' not joined" in human.stdout
    assert "→ token" in human.stdout


def test_a_password_in_quotes_keeps_its_quotes_through_png_and_the_reader(
    tmp_path: Path, run_cli: RunCli
) -> None:
    png = tmp_path / "quoted.png"
    made = run_cli(None, "qr", "make", "wifi", "--ssid", "net", "--password", '"abcdefgh"',
                   "--png", str(png))  # fmt: skip
    assert made.returncode == 0, made.stderr
    scanned = run_cli(None, "qr", "scan", "--json", str(png))
    assert scanned.returncode == 0, scanned.stderr
    wifi = parse(json.loads(scanned.stdout)["payloads"][0]["text"]).wifi
    assert wifi is not None
    assert wifi.password == '"abcdefgh"'
