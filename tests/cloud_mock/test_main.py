"""`python -m cloud_mock` as a real subprocess, started through cloud_mock.testing."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_mock.testing import (
    MockCloud,
    MockCloudError,
    mock_command,
    mock_env,
    running_mock_cloud,
    start_mock_cloud,
)
from tests.cloud_mock.helpers import MAC, PASSWORD, poll_body, unseal, verify_token
from tests.eventually import eventually


def port_of(url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    return port


def test_ready_files_and_url(tmp_path: Path) -> None:
    with running_mock_cloud(tmp_path / "cloud") as cloud:
        url, data_dir, process = cloud
        assert url.startswith("https://127.0.0.1:")
        assert (data_dir / "url").read_text() == url + "\n"
        for name in ("ca.pem", "token-signing.pub.pem", "admin-password"):
            assert (data_dir / name).is_file()
        assert (data_dir / "admin-password").stat().st_mode & 0o777 == 0o600
        status, keys = cloud.request("GET", "/v1/keys")
        assert status == 200
        assert keys["keys"][0]["pem"] == cloud.signing_key_file.read_text()
        assert process.poll() is None
    assert process.returncode == 0


def test_restart_keeps_port_state_and_tokens(tmp_path: Path) -> None:
    data_dir = tmp_path / "cloud"
    with running_mock_cloud(data_dir) as cloud:
        session = cloud.login()
        camera = cloud.add_camera(session, MAC, PASSWORD, name="front door")
        first_url = cloud.url
    assert cloud.process.returncode == 0

    with running_mock_cloud(data_dir) as cloud:
        assert cloud.url == first_url  # so the token's `api` still names this cloud
        session = cloud.login()
        assert cloud.camera(session, camera["camera_id"])["name"] == "front door"
        status, body = cloud.request("POST", "/v1/provisioning/poll", poll_body(MAC, PASSWORD))
        assert status == 200
        token = unseal(body["sealed_token"], PASSWORD, MAC)
        assert token == camera["token"]
        assert verify_token(token, cloud.signing_key_file)["api"] == first_url

    # Port taken by someone else: a free one is picked, state is still there.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port_of(first_url)))
        squatter.listen()
        with running_mock_cloud(data_dir) as cloud:
            assert cloud.url != first_url
            assert cloud.camera(cloud.login(), camera["camera_id"])["device_id"] == MAC


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        (
            '{"users": [{"login": "x", "password": "p", "org": "demo", "role": "boss"}]}',
            "users[0].role",
        ),
        ('{"orgs": [{"name": "a", "business": "yes"}], "extra": 1}', "'extra'"),
    ],
)
def test_bad_fixtures_exit_1_naming_the_file(tmp_path: Path, content: str, problem: str) -> None:
    fixtures = tmp_path / "my-fixtures.json"
    fixtures.write_text(content)
    result = subprocess.run(
        mock_command(tmp_path / "cloud", fixtures=fixtures),
        env=mock_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert str(fixtures) in result.stderr
    assert problem in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "cloud" / "url").exists()


def test_second_mock_on_same_data_dir_exit_1(tmp_path: Path) -> None:
    with running_mock_cloud(tmp_path / "cloud"):
        result = subprocess.run(
            mock_command(tmp_path / "cloud"),
            env=mock_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "already running" in result.stderr


def test_helper_reports_a_mock_that_does_not_start(tmp_path: Path) -> None:
    fixtures = tmp_path / "broken.json"
    fixtures.write_text("[]")
    with pytest.raises(MockCloudError, match="exited with status 1") as caught:
        start_mock_cloud(tmp_path / "cloud", fixtures=fixtures)
    assert str(fixtures) in str(caught.value)  # the log tail says why


def test_missing_fixtures_file_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = subprocess.run(
        mock_command(tmp_path / "cloud", fixtures=missing),
        env=mock_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert str(missing) in result.stderr


def test_fixture_users_can_log_in(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(
        json.dumps(
            {
                "orgs": [{"name": "acme", "business": True}],
                "users": [
                    {
                        "login": "nina",
                        "password": "s3cret",
                        "org": "acme",
                        "role": "manage_registrators",
                    }
                ],
                "settings": {"captcha": "always"},
            }
        )
    )
    with running_mock_cloud(tmp_path / "cloud", fixtures=fixtures) as cloud:
        status, answer = cloud.request(
            "POST", "/v1/auth/login", {"login": "nina", "password": "s3cret"}
        )
        assert (status, answer["error"]) == (428, "captcha_required")
        # login_body solves the captcha through the test hooks.
        answer = cloud.login_body("nina", "s3cret")
        assert answer["user"] == {"login": "nina", "org": "acme", "role": "manage_registrators"}


def _held_poll(cloud: MockCloud, result: dict[str, Any]) -> None:
    result["answer"] = cloud.request(
        "POST", "/v1/provisioning/poll", poll_body("aa:bb:cc:dd:ee:77", PASSWORD, wait=60)
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_even_with_held_polls(
    tmp_path: Path, signum: signal.Signals
) -> None:
    cloud = start_mock_cloud(tmp_path / "cloud")
    result: dict[str, Any] = {}
    poller = threading.Thread(target=_held_poll, args=(cloud, result))
    poller.start()
    eventually(cloud.held_polls, until=lambda held: held == 1, what="the poll held by the mock")
    cloud.process.send_signal(signum)
    # The poll is held for 60 s: ended well before that, the mock neither waited it out nor
    # cut it off (it answers 204 at shutdown).
    assert cloud.process.wait(30) == 0
    poller.join(30)
    assert result["answer"] == (204, None)
    cloud.stop()


def test_bad_environment_exit_1(tmp_path: Path) -> None:
    result = subprocess.run(
        mock_command(tmp_path / "cloud"),
        env=mock_env({"CAMAGENT_MOCK_HEARTBEAT_S": "soon"}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "CAMAGENT_MOCK_HEARTBEAT_S" in result.stderr


@pytest.mark.parametrize(
    ("extra", "env", "named"),
    [
        (["--archive-max-mb", "0"], {}, "archive_max_mb"),
        ([], {"CAMAGENT_MOCK_VIDEO_LINGER_S": "a while"}, "CAMAGENT_MOCK_VIDEO_LINGER_S"),
        ([], {"CAMAGENT_MOCK_VIDEO_PROBE_S": "-1"}, "probe_s"),
    ],
)
def test_bad_video_settings_exit_1_naming_the_setting(
    tmp_path: Path, extra: list[str], env: dict[str, str], named: str
) -> None:
    result = subprocess.run(
        [*mock_command(tmp_path / "cloud"), *extra],
        env=mock_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


async def test_heartbeat_from_environment(tmp_path: Path) -> None:
    cloud = start_mock_cloud(tmp_path / "cloud", env={"CAMAGENT_MOCK_HEARTBEAT_S": "2"})
    try:
        session = cloud.login()
        camera = cloud.add_camera(session, MAC, PASSWORD)
        connector = aiohttp.TCPConnector(ssl=cloud.ssl_context())
        async with (
            aiohttp.ClientSession(connector=connector) as client,
            client.ws_connect(
                cloud.url + "/v1/devices/ws", headers={"Authorization": f"Bearer {camera['token']}"}
            ) as ws,
        ):
            await ws.send_json(
                {"type": "hello", "device_id": MAC, "kind": "camera", "version": "test"}
            )
            assert (await ws.receive_json(timeout=5))["heartbeat_s"] == 2
    finally:
        assert cloud.stop() == 0
