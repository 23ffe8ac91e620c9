"""The archive's routes on an in-process mock (real TLS and sockets, the contract checked
by tests/cloud_mock's plugin): recording settings and their checks, who may see and
change what, and archives written by hand served as spans, a VOD playlist and files
(and nothing else). The recorder: test_archive_recorder.py and test_archive_e2e.py."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_mock.console.security import SESSION_COOKIE
from cloud_mock.server import RunningMock
from cloud_mock.video import sources
from tests.cloud_mock.conftest import client_for
from tests.cloud_mock.helpers import add_camera, login
from tests.cloud_mock.nvr_helpers import PASSWORDS, call
from tests.cloud_mock.video.test_archive_index import write_run

DAY_S = 86_400


def slug(camera: dict[str, Any]) -> str:
    return sources.camera(camera["camera_id"], "demo", "").slug


def archive_of(mock: RunningMock, camera: dict[str, Any]) -> Path:
    return mock.data_dir / "archive" / slug(camera)


async def archive(
    client: aiohttp.ClientSession, auth: dict[str, str], base: str, query: str = ""
) -> dict[str, Any]:
    status, body = await call(client, "GET", f"{base}/archive{query}", auth)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


# --- recording settings -----------------------------------------------------------------


async def test_recording_is_off_until_set_and_waits_for_an_offline_camera(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    base = f"/v1/cameras/{(await add_camera(client, auth))['camera_id']}"
    assert await call(client, "GET", f"{base}/recording", auth) == (
        200,
        {"mode": "off", "retention_days": 7},
    )
    shown = await archive(client, auth, base)
    assert (shown["state"], shown["spans"]) == ("off", [])

    wanted = {"mode": "continuous", "retention_days": 30}
    assert await call(client, "PUT", f"{base}/recording", auth, wanted) == (200, wanted)
    assert await call(client, "GET", f"{base}/recording", auth) == (200, wanted)
    shown = await archive(client, auth, base)
    assert shown["recording"] == wanted
    assert shown["state"] == "waiting"
    assert "offline" in shown["message"]

    off = {"mode": "off", "retention_days": 1}
    assert await call(client, "PUT", f"{base}/recording", auth, off) == (200, off)
    assert (await archive(client, auth, base))["state"] == "off"


BAD_RECORDING = [
    ({"mode": "sometimes", "retention_days": 7}, "mode"),
    ({"mode": 1, "retention_days": 7}, "mode"),
    ({"retention_days": 7}, "mode"),
    ({"mode": "continuous", "retention_days": 0}, "retention_days"),
    ({"mode": "continuous", "retention_days": 366}, "retention_days"),
    ({"mode": "continuous", "retention_days": "7"}, "retention_days"),
    ({"mode": "continuous", "retention_days": 7.5}, "retention_days"),
    ({"mode": "continuous", "retention_days": True}, "retention_days"),
    ({"mode": "continuous"}, "retention_days"),
    ({"mode": "off", "retention_days": 7, "keep": "all"}, "keep"),
]


async def test_recording_settings_are_checked_field_by_field(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    base = f"/v1/cameras/{(await add_camera(client, auth))['camera_id']}"
    for body, field in BAD_RECORDING:
        status, answer = await call(client, "PUT", f"{base}/recording", auth, body)
        assert status == 400, (body, answer)
        assert f"'{field}'" in answer["error"], (body, answer)
    assert await call(client, "GET", f"{base}/recording", auth) == (
        200,
        {"mode": "off", "retention_days": 7},
    )


async def test_a_body_that_is_not_an_object_is_refused(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    base = f"/v1/cameras/{(await add_camera(client, auth))['camera_id']}"
    for data in (b"", b"[]", b"{", b'"continuous"'):
        async with client.put(f"{base}/recording", headers=auth, data=data) as response:
            assert response.status == 400, data


BAD_RANGES = [
    "?from=yesterday",
    "?from=nan",
    "?to=inf",
    "?from=-5",
    "?from=1e12",
    "?from=2000&to=1000",
    "?from=1000&to=1000",
    f"?from=0&to={367 * DAY_S}",
]


async def test_archive_ranges_are_checked(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    base = f"/v1/cameras/{(await add_camera(client, auth))['camera_id']}"
    for query in BAD_RANGES:
        status, answer = await call(client, "GET", f"{base}/archive{query}", auth)
        assert status == 400, (query, answer)
        assert "'from'" in answer["error"] or "'to'" in answer["error"], (query, answer)
        playlist_query = query.replace("from", "start").replace("to=", "end=")
        path = f"{base}/archive/playlist.m3u8{playlist_query}"
        status, answer = await call(client, "GET", path, auth)
        assert status == 400, (playlist_query, answer)
        assert "'start'" in answer["error"] or "'end'" in answer["error"], (query, answer)
    # A playlist covers at most a day.
    status, answer = await call(
        client, "GET", f"{base}/archive/playlist.m3u8?start=0&end={DAY_S + 1}", auth
    )
    assert status == 400, answer


async def test_viewers_look_and_other_orgs_see_nothing(team: RunningMock) -> None:
    async with client_for(team) as client:
        admin = await login(client, team.data_dir)
        vera = await login(client, team.data_dir, login_name="vera", password=PASSWORDS["vera"])
        olga = await login(client, team.data_dir, login_name="olga", password=PASSWORDS["olga"])
        base = f"/v1/cameras/{(await add_camera(client, admin))['camera_id']}"
        body = {"mode": "continuous", "retention_days": 3}
        status, answer = await call(client, "PUT", f"{base}/recording", vera, body)
        assert status == 403
        assert "'viewer'" in answer["error"]
        assert (await call(client, "GET", f"{base}/recording", vera))[0] == 200
        assert (await call(client, "GET", f"{base}/archive", vera))[0] == 200
        for method, path in [
            ("GET", "/recording"),
            ("PUT", "/recording"),
            ("GET", "/archive"),
            ("GET", "/archive/playlist.m3u8"),
            ("GET", "/archive/files/r000000000000001/init.mp4"),
        ]:
            status, answer = await call(client, method, base + path, olga, body)
            assert (status, answer) == (404, {"error": "no such camera"}), path
        assert (await call(client, "GET", f"{base}/recording", admin))[1]["mode"] == "off"


# --- an archive written by hand ---------------------------------------------------------


async def test_spans_playlist_and_files_of_an_archive(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    base = f"/v1/cameras/{camera['camera_id']}"
    start = time.time() - 600
    first = write_run(archive_of(mock, camera), start, [2.0, 2.0, 1.5], size=100)
    second = write_run(archive_of(mock, camera), start + 60, [2.0], size=200)

    shown = await archive(client, auth, base)
    assert [(s["start"], s["end"]) for s in shown["spans"]] == [
        pytest.approx((start, start + 5.5), abs=0.01),
        pytest.approx((start + 60, start + 62), abs=0.01),
    ]
    # A range cuts the spans; an empty one has none.
    query = f"?from={start + 1}&to={start + 61}"
    cut = (await archive(client, auth, base, query))["spans"]
    assert [(s["start"], s["end"]) for s in cut] == [
        pytest.approx((start + 1, start + 5.5), abs=0.01),
        pytest.approx((start + 60, start + 61), abs=0.01),
    ]
    assert (await archive(client, auth, base, f"?from={start - 100}&to={start - 50}"))[
        "spans"
    ] == []

    async with client.get(
        f"{base}/archive/playlist.m3u8?start={start + 3}&end={start + 70}", headers=auth
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/vnd.apple.mpegurl"
        playlist = await response.text()
    uris = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    assert uris == [
        f"files/{first.name}/seg000001.m4s",
        f"files/{first.name}/seg000002.m4s",
        f"files/{second.name}/seg000000.m4s",
    ]
    assert f'#EXT-X-MAP:URI="files/{second.name}/init.mp4"' in playlist
    assert "#EXT-X-DISCONTINUITY" in playlist
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")

    status, answer = await call(
        client, "GET", f"{base}/archive/playlist.m3u8?start={start - 100}&end={start - 50}", auth
    )
    assert status == 404
    assert "recorded" in answer["error"]

    # The URIs resolve next to the playlist, to its files.
    for uri, size, kind in [
        (uris[0], 100, "video/iso.segment"),
        (uris[2], 200, "video/iso.segment"),
        (f"files/{first.name}/init.mp4", 24, "video/mp4"),
    ]:
        async with client.get(f"{base}/archive/{uri}", headers=auth) as response:
            assert response.status == 200, uri
            assert response.content_type == kind
            assert len(await response.read()) == size

    # And through the console's same-origin gateway, with the session as its cookie.
    secret = auth["Authorization"].removeprefix("Bearer ")
    cookie = {"Cookie": f"{SESSION_COOKIE}={secret}"}
    console_playlist = f"/console/api{base}/archive/playlist.m3u8?start={start}&end={start + 70}"
    async with client.get(console_playlist, headers=cookie) as response:
        assert response.status == 200
        relative = next(
            line for line in (await response.text()).splitlines() if line.startswith("files/")
        )
    resolved = urllib.parse.urljoin(console_playlist, relative)
    assert resolved == f"/console/api{base}/archive/{relative}"
    async with client.get(resolved, headers=cookie) as response:
        assert response.status == 200
        assert response.content_type == "video/iso.segment"


def raw_get(mock: RunningMock, path: str, auth: dict[str, str]) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client normalizing dots or escapes)."""
    url = urllib.parse.urlsplit(mock.url)
    assert url.hostname is not None
    context = ssl.create_default_context(cafile=str(mock.data_dir / "ca.pem"))
    connection = http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers=auth)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_files_outside_the_archive_are_not_found(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str], tmp_path: Path
) -> None:
    camera = await add_camera(client, auth)
    base = f"/v1/cameras/{camera['camera_id']}/archive/files"
    run = write_run(archive_of(mock, camera), time.time() - 60, [1.0], size=10)
    secret = tmp_path / "secret.txt"
    secret.write_text("the mock's secrets")
    (run / "seg000005.m4s").symlink_to(secret)  # planted
    (run / "seg000006.m4s").symlink_to(run / "seg000000.m4s")
    (run.parent / "r000000000000009").symlink_to(run)
    good = f"{base}/{run.name}/seg000000.m4s"
    assert await asyncio.to_thread(raw_get, mock, good, auth) == (200, bytes(10))
    for attempt in [
        f"{base}/{run.name}/seg000005.m4s",
        f"{base}/{run.name}/seg000006.m4s",
        f"{base}/r000000000000009/seg000000.m4s",
        f"{base}/{run.name}/index.m3u8",
        f"{base}/{run.name}/clock",
        f"{base}/{run.name}/..",
        f"{base}/../../../../../../etc/passwd",
        f"{base}/{run.name}/../../../../../../../etc/passwd",
        f"{base}/%2e%2e/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        f"{base}/{run.name}/%2e%2e%2f%2e%2e%2f..%2fsecret.txt",
        f"{base}/{run.name}/%2Fetc%2Fpasswd",
        f"{base}/%2Fetc/passwd",
        f"{base}/{run.name}/seg000000.m4s%00",
        f"{base}/{run.name}/seg000000.m4s.tmp",
    ]:
        status, body = await asyncio.to_thread(raw_get, mock, attempt, auth)
        assert status == 404, (attempt, body)
        assert b"secrets" not in body
        assert b"root:" not in body
