"""The stream probe against a real RTSP server: GStreamer's, the RTSP test camera
(cloud_mock/test_camera.py), with Basic and Digest authentication, H.264 and H.265. The
probe's rules against hand-written answers are in test_rtsp_probe.py."""

from __future__ import annotations

import pytest

from agent.video.rtsp_probe import StreamProbe, probe_all
from cloud_mock.test_camera import running_test_camera


@pytest.mark.e2e
@pytest.mark.parametrize(("codec", "method"), [("h264", "digest"), ("h265", "basic")])
@pytest.mark.usefixtures("test_camera_available")
async def test_a_real_rtsp_server(codec: str, method: str) -> None:
    with running_test_camera(codec=codec, auth_method=method) as camera:
        assert camera.password
        wrong = camera.main.replace(f":{camera.password}@", ":wrong@")
        results = await probe_all([("main", camera.main), ("sub", camera.sub), ("bad", wrong)])
    name = codec.upper()
    # x264's SPS tells the size; H.265's size would need its SPS parsed, which is optional.
    sizes = (" 640x360", " 320x180") if codec == "h264" else ("", "")
    assert results == [
        StreamProbe("main", True, name, f"RTSP 200, {name}{sizes[0]}"),
        StreamProbe("sub", True, name, f"RTSP 200, {name}{sizes[1]}"),
        StreamProbe("bad", False, None, "RTSP 401: wrong user or password"),
    ]
