"""The archive end to end, all of it real: the mock cloud and the camagent daemon as
subprocesses, the RTSP test camera (GStreamer under Debian's python3), Debian's ffmpeg
recording through the device's tunnel, and ffprobe playing back what the API serves.

One mock, camera and daemon serve the module; the tests run in order (recording, off,
retention after the mock clock moves, recording again and deleting the camera).
The mock records 1 s segments and cuts a run every 4 s, so a few seconds of recording
hold several runs."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cloud_mock import sandbox
from cloud_mock.test_camera import TestCamera, read_timecode, running_test_camera
from cloud_mock.testing import MockCloud, running_mock_cloud
from cloud_mock.video.sources import camera as camera_source
from tests.eventually import eventually

pytestmark = pytest.mark.e2e

ENV = {
    "CAMAGENT_MOCK_VIDEO_ARCHIVE_SEGMENT_S": "1",
    "CAMAGENT_MOCK_VIDEO_ARCHIVE_RUN_S": "4",
    "CAMAGENT_MOCK_VIDEO_PRUNE_S": "0.5",
    "CAMAGENT_MOCK_VIDEO_RETRY_MAX_S": "2",
}
WIDTH, HEIGHT, FPS = 640, 360, 25
DAY_S = 86_400
RAW_GREY = ["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]


@dataclass
class Rig:
    cloud: MockCloud
    camera: TestCamera
    agent: sandbox.Agent
    camera_id: str

    @property
    def base(self) -> str:
        return f"/v1/cameras/{self.camera_id}"

    @property
    def archive_dir(self) -> Path:
        return self.cloud.data_dir / "archive" / camera_source(self.camera_id, "", "").slug

    def diagnosis(self) -> str:
        log = self.cloud.log_file.read_text(errors="replace").splitlines()
        return "\n".join(line for line in log if "record" in line or "ERROR" in line)[-4000:]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("archive-e2e")
    with (
        running_test_camera(width=WIDTH, height=HEIGHT, fps=FPS) as test_camera,
        running_mock_cloud(root / "cloud", env=ENV) as cloud,
    ):
        session = cloud.login()
        device_id, password = "02:a7:c4:00:00:01", "label-password-archive"
        added = cloud.add_camera(session, device_id, password, name="archive")
        config = sandbox.write_agent_config(
            root / "device",
            cloud,
            device_id=device_id,
            password=password,
            fast_interval=0.5,
            extra=f'\n[video]\nmain = "{test_camera.main}"\n',
        )
        agent = sandbox.start_agent(config)
        try:
            eventually(
                lambda: cloud.camera(session, added["camera_id"])["status"],
                until=lambda status: status == "online",
                timeout=30,
                what="the camera online",
            )
            yield Rig(cloud, test_camera, agent, added["camera_id"])
        finally:
            agent.stop()


@pytest.fixture
def session(rig: Rig) -> str:
    return rig.cloud.login()


def api(rig: Rig, session: str, method: str, path: str, body: Any = None) -> Any:
    status, answer = rig.cloud.request(method, rig.base + path, body, session=session)
    assert status in (200, 204), (method, path, status, answer)
    return answer


def fetch(rig: Rig, session: str, path: str) -> bytes:
    """GET `path`'s bytes (a playlist, a segment), which must be there."""
    headers = {"Authorization": f"Bearer {session}"}
    request = urllib.request.Request(rig.cloud.url + path, headers=headers)
    with urllib.request.urlopen(request, context=rig.cloud.ssl_context(), timeout=30) as response:
        data: bytes = response.read()
    return data


def waiting(rig: Rig, check: Callable[[], Any], until: Callable[[Any], object], what: str) -> Any:
    """`eventually`, failing with the mock's log about recording."""
    try:
        return eventually(check, until=until, timeout=45, interval=0.5, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\nthe mock said:\n{rig.diagnosis()}") from None


def recorded(spans: list[dict[str, float]]) -> float:
    return sum(span["end"] - span["start"] for span in spans)


def segments(rig: Rig) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in rig.archive_dir.rglob("seg*.m4s"))


def ffprobe(*args: str, stdin: bytes = b"") -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def download(rig: Rig, session: str, query: str, into: Path) -> str:
    """The playlist and every file it names, laid out as the URIs say; its text."""
    playlist = fetch(rig, session, f"{rig.base}/archive/playlist.m3u8{query}").decode()
    uris = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    uris += re.findall(r'#EXT-X-MAP:URI="([^"]+)"', playlist)
    for uri in uris:
        assert re.fullmatch(r"files/r[0-9]{15}/(init\.mp4|seg[0-9]{6}\.m4s)", uri), uri
        target = into / uri
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fetch(rig, session, f"{rig.base}/archive/{uri}"))
    (into / "playlist.m3u8").write_text(playlist)
    return playlist


