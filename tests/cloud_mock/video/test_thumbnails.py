"""Thumbnails (docs/design.md §12.6) in process: a scripted device on the real channel,
for the reasons a person reads when there is no picture, and the cleanup. The real
daemon, camera and snapshot servers are in test_thumbnails_e2e.py.
"""

from __future__ import annotations

import io
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from cloud_mock.server import RunningMock, start
from cloud_mock.video.sources import camera as camera_source
from cloud_mock.video.thumbnails import THUMBNAILS
from tests.cloud_mock.conftest import mock_options
from tests.cloud_mock.helpers import add_camera
from tests.cloud_mock.video.scripted import Answer, scripted_device
from tests.eventually import eventually_async


def solid_jpeg(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=90)
    return out.getvalue()


# --- in process: a scripted device -----------------------------------------------------


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[RunningMock]:
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        yield running
    finally:
        await running.stop()


async def camera_video(
    client: aiohttp.ClientSession, auth: dict[str, str], camera_id: str
) -> dict[str, Any]:
    async with client.get(f"/v1/cameras/{camera_id}", headers=auth) as response:
        assert response.status == 200
        video: dict[str, Any] = (await response.json())["video"]
        return video


async def thumbnail_answer(
    client: aiohttp.ClientSession, auth: dict[str, str], camera_id: str
) -> tuple[int, Any]:
    async with client.get(f"/v1/cameras/{camera_id}/thumbnail", headers=auth) as response:
        return response.status, await response.json()


async def test_the_last_error_is_the_reason_without_credentials(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    refusal = "the camera at rtsp://admin:hunter2@10.0.0.9/live refused the connection"
    answers: dict[str, Answer] = {
        "probe": lambda _: (True, {"streams": []}),
        "tunnel_open": lambda _: (False, refusal),
    }
    async with scripted_device(client, camera["token"], camera["device_id"], ["main"], answers):
        status, body = await eventually_async(
            lambda: thumbnail_answer(client, auth, camera["camera_id"]),
            until=lambda a: a[1].get("reason") != "waiting for the first picture",
            what="a failure",
        )
        assert status == 404
        assert body["error"] == "no_thumbnail"
        assert "refused the connection" in body["reason"]
        assert "hunter2" not in body["reason"]
        assert "admin" not in body["reason"]
        assert (await camera_video(client, auth, camera["camera_id"]))["thumbnail_reason"] == (
            body["reason"]
        )
    # Offline comes first once the device is gone.
    await eventually_async(
        lambda: thumbnail_answer(client, auth, camera["camera_id"]),
        until=lambda a: a[1].get("reason") == "the camera is offline",
        what="offline",
    )


async def test_a_device_older_than_video_and_one_without_video(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    old = await add_camera(client, auth, device_id="aa:bb:cc:dd:ee:10", name="old")
    blind = await add_camera(client, auth, device_id="aa:bb:cc:dd:ee:11", name="blind")
    async with (
        scripted_device(client, old["token"], old["device_id"], None, {}) as old_got,
        scripted_device(client, blind["token"], blind["device_id"], [], {}) as blind_got,
    ):
        _, body = await thumbnail_answer(client, auth, old["camera_id"])
        assert "does not say which streams" in body["reason"]
        _, body = await thumbnail_answer(client, auth, blind["camera_id"])
        assert body["reason"] == "no video configured on this camera"
        video = await camera_video(client, auth, blind["camera_id"])
        assert video["streams"] == []
        assert video["probe"] is None
        # Neither is asked anything: no probe, no tunnel.
        assert old_got == blind_got == []
        assert len(mock.app[THUMBNAILS].tasks) == 0


async def test_a_deleted_camera_takes_its_file_and_state_along(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    thumbnails = mock.app[THUMBNAILS]
    source = camera_source(camera["camera_id"], "demo", "cam")
    jpeg = solid_jpeg((64, 36), (0, 0, 200))

    async def grab() -> bytes:
        return jpeg

    async with scripted_device(client, camera["token"], camera["device_id"], ["main"], {}):
        assert await thumbnails.take(mock.app, source, grab)
        async with client.get(
            f"/v1/cameras/{camera['camera_id']}/thumbnail", headers=auth
        ) as response:
            assert response.status == 200
            assert await response.read() == jpeg
            etag = response.headers["ETag"]
        async with client.get(
            f"/v1/cameras/{camera['camera_id']}/thumbnail",
            headers={**auth, "If-None-Match": etag},
        ) as response:
            assert response.status == 304
        path = thumbnails.path(source)
        assert path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        async with client.delete(f"/v1/cameras/{camera['camera_id']}", headers=auth) as response:
            assert response.status == 204
        assert not path.exists()
        assert thumbnails.state(source) is None
        assert thumbnails.at(source) is None


async def test_a_picture_of_an_earlier_run_is_served_after_a_restart(tmp_path: Path) -> None:
    from tests.cloud_mock.conftest import client_for
    from tests.cloud_mock.helpers import login

    first = await start(mock_options(tmp_path / "cloud"))
    try:
        async with client_for(first) as client:
            auth = await login(client, first.data_dir)
            camera = await add_camera(client, auth)
        source = camera_source(camera["camera_id"], "demo", "cam")
        jpeg = solid_jpeg((64, 36), (0, 200, 0))

        async def grab() -> bytes:
            return jpeg

        assert await first.app[THUMBNAILS].take(first.app, source, grab)
        taken = first.app[THUMBNAILS].at(source)
    finally:
        await first.stop()
    (first.data_dir / "thumbnails" / ".left-over.jpg.x.tmp").write_bytes(b"half")
    second = await start(mock_options(tmp_path / "cloud"))
    try:
        async with client_for(second) as client:
            auth = await login(client, second.data_dir)
            async with client.get(
                f"/v1/cameras/{camera['camera_id']}/thumbnail", headers=auth
            ) as response:
                assert response.status == 200
                assert await response.read() == jpeg
            video = await camera_video(client, auth, camera["camera_id"])
            assert taken is not None
            assert abs(video["thumbnail"]["at"] - taken) < 5
        assert [p.name for p in (second.data_dir / "thumbnails").iterdir()] == [
            f"{source.slug}.jpg"
        ]
    finally:
        await second.stop()
