"""Live video end to end (docs/design.md §12): a real RTSP camera (GStreamer), the real
daemon relaying it through its tunnel, the real mock pulling it with Debian's ffmpeg, and
a viewer of the live WebSocket. What a browser does with it is in tests/console.

One mock and one camera serve the module (starting them is the slow part); each test
starts the daemons it needs.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_mock import sandbox
from cloud_mock.test_camera import TestCamera, available, read_timecode, running_test_camera
from cloud_mock.video.fmp4 import Fragment, InitSegment, Splitter
from cloud_mock.video.viewer import Watched, watch_sync
from tests.eventually import eventually

pytestmark = pytest.mark.e2e

PASSWORD = "video-e2e-password"
LINGER_S = 0.5
_numbers = itertools.count(1)  # device IDs unique in the module's one cloud


@pytest.fixture(scope="module")
def camera() -> Iterator[TestCamera]:
    problem = available()
    assert problem is None, f"the RTSP test camera cannot run here: {problem}"
    with running_test_camera() as running:
        yield running


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.Cloud]:
    started = sandbox.start_cloud(
        tmp_path_factory.mktemp("cloud"),
        env={"CAMAGENT_MOCK_VIDEO_LINGER_S": str(LINGER_S)},
    )
    yield started
    started.stop()


@pytest.fixture(scope="module")
def session(cloud: sandbox.Cloud) -> str:
    return cloud.login()


class Devices:
    def __init__(self, root: Path, cloud: sandbox.Cloud, session: str) -> None:
        self.root, self.cloud, self.session = root, cloud, session
        self.agents: list[sandbox.Agent] = []

    def camera(self, video: str) -> tuple[sandbox.Agent, str]:
        """A daemon with `video` as its [video] section, added and connected; its
        camera_id."""
        number = next(_numbers)
        device_id = f"02:00:00:00:0e:{number:02x}"
        config = sandbox.write_agent_config(
            self.root / f"device-{number}",
            self.cloud,
            device_id=device_id,
            password=PASSWORD,
            extra=f"[video]\n{video}",
        )
        agent = sandbox.start_agent(config)
        self.agents.append(agent)
        added = self.cloud.add_camera(self.session, device_id, PASSWORD, f"camera {number}")
        agent.wait_for_state("connected")
        return agent, str(added["camera_id"])

    def live(self, camera_id: str, stream: str = "auto", **options: object) -> Watched:
        url = f"{self.cloud.url}/v1/cameras/{camera_id}/live?stream={stream}"
        return watch_sync(url, self.session, self.cloud.ssl_context(), **options)


@pytest.fixture
def devices(tmp_path: Path, cloud: sandbox.Cloud, session: str) -> Iterator[Devices]:
    made = Devices(tmp_path, cloud, session)
    yield made
    for agent in made.agents:
        agent.stop()


def items(watched: Watched) -> tuple[InitSegment, list[Fragment]]:
    splitter = Splitter()
    parsed = splitter.feed(watched.media())
    init = parsed[0]
    assert isinstance(init, InitSegment)
    return init, [f for f in parsed[1:] if isinstance(f, Fragment)]


def time_codes(media: bytes, tmp: Path, width: int, height: int) -> list[int | None]:
    """The camera's clock read from every decoded frame of `media` (fragmented MP4)."""
    path = tmp / "watched.mp4"
    path.write_bytes(media)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    size = width * height
    return [
        read_timecode(decoded[i : i + size], width, height)
        for i in range(0, len(decoded) - size + 1, size)
    ]


def test_a_viewer_gets_the_cameras_picture_through_the_tunnel(
    devices: Devices, camera: TestCamera, tmp_path: Path
) -> None:
    agent, camera_id = devices.camera(f'main = "{camera.main}"\nsub = "{camera.sub}"\n')
    watched = devices.live(camera_id, fragments=30)
    assert watched.init is not None, watched.statuses
    # `auto` prefers the substream; the browser is told what to expect.
    assert (watched.init["width"], watched.init["height"]) == (320, 180)
    assert watched.init["mime"].startswith('video/mp4; codecs="avc1.')
    assert any(s["state"] == "playing" for s in watched.statuses)
    init, fragments = items(watched)
    assert init.is_h264
    assert fragments[0].keyframe, "a viewer starts at a keyframe"
    codes = [c for c in time_codes(watched.media(), tmp_path, 320, 180) if c is not None]
    assert len(codes) >= 20, "frames carry the camera's clock"
    assert codes == sorted(codes)
    assert codes[-1] - codes[0] >= 1000, "the picture moves on (a second and more)"
    assert camera.password is not None, "the test camera asks for a password"
    assert camera.password not in agent.log_text()


def test_a_late_joiner_starts_at_once_from_the_cached_keyframe(
    devices: Devices, camera: TestCamera, cloud: sandbox.Cloud
) -> None:
    _, camera_id = devices.camera(f'main = "{camera.main}"\n')
    first = devices.live(camera_id, "main", fragments=1)
    assert first.init is not None, first.statuses
    # While the puller lingers, a second viewer gets the init and the fragments from the
    # last keyframe on, the first of them a keyframe, without waiting for a new GOP.
    second = devices.live(camera_id, "main", fragments=1)
    _, fragments = items(second)
    assert fragments[0].keyframe
    assert (second.init or {}).get("width") == 640


def test_the_puller_and_the_tunnel_stop_after_the_last_viewer(
    devices: Devices, camera: TestCamera, cloud: sandbox.Cloud
) -> None:
    agent, camera_id = devices.camera(f'main = "{camera.main}"\n')
    devices.live(camera_id, fragments=2)
    eventually(
        lambda: f"camera/{camera_id} main: puller stopped" in cloud.log_file.read_text(),
        what="the mock's puller stopped after the viewer left",
    )
    eventually(
        lambda: re.search(r"tunnel \S+ to main \S+: closed", agent.log_text()),
        what="the device's tunnel closed",
    )


def test_a_camera_whose_rtsp_is_down_says_why(devices: Devices) -> None:
    with running_test_camera() as doomed:
        url = doomed.main
    _, camera_id = devices.camera(f'main = "{url}"\n')
    watched = devices.live(camera_id, fragments=1, stop_on=("error", "retrying"))
    assert watched.init is None
    messages = " / ".join(s.get("message", "") for s in watched.statuses)
    assert "refused the connection" in messages, watched.statuses
    assert any(s["state"] == "retrying" for s in watched.statuses)


def test_an_h265_camera_is_reported_not_shown_black(devices: Devices) -> None:
    with running_test_camera(codec="h265") as h265:
        _, camera_id = devices.camera(f'main = "{h265.main}"\n')
        watched = devices.live(camera_id, fragments=1)
    assert watched.fragments == []
    assert watched.last_status["state"] == "error"
    assert watched.last_status["code"] == "unsupported_codec"
    assert "H.265" in watched.last_status["message"]


def test_streams_the_camera_does_not_have_are_refused(
    devices: Devices, camera: TestCamera, cloud: sandbox.Cloud, session: str
) -> None:
    _, camera_id = devices.camera(f'main = "{camera.main}"\n')
    status, body = cloud.request("GET", f"/v1/cameras/{camera_id}/live?stream=sub", session=session)
    assert status == 404
    assert "no sub stream" in body["error"]
    status, body = cloud.request(
        "GET", f"/v1/cameras/{camera_id}/live?stream=10.0.0.1:554", session=session
    )
    assert status == 400
