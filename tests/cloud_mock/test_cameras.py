"""Cameras CRUD through the user API."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from cloud_mock.server import RunningMock
from tests.cloud_mock.helpers import (
    MAC,
    PASSWORD,
    add_camera,
    login,
    poll_body,
    unseal,
    verify_token,
)
from tests.cloud_mock.nvr_helpers import PASSWORDS


async def test_add_list_get_delete(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    created = await add_camera(client, auth, device_id="AA-BB-CC-DD-EE-01", name="porch")
    assert created["device_id"] == MAC  # normalized
    assert set(created) == {"camera_id", "token", "sealed_token", "device_id"}
    claims = verify_token(created["token"], mock.data_dir / "token-signing.pub.pem")
    assert claims["sub"] == MAC
    # The same token sealed under the K of the password given (docs/design.md §2.9).
    assert unseal(created["sealed_token"], PASSWORD, MAC) == created["token"]

    async with client.get("/v1/cameras", headers=auth) as response:
        assert response.status == 200
        [camera] = (await response.json())["cameras"]
    assert camera["camera_id"] == created["camera_id"]
    assert camera["name"] == "porch"
    assert camera["org"] == "demo"
    assert camera["status"] == "waiting"
    assert camera["last_seen"] is None
    assert isinstance(camera["created"], float)

    async with client.post("/v1/provisioning/poll", json=poll_body(MAC, PASSWORD)) as response:
        assert response.status == 200
    async with client.get(f"/v1/cameras/{created['camera_id']}", headers=auth) as response:
        assert response.status == 200
        detail = await response.json()
    assert {k: detail[k] for k in camera} == camera
    assert [p["result"] for p in detail["polls"]] == ["token"]
    assert set(detail["polls"][0]) == {"device_id", "at", "result", "wait", "held_s"}

    async with client.delete(f"/v1/cameras/{created['camera_id']}", headers=auth) as response:
        assert response.status == 204
    async with client.get(f"/v1/cameras/{created['camera_id']}", headers=auth) as response:
        assert response.status == 404
    async with client.delete(f"/v1/cameras/{created['camera_id']}", headers=auth) as response:
        assert response.status == 404
    # Its provisioning entry is gone: the same device now gets nothing.
    async with client.post("/v1/provisioning/poll", json=poll_body(MAC, PASSWORD)) as response:
        assert response.status == 204


async def test_duplicate_device_is_409(client: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    await add_camera(client, auth)
    async with client.post(
        "/v1/cameras",
        headers=auth,
        json={
            "device_id": "AABBCCDDEE01",
            "password": "other",
            "name": "again",
        },
    ) as response:
        assert response.status == 409
        assert MAC in (await response.json())["error"]


async def test_readding_after_delete_gives_a_new_token(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    first = await add_camera(client, auth)
    async with client.delete(f"/v1/cameras/{first['camera_id']}", headers=auth) as response:
        assert response.status == 204
    second = await add_camera(client, auth)
    assert second["token"] != first["token"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"device_id": "not a mac!", "password": "p"}, "invalid device ID"),
        ({"device_id": MAC, "password": ""}, "password"),
        ({"device_id": MAC, "password": "x" * 257}, "password"),
        ({"device_id": MAC, "password": 5}, "password"),
        ({"device_id": MAC}, "password"),
        ({"password": "p"}, "device_id"),
        ({"device_id": ["x"], "password": "p"}, "device_id"),
        ({"device_id": MAC, "password": "p", "name": 7}, "name"),
        ({"device_id": MAC, "password": "p", "org": 7}, "org"),
        ([MAC], "JSON object"),
    ],
)
async def test_invalid_camera_is_400(
    client: aiohttp.ClientSession, auth: dict[str, str], body: Any, fragment: str
) -> None:
    async with client.post("/v1/cameras", headers=auth, json=body) as response:
        assert response.status == 400
        assert fragment in (await response.json())["error"]


@pytest.mark.parametrize(
    ("device_id", "hint"),
    [
        ("02:AA:BB:CC:DD:O7", "'O' is a letter, not the digit 0"),
        ("O2-CA-FE-00-00-01", "'O' is a letter, not the digit 0"),
        ("02:ca:fe:00:00:01:", "separator at the start or the end"),
        ("02ca.fe00.0001", "dotted form"),
    ],
)
async def test_mac_lookalikes_are_400_naming_the_rule(
    client: aiohttp.ClientSession, auth: dict[str, str], device_id: str, hint: str
) -> None:
    body = {"device_id": device_id, "password": "p"}
    async with client.post("/v1/cameras", headers=auth, json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert hint in error
    assert "exactly 6 octets of two hex digits" in error
    async with client.get("/v1/cameras", headers=auth) as response:
        assert device_id not in await response.text()


async def test_malformed_json_is_400(client: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    async with client.post("/v1/cameras", headers=auth, data=b"{oops") as response:
        assert response.status == 400
        assert (await response.json())["error"] == "request body is not valid JSON"


async def test_other_org_is_403(client: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    async with client.post(
        "/v1/cameras",
        headers=auth,
        json={
            "org": "someone-else",
            "device_id": MAC,
            "password": "p",
        },
    ) as response:
        assert response.status == 403


async def test_body_over_64k_is_413(client: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    async with client.post(
        "/v1/cameras",
        headers=auth,
        json={
            "device_id": MAC,
            "password": "p",
            "name": "x" * 70_000,
        },
    ) as response:
        assert response.status == 413
        assert "error" in await response.json()


async def test_command_to_unconnected_camera_is_409(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    async with client.post(
        f"/v1/cameras/{camera['camera_id']}/commands", headers=auth, json={"name": "ping"}
    ) as response:
        assert response.status == 409
    bad: list[dict[str, Any]] = [{"name": ""}, {"name": "ping", "args": [1]}, {"args": {}}]
    for body in bad:
        async with client.post(
            f"/v1/cameras/{camera['camera_id']}/commands", headers=auth, json=body
        ) as response:
            assert response.status == 400


async def test_the_sealed_token_route_seals_afresh_for_the_claims_password(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    """`GET /v1/cameras/{id}/token`: a card or a push for a camera that was added earlier.
    It opens only with the K of the password the org typed, and never for another device."""
    from cryptography.exceptions import InvalidTag

    created = await add_camera(client, auth, password="what-the-org-typed")
    path = f"/v1/cameras/{created['camera_id']}/token"
    answers = []
    for _ in range(2):
        async with client.get(path, headers=auth) as response:
            assert response.status == 200
            answers.append(await response.json())
    assert [set(a) for a in answers] == [{"camera_id", "sealed_token"}] * 2
    assert answers[0]["camera_id"] == created["camera_id"]
    sealed = [a["sealed_token"] for a in answers]
    assert sealed[0] != sealed[1] != created["sealed_token"]  # a new nonce each time
    for each in sealed:
        assert unseal(each, "what-the-org-typed", MAC) == created["token"]
        with pytest.raises(InvalidTag):
            unseal(each, PASSWORD, MAC)  # the label's password, if it differs: no
        with pytest.raises(InvalidTag):
            unseal(each, "what-the-org-typed", "aa:bb:cc:dd:ee:02")
    async with client.get(path) as response:
        assert response.status == 401

    # A camera whose claim the device proved: still sealed for it (a card after a reset).
    async with client.post(
        "/v1/provisioning/poll", json=poll_body(MAC, "what-the-org-typed")
    ) as response:
        assert response.status == 200
    async with client.get(path, headers=auth) as response:
        assert response.status == 200
        assert unseal((await response.json())["sealed_token"], "what-the-org-typed", MAC)

    async with client.delete(f"/v1/cameras/{created['camera_id']}", headers=auth) as response:
        assert response.status == 204
    async with client.get(path, headers=auth) as response:
        assert response.status == 404


async def test_the_sealed_token_is_the_orgs_own_and_not_a_viewers(
    team: RunningMock,
) -> None:
    from tests.cloud_mock.conftest import client_for

    async with client_for(team) as client:
        admin = await login(client, team.data_dir)  # demo
        viewer = await login(client, team.data_dir, login_name="vera", password=PASSWORDS["vera"])
        other = await login(client, team.data_dir, login_name="olga", password=PASSWORDS["olga"])
        created = await add_camera(client, admin)
        path = f"/v1/cameras/{created['camera_id']}/token"
        async with client.get(path, headers=other) as response:
            assert response.status == 404  # another org's camera is not found
        async with client.get(path, headers=viewer) as response:
            assert response.status == 403
            assert "viewer" in (await response.json())["error"]
