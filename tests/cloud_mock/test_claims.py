"""Claims through the API of an in-process mock: several orgs on one device ID, the
newest verified claim wins, `moved`, squatters, the bound, expiry, PATCH."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.exceptions import InvalidTag

from cloud_mock.claims import MAX_OPEN_CLAIMS
from cloud_mock.server import RunningMock, start
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import MAC, PASSWORD, add_camera, login, poll_body, unseal
from tests.cloud_mock.test_devices_ws import closed_with, device, hello

ORGS = [f"org{i}" for i in range(1, MAX_OPEN_CLAIMS + 2)]  # one more than the bound


@pytest.fixture
async def orgs(tmp_path: Path) -> AsyncIterator[RunningMock]:
    fixtures = {
        "orgs": [{"name": org, "business": False} for org in ORGS],
        "users": [
            {"login": f"{org}-owner", "password": f"{org}-pass", "org": org, "role": "owner"}
            for org in ORGS
        ],
    }
    path = tmp_path / "orgs.json"
    path.write_text(json.dumps(fixtures))
    running = await start(mock_options(tmp_path / "cloud", fixtures=path))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def client(orgs: RunningMock) -> AsyncIterator[aiohttp.ClientSession]:
    async with client_for(orgs) as session:
        yield session


async def owner(client: aiohttp.ClientSession, mock: RunningMock, org: str) -> dict[str, str]:
    return await login(client, mock.data_dir, login_name=f"{org}-owner", password=f"{org}-pass")


async def poll(client: aiohttp.ClientSession, password: str, device_id: str = MAC) -> str | None:
    """The token the device gets with this password, or None (204)."""
    async with client.post(
        "/v1/provisioning/poll", json=poll_body(device_id, password)
    ) as response:
        if response.status == 204:
            return None
        assert response.status == 200, await response.text()
        return unseal((await response.json())["sealed_token"], password, device_id)


async def camera(
    client: aiohttp.ClientSession, auth: dict[str, str], camera_id: str
) -> dict[str, Any]:
    async with client.get(f"/v1/cameras/{camera_id}", headers=auth) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def raw_add(
    client: aiohttp.ClientSession, auth: dict[str, str], device_id: str, password: str
) -> tuple[int, dict[str, Any]]:
    async with client.post(
        "/v1/cameras", headers=auth, json={"device_id": device_id, "password": password}
    ) as response:
        return response.status, await response.json()


async def test_adding_another_orgs_device_answers_like_a_fresh_add(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    a, b = await owner(client, orgs, "org1"), await owner(client, orgs, "org2")
    await add_camera(client, a)
    taken_status, taken = await raw_add(client, b, MAC, "anything")
    fresh_status, fresh = await raw_add(client, b, "aa:bb:cc:dd:ee:99", "anything")
    assert taken_status == fresh_status == 201
    assert set(taken) == set(fresh) == {"camera_id", "token", "sealed_token", "device_id"}
    # What the second org gets is sealed under the password it typed: the label's K (the
    # first org's, here) does not open it, so no camera takes it (docs/design.md §2.9).
    assert unseal(taken["sealed_token"], "anything", MAC) == taken["token"]
    with pytest.raises(InvalidTag):
        unseal(taken["sealed_token"], PASSWORD, MAC)
    assert (await camera(client, b, taken["camera_id"]))["status"] == "waiting"
    # The same org adding it again is told.
    status, body = await raw_add(client, a, MAC, "other")
    assert status == 409
    assert MAC in body["error"]
    own = (await raw_add(client, b, MAC, "again"))[1]
    assert own["camera_id"] == taken["camera_id"]  # the org's own camera, to PATCH
    assert own["status"] == "waiting"


async def test_a_reset_moves_the_camera_to_the_newest_verified_claim(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    a, b = await owner(client, orgs, "org1"), await owner(client, orgs, "org2")
    cam_a = await add_camera(client, a)
    assert await poll(client, PASSWORD) == cam_a["token"]
    async with device(client, cam_a["token"]) as ws_a:
        await hello(ws_a)
        cam_b = await add_camera(client, b)  # B knows the label password
        # The device holds A's token and makes no poll: nothing changes for A.
        assert (await camera(client, a, cam_a["camera_id"]))["status"] == "online"
        # Reset: the device polls again, and B's claim, the newest, wins.
        assert await poll(client, PASSWORD) == cam_b["token"]
        assert await closed_with(ws_a) == (4401, "token revoked: the camera moved")
    moved = await camera(client, a, cam_a["camera_id"])
    assert moved["status"] == "moved"
    # A moved claim is closed: no sealed token for a card any more.
    async with client.get(f"/v1/cameras/{cam_a['camera_id']}/token", headers=a) as response:
        assert response.status == 409
        assert "moved" in (await response.json())["error"]
    assert isinstance(moved["moved_at"], float)
    assert "org2" not in json.dumps(moved)  # nothing about where
    async with device(client, cam_a["token"]) as ws_old:
        assert (await closed_with(ws_old))[0] == 4401
    async with device(client, cam_b["token"]) as ws_b:
        await hello(ws_b)
        assert (await camera(client, b, cam_b["camera_id"]))["status"] == "online"
    # Another poll with the same password goes on giving B's token.
    assert await poll(client, PASSWORD) == cam_b["token"]


async def test_a_squatters_claim_blocks_nobody_and_learns_nothing_of_the_device(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    squatter, owner_auth = await owner(client, orgs, "org1"), await owner(client, orgs, "org2")
    squat = await add_camera(client, squatter, password="made-up")
    own = await add_camera(client, owner_auth)
    assert await poll(client, PASSWORD) == own["token"]
    squat_view = await camera(client, squatter, squat["camera_id"])
    assert squat_view["status"] == "waiting"
    assert squat_view["polls"] == []  # the device's poll proved another K: not his business
    own_view = await camera(client, owner_auth, own["camera_id"])
    assert [p["result"] for p in own_view["polls"]] == ["token"]
    async with device(client, own["token"]) as ws:
        await hello(ws)
        # The squatter polling as the device with the password he made up gets his own
        # token, and takes nothing from the owner (whose K that poll did not prove).
        assert await poll(client, "made-up") == squat["token"]
        own_view = await camera(client, owner_auth, own["camera_id"])
        assert own_view["status"] == "online"
        assert own_view["moved_at"] is None
        # The real device, reset, still goes to the owner.
        assert await poll(client, PASSWORD) == own["token"]


async def test_eight_places_the_oldest_unproven_claim_waits_outside(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    added = {}
    for org in ORGS:  # MAX_OPEN_CLAIMS + 1 orgs, each with its own password
        auth = await owner(client, orgs, org)
        added[org] = (auth, await add_camera(client, auth, password=f"pw-{org}"))
    # org1's claim lost its place to the ninth add; nothing tells org1 (nor anyone).
    for org in ORGS:
        auth, cam = added[org]
        view = await camera(client, auth, cam["camera_id"])
        assert (view["status"], view["polls"]) == ("waiting", [])
    assert await poll(client, "pw-org1") is None
    last = ORGS[-1]
    assert await poll(client, f"pw-{last}") == added[last][1]["token"]
    # A place frees (org2 deletes its camera): org1's claim is checked again.
    auth2, cam2 = added["org2"]
    async with client.delete(f"/v1/cameras/{cam2['camera_id']}", headers=auth2) as response:
        assert response.status == 204
    assert await poll(client, "pw-org1") == added["org1"][1]["token"]


async def test_an_unproven_claim_expires_after_claim_ttl(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    a = await owner(client, orgs, "org1")
    async with client.post("/v1/test/settings", json={"claim_ttl_s": 100}) as response:
        assert response.status == 200
    cam = await add_camera(client, a)
    async with client.post("/v1/test/clock", json={"advance_s": 101}) as response:
        assert response.status == 200
    assert (await camera(client, a, cam["camera_id"]))["status"] == "expired"
    async with client.post(
        "/v1/provisioning/poll", json=poll_body(MAC, PASSWORD, ts=int(await mock_now(client)))
    ) as response:
        assert response.status == 204


async def mock_now(client: aiohttp.ClientSession) -> float:
    async with client.get("/v1/test/clock") as response:
        now: float = (await response.json())["now"]
        return now


async def test_a_waiting_claim_takes_another_password(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    a, b = await owner(client, orgs, "org1"), await owner(client, orgs, "org2")
    cam = await add_camera(client, a, password="typo")
    path = f"/v1/cameras/{cam['camera_id']}"
    async with client.patch(path, headers=b, json={"password": PASSWORD}) as response:
        assert response.status == 404  # not B's camera
    async with client.patch(path, headers=a, json={}) as response:
        assert response.status == 400
    async with client.patch(path, headers=a, json={"password": PASSWORD}) as response:
        assert response.status == 200
        changed = await response.json()
    assert {k: changed[k] for k in ("camera_id", "token")} == {
        "camera_id": cam["camera_id"],
        "token": cam["token"],
    }
    assert set(changed) == {"camera_id", "token", "sealed_token"}
    # Sealed again, under the new password's K: the old one's card no longer opens.
    assert unseal(changed["sealed_token"], PASSWORD, MAC) == cam["token"]
    with pytest.raises(InvalidTag):
        unseal(changed["sealed_token"], "typo", MAC)
    assert await poll(client, "typo") is None
    assert await poll(client, PASSWORD) == cam["token"]
    async with client.patch(path, headers=a, json={"password": "again"}) as response:
        assert response.status == 409  # proven: no longer waiting
        assert "waiting" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("device_id", "rule"),
    [("aa:bb:cc:dd:ee", "6 octets"), ("aa-bb-cc-dd-ee-ff-00", "6 octets"), ("a b", "1 to 128")],
)
async def test_a_bad_device_id_is_400_naming_the_rule(
    client: aiohttp.ClientSession, orgs: RunningMock, device_id: str, rule: str
) -> None:
    status, body = await raw_add(client, await owner(client, orgs, "org1"), device_id, "p")
    assert status == 400
    assert rule in body["error"]
    assert repr(device_id) in body["error"]
