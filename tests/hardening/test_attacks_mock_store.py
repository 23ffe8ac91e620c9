"""Attacks on the mock cloud's store and device routes (issue 17, rows 5, 6, 7 and 9),
each played as the outside attack test played it, now answered.

- 5: anyone who knows an NVR's device ID registers codes for it to push its live code out
  (and, issue 25, such codes no longer keep the NVR from registering its own);
- 6: unauthenticated polls (for made-up device IDs) grow the provisioning log;
- 7: integers out of range (a poll's `ts` = 10**309) gave a 500;
- 9: the database was world-readable when its data directory already existed.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cloud_mock import provisioning
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.server import RunningMock, start
from cloud_mock.store import DB_NAME
from cloud_mock.testing import running_mock_cloud
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import add_camera, login, poll_body
from tests.cloud_mock.nvr_helpers import NVR_ID, Nvr, add_registrator, call, unseal_with


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[RunningMock]:
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def client(mock: RunningMock) -> AsyncIterator[aiohttp.ClientSession]:
    async with client_for(mock) as session:
        yield session


# --- 5: an NVR's live activation code cannot be pushed out by others -------------------------


async def test_registrations_under_another_secret_evict_nothing(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    nvr = Nvr()
    code = await nvr.code(client)
    attacker = Nvr(NVR_ID)  # knows the device ID, not the NVR's secret
    answers = [await attacker.register_code(client) for _ in range(7)]
    # Issue 25: accepted beside the NVR's own code (a refusal held the ID for whoever
    # came first), and still nothing of the NVR's is pushed out.
    assert [status for status, _ in answers] == [201] * 7
    codes = {a.code: a.secret for a in mock.app[STORE].registrators.activations_of(NVR_ID)}
    assert codes[code] == nvr.secrets[code]
    assert sum(secret == attacker.secret for secret in codes.values()) == 5  # its own newest
    # The admin activates the code the NVR shows, and the NVR collects its token.
    auth = await login(client, mock.data_dir)
    rid = (await add_registrator(client, auth))["id"]
    status, body = await call(
        client, "POST", f"/v1/registrators/{rid}/activate", auth, {"code": code}
    )
    assert status == 200, body
    status, answer, _ = await nvr.poll(client, nvr.secrets[code])
    assert status == 200
    assert unseal_with(nvr.secrets[code], NVR_ID, answer["sealed_token"])
    # Linked, its unused codes are gone: after a reset (a new secret) it registers anew.
    assert (await Nvr(NVR_ID).register_code(client))[0] == 201


async def test_the_nvr_renews_under_its_own_secret(client: aiohttp.ClientSession) -> None:
    nvr = Nvr()
    await nvr.code(client)
    assert (await nvr.register_code(client))[0] == 201  # same secret: a second live code


# --- 6: the provisioning log is bounded -------------------------------------------------------


async def _unknown_polls(client: aiohttp.ClientSession, count: int) -> None:
    for n in range(count):
        device_id = f"02:66:00:00:{n // 256:02x}:{n % 256:02x}"
        async with client.post(
            "/v1/provisioning/poll", json=poll_body(device_id, "x", key=b"k" * 32)
        ) as response:
            assert response.status == 204


async def test_polls_for_unknown_devices_are_aggregated(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    await _unknown_polls(client, 300)
    store = mock.app[STORE]
    rows = store.devices.aggregated_polls()
    # One row per period (a minute) and result, not one per poll.
    assert sum(r.count for r in rows) == 300
    assert store.devices.poll_log_rows() <= 2


async def test_the_provisioning_log_is_kept_by_age_and_count(
    client: aiohttp.ClientSession, mock: RunningMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provisioning, "POLL_LOG_PRUNE_EVERY_S", 0.0)
    monkeypatch.setattr(provisioning, "POLL_LOG_MAX_ROWS", 40)
    auth = await login(client, mock.data_dir)
    camera = await add_camera(client, auth, device_id="02:66:00:00:01:00", password="right")
    for _ in range(100):  # wrong proofs for a known device: one row per poll for its claim
        body = poll_body("02:66:00:00:01:00", "wrong", key=b"w" * 32)
        async with client.post("/v1/provisioning/poll", json=body) as response:
            assert response.status == 204
    store = mock.app[STORE]
    # Pruned down to the bound on the next poll; between prunes it is exceeded by at most
    # the rows of one poll.
    assert store.devices.poll_log_rows() <= 41
    assert len(store.devices.polls(camera["camera_id"])) <= 41
    # Eight days later (the default keeps seven) the old rows go.
    mock.app[CLOCK].advance(8 * 86_400)
    now = int(mock.app[CLOCK].now())
    async with client.post(
        "/v1/provisioning/poll", json=poll_body("02:66:00:00:01:01", "x", ts=now, key=b"k" * 32)
    ) as response:
        assert response.status == 204
    async with client.post(
        "/v1/provisioning/poll", json=poll_body("02:66:00:00:01:02", "x", ts=now, key=b"k" * 32)
    ) as response:
        assert response.status == 204
    assert store.devices.polls(camera["camera_id"]) == []
    assert store.devices.poll_log_rows() == 1  # today's aggregate


async def test_the_poll_log_age_is_a_setting(client: aiohttp.ClientSession) -> None:
    async with client.post("/v1/test/settings", json={"poll_log_max_age_s": 3600}) as response:
        assert response.status == 200
        assert (await response.json())["poll_log_max_age_s"] == 3600
    async with client.post("/v1/test/settings", json={"poll_log_max_age_s": 0}) as response:
        assert response.status == 400


# --- 7: integers are range-checked at parse ----------------------------------------------------


@pytest.mark.parametrize("ts", [10**309, -1, 2**63, 10**20])
async def test_an_out_of_range_ts_is_400_not_500(client: aiohttp.ClientSession, ts: int) -> None:
    body = {**poll_body("02:66:00:00:02:00", "x", key=b"k" * 32), "ts": ts}
    async with client.post(
        "/v1/provisioning/poll",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert "ts must be an integer from 0 to" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/test/clock", {"advance_s": 1e308}),
        ("/v1/test/settings", {"max_sessions": 10**30}),
        ("/v1/test/settings", {"captcha": {"after_failures": 10**30}}),
        ("/v1/test/settings", {"claim_ttl_s": 1e300}),
    ],
)
async def test_other_integers_out_of_range_are_400(
    client: aiohttp.ClientSession, path: str, body: dict[str, object]
) -> None:
    async with client.post(path, json=body) as response:
        assert response.status == 400, await response.text()
        assert "error" in await response.json()


async def test_a_mac_looking_id_of_five_octets_is_400(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    auth = await login(client, mock.data_dir)
    async with client.post(
        "/v1/cameras", headers=auth, json={"device_id": "aa:bb:cc:dd:ee", "password": "p"}
    ) as response:
        assert response.status == 400
        assert "6 octets" in (await response.json())["error"]


# --- 9: the database is private ---------------------------------------------------------------


def test_the_database_is_private_in_an_existing_world_readable_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "cloud"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    old = os.umask(0o022)
    try:
        with running_mock_cloud(data_dir) as cloud:
            cloud.login()  # something written: the WAL holds it
            assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
            for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
                mode = stat.S_IMODE((data_dir / name).stat().st_mode)
                assert mode == 0o600, f"{name} is {mode:o}"
    finally:
        os.umask(old)
