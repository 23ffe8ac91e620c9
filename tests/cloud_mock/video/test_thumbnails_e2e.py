"""Thumbnails (docs/design.md §12.6) with real parts: the mock as a subprocess, camagent
daemons as subprocesses, the RTSP test camera (GStreamer) and small HTTP(S) snapshot
servers. The in-process tests (a scripted device) are in test_thumbnails.py.

What a person sees is checked as they would: the JPEG decodes, has the stream's size
and shows the camera's picture (the time code the camera drew in it is the time it was
taken), it is refreshed, and where there is none the reason says why.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import json
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from cloud_mock import sandbox
from cloud_mock.test_camera import TestCamera, read_timecode, running_test_camera
from tests.cloud_mock.nvr_helpers import PASSWORDS, write_team_fixtures
from tests.cloud_mock.video.test_thumbnails import solid_jpeg
from tests.eventually import eventually, eventually_async

e2e = pytest.mark.e2e

SNAPSHOT_USER, SNAPSHOT_PASSWORD = "snap", "snap-pw:/@"


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[sandbox.Cloud]:
    """The mock with the team's users (another org: olga of acme) and thumbnails every
    2 s, so that a refresh is seen without moving any clock."""
    fixtures = write_team_fixtures(tmp_path / "team.json")
    c = sandbox.start_cloud(
        tmp_path / "cloud", fixtures=fixtures, env={"CAMAGENT_MOCK_VIDEO_THUMBNAIL_S": "2"}
    )
    yield c
    c.stop()


@pytest.fixture
def agents() -> Iterator[list[sandbox.Agent]]:
    started: list[sandbox.Agent] = []
    yield started
    for agent in started:
        agent.stop()


@pytest.fixture
def test_camera() -> Iterator[TestCamera]:
    with running_test_camera() as cam:
        yield cam


def connect_camera(
    cloud: sandbox.Cloud,
    session: str,
    agents: list[sandbox.Agent],
    root: Path,
    name: str,
    video: str,
) -> str:
    """A camera in the cloud and its daemon with `video` (TOML) running: its camera_id."""
    n = len(agents) + 1
    device_id, password = f"02:1b:00:00:00:{n:02x}", f"label-password-{n}"
    camera = cloud.add_camera(session, device_id, password, name)
    config = sandbox.write_agent_config(
        root / name, cloud, device_id=device_id, password=password, extra=video
    )
    agents.append(sandbox.start_agent(config))
    eventually(
        lambda: cloud.camera(session, camera["camera_id"])["status"],
        until=lambda status: status == "online",
        timeout=30,
        what=f"{name} online",
    )
    return str(camera["camera_id"])


def get_thumbnail(
    cloud: sandbox.Cloud, path: str, session: str, etag: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET a thumbnail route: (status, headers with lower-case names, body)."""
    headers = {"Authorization": f"Bearer {session}"}
    if etag is not None:
        headers["If-None-Match"] = etag
    request = urllib.request.Request(cloud.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, context=cloud.ssl_context(), timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def thumbnail_of(
    cloud: sandbox.Cloud, camera_id: str, session: str
) -> tuple[dict[str, str], bytes]:
    """Wait for the camera's thumbnail; (headers, JPEG)."""
    _status, headers, body = eventually(
        lambda: get_thumbnail(cloud, f"/v1/cameras/{camera_id}/thumbnail", session),
        until=lambda answer: answer[0] == 200,
        timeout=60,
        interval=0.2,
        what="a thumbnail",
    )
    assert headers["content-type"] == "image/jpeg"
    assert headers["cache-control"] == "no-cache"
    assert headers["etag"]
    assert headers["last-modified"]
    return headers, body


def no_thumbnail(cloud: sandbox.Cloud, camera_id: str, session: str) -> str:
    """The 404's reason (and the same reason in the camera's `video`)."""
    status, headers, body = get_thumbnail(cloud, f"/v1/cameras/{camera_id}/thumbnail", session)
    assert status == 404, (status, headers)
    answer = json.loads(body)
    assert answer["error"] == "no_thumbnail"
    video = cloud.camera(session, camera_id)["video"]
    assert video["thumbnail"] is None
    assert video["thumbnail_reason"] == answer["reason"]
    return str(answer["reason"])


def picture(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG"
    image.load()
    return image


def timecode_s(image: Image.Image) -> float:
    """When the test camera drew this picture (its clock, seconds)."""
    width, height = image.size
    ms = read_timecode(image.convert("L").tobytes(), width, height)
    assert ms is not None, "the picture carries no time code: not the camera's frame"
    return ms / 1000


def thumbnail_files(cloud: sandbox.Cloud) -> list[Path]:
    directory = cloud.data_dir / "thumbnails"
    return sorted(directory.glob("*.jpg")) if directory.exists() else []


def video_toml(camera: TestCamera, *, sub: bool = True, snapshot: str = "") -> str:
    lines = ["[video]", f'main = "{camera.main}"']
    if sub:
        lines.append(f'sub = "{camera.sub}"')
    if snapshot:
        lines.append(f'snapshot = "{snapshot}"')
    return "\n".join(lines) + "\n"


# --- a real camera, end to end -------------------------------------------------------


@e2e
def test_a_camera_gets_a_picture_of_its_stream_refreshed_and_gone_with_it(
    cloud: sandbox.Cloud, agents: list[sandbox.Agent], test_camera: TestCamera, tmp_path: Path
) -> None:
    session = cloud.login()
    camera_id = connect_camera(cloud, session, agents, tmp_path, "door", video_toml(test_camera))

    # The hello probe: both streams answer, H.264.
    video = eventually(
        lambda: cloud.camera(session, camera_id)["video"],
        until=lambda v: v["probe"] is not None,
        timeout=30,
        what="the probe",
    )
    assert video["streams"] == ["main", "sub"]
    assert [(p["target"], p["reachable"], p["codec"]) for p in video["probe"]] == [
        ("main", True, "H264"),
        ("sub", True, "H264"),
    ]
    assert video["recording"] == {"mode": "off", "retention_days": 7}

    # The first picture: one frame of the substream (320x180), the camera's own.
    headers, jpeg = thumbnail_of(cloud, camera_id, session)
    first = picture(jpeg)
    assert first.size == (320, 180)
    first_taken = timecode_s(first)
    assert abs(first_taken - time.time()) < 30  # the camera's clock is this machine's
    [file] = thumbnail_files(cloud)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    listed = cloud.camera(session, camera_id)["video"]["thumbnail"]
    assert listed["url"] == f"/v1/cameras/{camera_id}/thumbnail"

    # Refreshed every thumbnail_s (2 s here): a later picture, a new ETag and time.
    def newer() -> tuple[dict[str, str], bytes]:
        status, again, body = get_thumbnail(cloud, f"/v1/cameras/{camera_id}/thumbnail", session)
        assert status == 200
        assert again["etag"] != headers["etag"]
        return again, body

    _, jpeg = eventually(newer, timeout=30, interval=0.2, what="a newer thumbnail")
    assert timecode_s(picture(jpeg)) > first_taken
    assert cloud.camera(session, camera_id)["video"]["thumbnail"]["at"] > listed["at"]

    # Another organization's user learns nothing about it.
    olga = cloud.login("olga", PASSWORDS["olga"])
    status, _, body = get_thumbnail(cloud, f"/v1/cameras/{camera_id}/thumbnail", olga)
    assert (status, json.loads(body)) == (404, {"error": "no such camera"})

    # Offline: the last picture stays, unchanged (If-None-Match: 304).
    agents[0].stop()
    eventually(
        lambda: cloud.camera(session, camera_id)["status"],
        until=lambda s: s == "offline",
        what="offline",
    )
    status, still, _ = get_thumbnail(cloud, f"/v1/cameras/{camera_id}/thumbnail", session)
    assert status == 200
    status, same, body = get_thumbnail(
        cloud, f"/v1/cameras/{camera_id}/thumbnail", session, etag=still["etag"]
    )
    assert (status, body, same["etag"]) == (304, b"", still["etag"])

    # Deleted: the picture goes with it.
    cloud.delete_camera(session, camera_id)
    assert thumbnail_files(cloud) == []
    status, _, _ = get_thumbnail(cloud, f"/v1/cameras/{camera_id}/thumbnail", session)
    assert status == 404


class SnapshotServer:
    """A camera's snapshot URL: a JPEG behind HTTP Basic, over http or https."""

    def __init__(self, jpeg: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.jpeg = jpeg
        self.requests: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append({"path": self.path, **dict(self.headers.items())})
                expected = base64.b64encode(f"{SNAPSHOT_USER}:{SNAPSHOT_PASSWORD}".encode())
                if self.headers.get("Authorization") != f"Basic {expected.decode()}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(owner.jpeg)))
                self.end_headers()
                self.wfile.write(owner.jpeg)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme: str = "http", password: str = SNAPSHOT_PASSWORD) -> str:
        from urllib.parse import quote

        userinfo = f"{SNAPSHOT_USER}:{quote(password, safe='')}"
        return f"{scheme}://{userinfo}@127.0.0.1:{self.port}/ISAPI/snapshot.jpg?channel=1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A TLS server context with a self-signed certificate for a name that is not
    127.0.0.1, as a camera's own certificate is."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ipcam.local")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("ipcam.local")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cam.pem", tmp_path / "cam.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@contextmanager
def snapshot_server(jpeg: bytes, tls: ssl.SSLContext | None = None) -> Iterator[SnapshotServer]:
    server = SnapshotServer(jpeg, tls)
    try:
        yield server
    finally:
        server.stop()


@e2e
def test_the_snapshot_url_comes_first_through_the_tunnel_over_http_and_https(
    cloud: sandbox.Cloud, agents: list[sandbox.Agent], test_camera: TestCamera, tmp_path: Path
) -> None:
    session = cloud.login()
    red = solid_jpeg((1280, 960), (220, 20, 20))
    with (
        snapshot_server(red) as http,
        snapshot_server(red, self_signed(tmp_path)) as https,
    ):
        plain = connect_camera(
            cloud, session, agents, tmp_path, "plain",
            video_toml(test_camera, sub=False, snapshot=http.url()),
        )  # fmt: skip
        secure = connect_camera(
            cloud, session, agents, tmp_path, "secure",
            video_toml(test_camera, sub=False, snapshot=https.url("https")),
        )  # fmt: skip
        refused = connect_camera(
            cloud, session, agents, tmp_path, "refused",
            video_toml(test_camera, sub=False, snapshot=http.url(password="wrong")),
        )  # fmt: skip
        for camera_id in (plain, secure):
            # The camera's JPEG, scaled to 640 pixels wide like every thumbnail.
            image = picture(thumbnail_of(cloud, camera_id, session)[1])
            assert image.size == (640, 480)
            red_, green, blue = image.convert("RGB").getpixel((320, 240))  # type: ignore[misc]
            assert red_ > 180
            assert green < 60
            assert blue < 60
        for server in (http, https):
            good = [r for r in server.requests if r["path"] == "/ISAPI/snapshot.jpg?channel=1"]
            assert good
            assert all(r.get("Authorization", "").startswith("Basic ") for r in good)
        # A snapshot that refuses the credentials: one frame of main instead.
        image = picture(thumbnail_of(cloud, refused, session)[1])
        assert image.size == (640, 360)
        timecode_s(image)


@e2e
def test_reasons_when_there_is_no_picture(
    cloud: sandbox.Cloud, agents: list[sandbox.Agent], tmp_path: Path
) -> None:
    session = cloud.login()
    waiting = cloud.add_camera(session, "02:1b:00:00:00:99", "label-password-x", "never")
    assert no_thumbnail(cloud, waiting["camera_id"], session) == "the camera has not connected yet"

    no_video = connect_camera(cloud, session, agents, tmp_path, "blind", "")
    assert no_thumbnail(cloud, no_video, session) == "no video configured on this camera"
    assert cloud.camera(session, no_video)["video"]["streams"] == []

    with running_test_camera(codec="h265") as hevc:
        h265 = connect_camera(cloud, session, agents, tmp_path, "hevc", video_toml(hevc))
        video = eventually(
            lambda: cloud.camera(session, h265)["video"],
            until=lambda v: v["probe"] is not None,
            timeout=30,
            what="the probe",
        )
        assert {p["codec"] for p in video["probe"]} == {"H265"}
        reason = no_thumbnail(cloud, h265, session)
        assert "this camera sends H.265, which browsers cannot play" in reason


@e2e
async def test_an_open_live_stream_refreshes_the_picture(tmp_path: Path) -> None:
    """Thumbnails every 300 s: only the live keyframe cache (every 1 s) can refresh it."""
    env = {"CAMAGENT_MOCK_VIDEO_THUMBNAIL_S": "300", "CAMAGENT_MOCK_VIDEO_LIVE_THUMBNAIL_S": "1"}
    cloud = await asyncio.to_thread(sandbox.start_cloud, tmp_path / "cloud", env=env)
    agents: list[sandbox.Agent] = []
    try:
        with running_test_camera() as cam:
            session = await asyncio.to_thread(cloud.login)
            camera_id = await asyncio.to_thread(
                connect_camera, cloud, session, agents, tmp_path, "live", video_toml(cam)
            )
            path = f"/v1/cameras/{camera_id}/thumbnail"
            headers, jpeg = await asyncio.to_thread(thumbnail_of, cloud, camera_id, session)
            first = timecode_s(picture(jpeg))
            connector = aiohttp.TCPConnector(ssl=cloud.ssl_context())
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.ws_connect(
                    cloud.url + f"/v1/cameras/{camera_id}/live",
                    headers={"Authorization": f"Bearer {session}"},
                ) as ws,
            ):

                async def refreshed() -> tuple[int, dict[str, str], bytes]:
                    return await asyncio.to_thread(get_thumbnail, cloud, path, session)

                async def drain() -> None:
                    async for _ in ws:
                        pass

                reader = asyncio.create_task(drain())
                try:
                    _status, _again, jpeg = await eventually_async(
                        refreshed,
                        until=lambda a: a[0] == 200 and a[1]["etag"] != headers["etag"],
                        timeout=30,
                        interval=0.2,
                        what="a thumbnail from the live stream",
                    )
                finally:
                    reader.cancel()
            image = picture(jpeg)
            assert image.size == (320, 180)  # live view prefers sub
            assert timecode_s(image) > first
    finally:
        for agent in agents:
            await asyncio.to_thread(agent.stop)
        await asyncio.to_thread(cloud.stop)