def test_continuous_recording_makes_a_playable_archive(
    rig: Rig, session: str, tmp_path: Path
) -> None:
    continuous = {"mode": "continuous", "retention_days": 1}
    assert api(rig, session, "PUT", "/recording", continuous) == continuous
    shown = waiting(
        rig,
        lambda: api(rig, session, "GET", "/archive"),
        until=lambda shown: recorded(shown["spans"]) >= 6,
        what="6 s recorded",
    )
    assert shown["state"] == "recording", shown
    assert shown["recording"] == continuous

    # On disk: the mock's alone.
    runs = sorted(p for p in rig.archive_dir.iterdir() if p.is_dir())
    assert len(runs) >= 2, runs  # cut every 4 s
    for directory in (rig.archive_dir.parent, rig.archive_dir, *runs):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for file in runs[0].iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file

    spans = shown["spans"]
    query = f"?start={spans[0]['start']}&end={spans[-1]['end']}"
    playlist = download(rig, session, query, tmp_path)
    assert playlist.startswith("#EXTM3U\n#EXT-X-VERSION:7\n")
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    assert "#EXT-X-DISCONTINUITY" in playlist
    listed = sum(float(d) for d in re.findall(r"#EXTINF:([0-9.]+),", playlist))

    local = str(tmp_path / "playlist.m3u8")
    duration = float(ffprobe("-show_entries", "format=duration", local)["format"]["duration"])
    assert duration == pytest.approx(listed, abs=0.5)
    assert duration == pytest.approx(recorded(spans), abs=2.0)
    # Every frame decodes. (Segment by segment: ffmpeg's HLS demuxer, unlike a browser's
    # player, drops frames at a discontinuity, where a new init segment starts from 0.)
    frames = 0
    for run in (tmp_path / "files").iterdir():
        init = (run / "init.mp4").read_bytes()
        for segment in sorted(run.glob("seg*.m4s")):
            [stream] = ffprobe(
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
                "-",
                stdin=init + segment.read_bytes(),
            )["streams"]
            assert (stream["codec_name"], stream["width"], stream["height"]) == (
                "h264",
                WIDTH,
                HEIGHT,
            )
            frames += int(stream["nb_read_frames"])
    assert frames >= listed * FPS * 0.8
    subprocess.run(["ffmpeg", "-v", "error", "-i", local, "-f", "null", "-"], check=True)

    # The archive's times are the camera's: its first frame carries the wall clock it was
    # made at, and the playlist dates that frame's segment (the mock clock is not moved yet).
    frame = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", local, "-frames:v", "1", *RAW_GREY],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    drawn_ms = read_timecode(frame, WIDTH, HEIGHT)
    assert drawn_ms is not None
    first = re.search(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", playlist)
    assert first is not None
    dated = datetime.fromisoformat(first.group(1)).timestamp()
    assert dated == pytest.approx(drawn_ms / 1000, abs=3.0)


def test_off_stops_the_recorder_and_keeps_what_was_recorded(rig: Rig, session: str) -> None:
    off = {"mode": "off", "retention_days": 1}
    assert api(rig, session, "PUT", "/recording", off) == off
    shown = api(rig, session, "GET", "/archive")
    assert (shown["state"], shown["message"]) == ("off", "recording is off")
    before = segments(rig)
    assert before
    window = f"?from={time.time() - 3600:.0f}&to={time.time() + 60:.0f}"
    spans = api(rig, session, "GET", "/archive" + window)["spans"]
    assert spans
    # Time is the subject: three segment lengths without a new segment.
    time.sleep(3)
    assert segments(rig) == before
    assert not list(rig.archive_dir.rglob("*.tmp"))
    assert api(rig, session, "GET", "/archive" + window)["spans"] == spans
    for playlist in rig.archive_dir.glob("*/index.m3u8"):  # ffmpeg finished each run
        assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")


def test_retention_deletes_what_the_mock_clock_has_aged(rig: Rig, session: str) -> None:
    now = time.time()
    window = f"?from={now - 3600:.0f}&to={now + 60:.0f}"
    assert api(rig, session, "GET", "/archive" + window)["spans"]
    assert rig.cloud.advance_clock(2 * DAY_S) > now + 2 * DAY_S - 60
    eventually(
        lambda: segments(rig),
        until=lambda files: files == [],
        timeout=15,
        what="segments past their one day deleted",
    )
    assert api(rig, session, "GET", "/archive" + window)["spans"] == []
    assert api(rig, session, "GET", "/archive")["spans"] == []
    assert not rig.archive_dir.exists()


def test_recording_again_then_deleting_the_camera_deletes_its_archive(
    rig: Rig, session: str
) -> None:
    continuous = {"mode": "continuous", "retention_days": 1}
    assert api(rig, session, "PUT", "/recording", continuous) == continuous
    # Stamped with the moved mock clock: in the default window, the last 24 h.
    waiting(
        rig,
        lambda: api(rig, session, "GET", "/archive")["spans"],
        until=bool,
        what="recording again",
    )
    assert rig.archive_dir.is_dir()
    status, _ = rig.cloud.request("DELETE", rig.base, session=session)
    assert status == 204
    assert not rig.archive_dir.exists()
    status, _ = rig.cloud.request("GET", rig.base + "/recording", session=session)
    assert status == 404
