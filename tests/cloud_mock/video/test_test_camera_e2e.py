"""The RTSP test camera (cloud_mock/rtsp_test_camera.py, started by cloud_mock/test_camera.py).

The real thing: Debian's python3 with GStreamer serving RTSP, probed by Debian's ffprobe
and ffmpeg and by raw RTSP requests. These tests fail (not skip) when the camera cannot
run here: the test setup installs its packages. The time code's pure tests are in
test_test_camera.py.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from cloud_mock.test_camera import (
    TIMECODE_LAYOUT,
    TestCamera,
    TestCameraError,
    available,
    read_timecode,
    running_test_camera,
    start_test_camera,
)
from tests.eventually import eventually

e2e = pytest.mark.e2e


def require_camera() -> None:
    reason = available()
    if reason is not None:
        pytest.fail(f"the RTSP test camera cannot run here: {reason}")


@pytest.fixture(scope="module")
def camera() -> Iterator[TestCamera]:
    require_camera()
    with running_test_camera() as running:
        yield running


# GStreamer's RTSP server now and then accepts PLAY and sends only RTCP (seen about once
# in 40 starts under load, with shared media): an ffprobe or ffmpeg that got nothing in
# this long starts again once, as the mock's puller does (its stall_s).
STALLED_AFTER_S = 20


def ffprobe(url: str) -> subprocess.CompletedProcess[str]:
    argv = ["ffprobe", "-v", "error", "-rtsp_transport", "tcp"]
    argv += ["-show_entries", "stream=codec_type,codec_name,width,height", "-of", "json", url]
    result = run_rtsp_client(argv)
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def video_stream(url: str) -> dict[str, object]:
    result = ffprobe(url)
    assert result.returncode == 0, result.stderr
    streams = [s for s in json.loads(result.stdout)["streams"] if s["codec_type"] == "video"]
    assert len(streams) == 1, result.stdout
    stream: dict[str, object] = streams[0]
    return stream


def run_rtsp_client(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, capture_output=True, timeout=STALLED_AFTER_S, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.run(argv, capture_output=True, timeout=STALLED_AFTER_S, check=False)


def ffmpeg(url: str, *output: str) -> bytes:
    """What `ffmpeg -i URL OUTPUT... pipe:1` writes to its stdout."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url, *output]
    result = run_rtsp_client(argv)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def grab(url: str, frames: int, width: int, height: int) -> list[bytes]:
    """`frames` consecutive decoded frames of the stream, as grey planes."""
    data = ffmpeg(url, "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
    size = width * height
    assert len(data) == frames * size
    return [data[i * size : (i + 1) * size] for i in range(frames)]


def describe(port: int, path: str, authorization: str | None = None) -> tuple[str, str]:
    """A raw RTSP DESCRIBE: (the answer's head, its body)."""
    request = f"DESCRIBE rtsp://127.0.0.1:{port}{path} RTSP/1.0\r\nCSeq: 1\r\n"
    request += "Accept: application/sdp\r\n"
    if authorization:
        request += f"Authorization: {authorization}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"{request}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            assert chunk, f"the camera closed the connection: {data!r}"
            data += chunk
        head, body = data.decode(errors="replace").split("\r\n\r\n", 1)
        length = next(
            (
                int(line.split(":", 1)[1])
                for line in head.splitlines()
                if line.lower().startswith("content-length:")
            ),
            0,
        )
        while len(body.encode()) < length:
            chunk = connection.recv(65536)
            assert chunk
            body += chunk.decode(errors="replace")
    return head, body


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@e2e
def test_it_can_run_here() -> None:
    assert available() is None


@e2e
def test_it_reports_the_port_it_bound(camera: TestCamera) -> None:
    assert camera.port > 0
    assert (camera.user, camera.password) == ("camera", "test-camera-pw")
    assert camera.main == f"rtsp://camera:test-camera-pw@127.0.0.1:{camera.port}/main"
    assert camera.sub == f"rtsp://camera:test-camera-pw@127.0.0.1:{camera.port}/sub"
    with socket.create_connection(("127.0.0.1", camera.port), timeout=5):
        pass


@e2e
def test_ffprobe_sees_h264_main_and_sub(camera: TestCamera) -> None:
    main, sub = video_stream(camera.main), video_stream(camera.sub)
    assert (main["codec_name"], main["width"], main["height"]) == ("h264", 640, 360)
    assert (sub["codec_name"], sub["width"], sub["height"]) == ("h264", 320, 180)


@e2e
def test_without_credentials_the_answer_is_401(camera: TestCamera) -> None:
    head, _ = describe(camera.port, "/main")
    assert head.startswith("RTSP/1.0 401"), head
    assert 'WWW-Authenticate: Basic realm="' in head
    head, _ = describe(camera.port, "/sub", basic("camera", "wrong"))
    assert head.startswith("RTSP/1.0 401"), head
    head, sdp = describe(camera.port, "/sub", basic("camera", "test-camera-pw"))
    assert head.startswith("RTSP/1.0 200"), head
    assert "a=rtpmap:96 H264/90000" in sdp
    result = ffprobe(f"rtsp://127.0.0.1:{camera.port}/main")
    assert result.returncode != 0
    assert "401" in result.stderr


@e2e
def test_frames_carry_the_wall_clock_and_a_moving_picture(camera: TestCamera) -> None:
    before = time.time() * 1000
    frames = grab(camera.main, 26, 640, 360)  # 25 frame times apart: a second at 25 fps
    after = time.time() * 1000
    first, last = (read_timecode(frame, 640, 360) for frame in (frames[0], frames[-1]))
    assert first is not None
    assert last is not None
    # The sanity window: made while ffmpeg ran (give or take what sat in a queue).
    assert before - 3000 <= first < last <= after
    assert last - first >= 500
    band = TIMECODE_LAYOUT.band_height(640) * 640
    assert frames[0][band:] != frames[-1][band:]
    assert all(read_timecode(frame, 640, 360) is not None for frame in frames)

    sub_first, sub_second = (read_timecode(f, 320, 180) for f in grab(camera.sub, 2, 320, 180))
    assert sub_first is not None
    assert sub_second is not None
    assert before - 3000 <= sub_first < sub_second <= time.time() * 1000


@e2e
def test_two_cameras_at_once_get_different_ports(camera: TestCamera) -> None:
    with running_test_camera() as other:
        assert other.port != camera.port
        assert video_stream(other.sub)["codec_name"] == "h264"


@e2e
def test_h265_mode_serves_hevc() -> None:
    require_camera()
    with running_test_camera(codec="h265") as camera:
        stream = video_stream(camera.main)
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("hevc", 640, 360)
        _, sdp = describe(camera.port, "/sub", basic("camera", "test-camera-pw"))
        assert "a=rtpmap:96 H265/90000" in sdp


@e2e
def test_digest_authentication() -> None:
    require_camera()
    with running_test_camera(auth_method="digest", user="admin", password="p@ss word") as camera:
        assert camera.main == f"rtsp://admin:p%40ss%20word@127.0.0.1:{camera.port}/main"
        head, _ = describe(camera.port, "/main")
        assert head.startswith("RTSP/1.0 401"), head
        assert "WWW-Authenticate: Digest " in head
        assert "Basic" not in head
        head, _ = describe(camera.port, "/main", basic("admin", "p@ss word"))
        assert head.startswith("RTSP/1.0 401"), head
        assert video_stream(camera.main)["codec_name"] == "h264"


@e2e
def test_without_auth_anyone_may_watch() -> None:
    require_camera()
    with running_test_camera(auth=False) as camera:
        assert (camera.user, camera.password) == (None, None)
        assert camera.main == f"rtsp://127.0.0.1:{camera.port}/main"
        head, sdp = describe(camera.port, "/main")
        assert head.startswith("RTSP/1.0 200"), head
        assert "H264/90000" in sdp


@e2e
def test_noise_reaches_the_bitrate_and_keeps_the_time_code() -> None:
    require_camera()
    with running_test_camera(pattern="noise", bitrate=4000) as camera:
        encoded = ffmpeg(camera.main, "-frames:v", "50", "-c", "copy", "-f", "h264", "pipe:1")
        # 4000 kbit/s at 25 fps is 20,000 bytes a frame; bars at 800 kbit/s are 4,000.
        assert len(encoded) / 50 > 10_000
        stamps = [read_timecode(frame, 640, 360) for frame in grab(camera.main, 5, 640, 360)]
        assert sum(stamp is not None for stamp in stamps) >= 3


@e2e
def test_stop_ends_the_process_cleanly() -> None:
    require_camera()
    camera = start_test_camera()
    assert video_stream(camera.sub)["codec_name"] == "h264"  # with a media playing
    assert camera.stop() == 0  # SIGTERM: the main loop quits, exit 0
    assert camera.process.poll() == 0
    assert camera.stop() == 0  # again: nothing left to do


@e2e
def test_the_camera_exits_when_its_parent_goes() -> None:
    require_camera()
    camera = start_test_camera()
    try:
        assert camera.process.stdin is not None
        camera.process.stdin.close()  # what a parent's death does to the pipe
        eventually(camera.process.poll, until=lambda status: status is not None, timeout=10)
        assert camera.process.returncode == 0
    finally:
        camera.stop()


@e2e
def test_a_camera_that_cannot_start_says_why() -> None:
    require_camera()
    with pytest.raises(TestCameraError, match="at least 256 pixels wide"):
        start_test_camera(width=300, height=200)
    with pytest.raises(TestCameraError, match="/nonexistent/python3"):
        start_test_camera(python="/nonexistent/python3")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TestCameraError, match="cannot listen"):
            start_test_camera(port=taken.getsockname()[1])
