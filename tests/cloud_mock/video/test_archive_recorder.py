"""The archive's recorder and upkeep on an in-process mock, with scripted devices (a
camera, an NVR) on real sockets: its states and reasons, the hello that restarts it, its
bound, shutdown, what goes with a camera or an NVR, and retention and the size cap run by
the mock's own upkeep. The recorder recording a real camera: test_archive_e2e.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_mock.keys import STORE
from cloud_mock.server import RunningMock, start
from cloud_mock.video import sources
from cloud_mock.video.archive import ARCHIVE
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import add_camera, login
from tests.cloud_mock.nvr_helpers import call, linked_nvr, nvr_channel
from tests.cloud_mock.video.test_archive_api import DAY_S, archive, archive_of
from tests.cloud_mock.video.test_archive_index import segment_files, write_run
from tests.eventually import eventually_async

WS = "/v1/devices/ws"

# --- the recorder with a scripted device ------------------------------------------------


class ScriptedCamera:
    """A camera's control channel that answers every command: `tunnel_open` as told
    (refused, or granted and then connected and hung up), anything else with ok."""

    def __init__(
        self, client: aiohttp.ClientSession, token: str, device_id: str, *, hold: bool = False
    ) -> None:
        self.client, self.token, self.device_id = client, token, device_id
        self.grant: dict[str, Any] | None = None  # None: refuse
        self.hold = hold  # keep a granted tunnel open (silent) until the cloud closes it
        self.tunnels_closed = 0
        self.tunnel_opens = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def online(self) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.client.ws_connect(WS, headers=headers, autoclose=False) as ws:
            hello = {"type": "hello", "device_id": self.device_id, "kind": "camera"}
            await ws.send_json({**hello, "version": "0.9.0", "video": ["main"]})
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            serving = asyncio.create_task(self._serve(ws))
            try:
                yield ws
            finally:
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
                for task in self._tasks:
                    task.cancel()
                await ws.close()

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            command = message.json()
            if command.get("type") != "command":
                continue
            data: object  # the result: a dict, or a string saying why not
            ok, data = True, {}
            if command["name"] == "tunnel_open":
                self.tunnel_opens += 1
                ok, data = (False, "no camera here") if self.grant is None else (True, self.grant)
            await ws.send_json({"type": "result", "id": command["id"], "ok": ok, "data": data})
            if command["name"] == "tunnel_open" and ok:
                task = asyncio.create_task(self._hang_up(command["args"]["session"]))
                self._tasks.add(task)

    async def _hang_up(self, session: str) -> None:
        """Connect the tunnel, take the first bytes (ffmpeg's OPTIONS), close it; or,
        holding, wait for the cloud to close it."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.client.ws_connect(f"/v1/devices/tunnels/{session}", headers=headers) as ws:
            await ws.receive(timeout=10)
            if self.hold:
                async for _ in ws:
                    pass
        self.tunnels_closed += 1


async def state(client: aiohttp.ClientSession, auth: dict[str, str], base: str) -> dict[str, Any]:
    return await archive(client, auth, base)


async def test_a_failing_recorder_retries_says_why_and_waits_while_offline(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    camera = await add_camera(client, auth)
    base = f"/v1/cameras/{camera['camera_id']}"
    device = ScriptedCamera(client, camera["token"], camera["device_id"])
    continuous = {"mode": "continuous", "retention_days": 7}
    async with device.online():
        assert (await call(client, "PUT", f"{base}/recording", auth, continuous))[0] == 200
        shown = await eventually_async(
            lambda: state(client, auth, base),
            until=lambda s: s["state"] == "retrying",
            timeout=10,
            what="the recorder retrying",
        )
        assert "no camera here" in shown["message"]
        assert "trying again in" in shown["message"]
        await eventually_async(
            lambda: device.tunnel_opens, until=lambda n: n >= 2, timeout=10, what="a retry"
        )

        # Granted, but the stream hangs up: ffmpeg's complaint, without the password.
        device.grant = {
            "target": "main",
            "scheme": "rtsp",
            "path": "/main",
            "username": "admin",
            "password": "pa55-w0rd",
        }
        recorder = mock.app[ARCHIVE].recorders.get(sources.camera(camera["camera_id"], "", "").key)
        assert recorder is not None
        recorder.hello()  # no need to wait for the backoff
        await eventually_async(
            lambda: recorder.last_error or "",
            until=lambda error: "ffmpeg" in error,
            timeout=20,
            what="ffmpeg's reason",
        )
        assert "pa55-w0rd" not in (await state(client, auth, base))["message"]
        assert "pa55-w0rd" not in (recorder.last_error or "")
    await eventually_async(
        lambda: state(client, auth, base),
        until=lambda s: s["state"] == "waiting",
        timeout=10,
        what="waiting for the camera",
    )
    await eventually_async(
        lambda: mock.app[ARCHIVE].recorders.all() == [], timeout=5, what="the recorder ended"
    )
    # Nothing recorded: no run directory left behind.
    assert segment_files(mock.data_dir / "archive") == []

    # The next hello starts it again at once.
    device.grant = None
    before = device.tunnel_opens
    async with device.online():
        await eventually_async(
            lambda: device.tunnel_opens, until=lambda n: n > before, timeout=5, what="hello"
        )
        assert (
            await call(client, "PUT", f"{base}/recording", auth, {**continuous, "mode": "off"})
        )[0] == 200
        assert (await state(client, auth, base))["state"] == "off"
        assert mock.app[ARCHIVE].recorders.all() == []


async def test_recorders_are_bounded(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    mock.app[ARCHIVE].recorders.limit = 0
    camera = await add_camera(client, auth)
    base = f"/v1/cameras/{camera['camera_id']}"
    async with ScriptedCamera(client, camera["token"], camera["device_id"]).online():
        body = {"mode": "continuous", "retention_days": 7}
        assert (await call(client, "PUT", f"{base}/recording", auth, body))[0] == 200
        shown = await state(client, auth, base)
        assert shown["state"] == "retrying"
        assert "records 0 cameras already" in shown["message"]


async def test_shutdown_stops_a_recorder_and_its_tunnel(tmp_path: Path) -> None:
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        async with client_for(running) as client:
            auth = await login(client, running.data_dir)
            camera = await add_camera(client, auth)
            device = ScriptedCamera(client, camera["token"], camera["device_id"], hold=True)
            device.grant = {"target": "main", "scheme": "rtsp", "path": "/main"}
            async with device.online():
                body = {"mode": "continuous", "retention_days": 7}
                path = f"/v1/cameras/{camera['camera_id']}/recording"
                assert (await call(client, "PUT", path, auth, body))[0] == 200
                [recorder] = running.app[ARCHIVE].recorders.all()
                await eventually_async(
                    lambda: recorder.current_run, timeout=10, what="ffmpeg writing a run"
                )
                loop = asyncio.get_running_loop()
                started = loop.time()
                await running.stop()
                assert loop.time() - started < 10  # not the server's 60 s for handlers
                assert recorder.task is not None
                assert recorder.task.done()
                assert recorder.current_run is None
                await eventually_async(lambda: device.tunnels_closed, timeout=5, what="closed")
    finally:
        await running.stop()


# --- what goes with a camera, an NVR camera -----------------------------------------------


async def test_deleting_a_camera_deletes_its_archive_and_settings(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    camera = await add_camera(client, auth)
    base = f"/v1/cameras/{camera['camera_id']}"
    body = {"mode": "continuous", "retention_days": 5}
    assert (await call(client, "PUT", f"{base}/recording", auth, body))[0] == 200
    write_run(archive_of(mock, camera), time.time() - 60, [1.0, 1.0])
    other = await add_camera(client, auth, device_id="aa:bb:cc:dd:ee:02")
    write_run(archive_of(mock, other), time.time() - 60, [1.0])

    assert (await call(client, "DELETE", base, auth))[0] == 204
    assert not archive_of(mock, camera).exists()
    assert archive_of(mock, other).exists()
    keys = [row.source for row in mock.app[STORE].video.recordings()]
    assert f"camera/{camera['camera_id']}" not in keys


async def test_the_registrators_archive_step_records_its_cameras(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    registrator, token = await linked_nvr(client, auth)
    rid = registrator["id"]
    cameras = [{"name": "gate", "url": "rtsp://10.0.0.5/main"}, {"name": "yard", "url": "rtsp://y"}]
    async with nvr_channel(client, token) as ws:

        async def answer_all() -> None:
            """sync with the cameras, tunnel_open refused, anything else ok."""
            async for message in ws:
                command = message.json()
                if command.get("type") != "command":
                    continue
                data: object  # the result: a dict, or a string saying why not
                ok, data = True, {}
                if command["name"] == "sync":
                    data = {"cameras": cameras}
                elif command["name"] == "tunnel_open":
                    ok, data = False, "no such camera on this NVR"
                reply = {"type": "result", "id": command["id"], "ok": ok, "data": data}
                await ws.send_json(reply)

        answering_all = asyncio.create_task(answer_all())
        try:
            assert (await call(client, "POST", f"/v1/registrators/{rid}/sync", auth))[0] == 200
            body = {"enabled": True, "days": 3}
            status, _ = await call(client, "PUT", f"/v1/registrators/{rid}/archive", auth, body)
            assert status == 200
            gate = f"/v1/registrators/{rid}/cameras/gate"
            assert await call(client, "GET", f"{gate}/recording", auth) == (
                200,
                {"mode": "continuous", "retention_days": 3},
            )
            shown = await eventually_async(
                lambda: state(client, auth, gate),
                until=lambda s: s["state"] == "retrying",
                timeout=10,
                what="the NVR camera's recorder retrying",
            )
            assert "no such camera on this NVR" in shown["message"]
            assert len(mock.app[ARCHIVE].recorders.all()) == 2

            # One camera on its own; then the Archive step turns all of them off.
            yard = f"/v1/registrators/{rid}/cameras/yard"
            off = {"mode": "off", "retention_days": 9}
            assert await call(client, "PUT", f"{yard}/recording", auth, off) == (200, off)
            assert len(mock.app[ARCHIVE].recorders.all()) == 1
            body = {"enabled": False, "days": 3}
            assert (await call(client, "PUT", f"/v1/registrators/{rid}/archive", auth, body))[
                0
            ] == 200
            assert (await call(client, "GET", f"{yard}/recording", auth))[1] == {
                "mode": "off",
                "retention_days": 3,
            }
            assert mock.app[ARCHIVE].recorders.all() == []
            assert (await call(client, "GET", f"/v1/registrators/{rid}/cameras/x/archive", auth))[
                0
            ] == 404
        finally:
            answering_all.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering_all

    stored = mock.app[STORE].registrators.get_registrator(rid)
    assert stored is not None
    source = sources.nvr_cameras(stored)[0]
    write_run(mock.data_dir / "archive" / source.slug, time.time() - 60, [1.0])
    assert (await call(client, "DELETE", f"/v1/registrators/{rid}", auth))[0] == 204
    assert not (mock.data_dir / "archive" / source.slug).exists()


# --- retention and the cap, by the mock's upkeep ------------------------------------------


@pytest.fixture
async def upkept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningMock]:
    """A mock that prunes every 0.1 s and keeps at most 0.04 MB of archive."""
    monkeypatch.setenv("CAMAGENT_MOCK_VIDEO_PRUNE_S", "0.1")
    monkeypatch.setenv("CAMAGENT_MOCK_VIDEO_ARCHIVE_MAX_MB", "0.04")
    running = await start(mock_options(tmp_path / "upkept"))
    try:
        yield running
    finally:
        await running.stop()


async def test_retention_by_the_mock_clock_and_the_size_cap(upkept: RunningMock) -> None:
    async with client_for(upkept) as client:
        auth = await login(client, upkept.data_dir)
        a = await add_camera(client, auth, device_id="aa:bb:cc:dd:ee:0a")
        b = await add_camera(client, auth, device_id="aa:bb:cc:dd:ee:0b")
        for camera, days in ((a, 1), (b, 3)):
            body = {"mode": "off", "retention_days": days}
            path = f"/v1/cameras/{camera['camera_id']}/recording"
            assert (await call(client, "PUT", path, auth, body))[0] == 200
        now = time.time()
        # 48,000 bytes of segments, over 0.04 MB (41,943 bytes) with the rest of the runs:
        # the two oldest segments must go.
        older = write_run(archive_of(upkept, a), now - 100, [1.0] * 4, size=6_000)
        newer = write_run(archive_of(upkept, b), now - 50, [1.0] * 4, size=6_000)
        kept = [f"{older.name}/seg00000{i}.m4s" for i in (2, 3)]
        kept += [f"{newer.name}/seg00000{i}.m4s" for i in range(4)]
        await eventually_async(
            lambda: segment_files(upkept.data_dir / "archive"),
            until=lambda files: files == sorted(kept),
            timeout=10,
            what="the oldest segments gone for the cap",
        )
        last = upkept.app[ARCHIVE].last_prune
        assert last is not None
        assert last.total <= 0.04 * 1024 * 1024

        # Two days later (mock clock) a's 1 day is over, b's 3 days are not.
        write_run(archive_of(upkept, a), now - 10, [1.0], size=100)
        write_run(archive_of(upkept, b), now - 10, [1.0], size=100)
        status, _ = await call(client, "POST", "/v1/test/clock", auth, {"advance_s": 2 * DAY_S})
        assert status == 200
        await eventually_async(
            lambda: archive_of(upkept, a).exists(),
            until=lambda exists: not exists,
            timeout=10,
            what="a's archive past its retention",
        )
        assert len(segment_files(archive_of(upkept, b))) == 5
        query = f"?from={now - 200}&to={now}"
        shown = await archive(client, auth, f"/v1/cameras/{a['camera_id']}", query)
        assert shown["spans"] == []
