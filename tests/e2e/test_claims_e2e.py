"""Claims end to end: the mock cloud and camagent daemons as real subprocesses.

A camera moves to a new account with a reset, a MAC squatter blocks nobody and sees none
of the camera's polls, a device ID's claims share eight places that no add takes from a
connected owner, and another org's add answers exactly like a fresh one.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.provisioning.wire import PollRequest, derive_key
from agent.token_codec import parse_claims
from cloud_mock import sandbox
from cloud_mock.claims import MAX_OPEN_CLAIMS
from tests.e2e.conftest import Fleet, polls
from tests.eventually import eventually, eventually_async

pytestmark = pytest.mark.e2e

ORGS = [f"org{i}" for i in range(1, MAX_OPEN_CLAIMS + 2)]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[sandbox.Cloud]:
    """A mock with nine organizations, each with an owner `<org>-owner`."""
    fixtures = tmp_path / "orgs.json"
    fixtures.write_text(
        json.dumps(
            {
                "orgs": [{"name": org, "business": False} for org in ORGS],
                "users": [
                    {"login": f"{o}-owner", "password": f"{o}-pass", "org": o, "role": "owner"}
                    for o in ORGS
                ],
            }
        )
    )
    c = sandbox.start_cloud(tmp_path / "cloud", fixtures=fixtures)
    yield c
    c.stop()


def owner(cloud: sandbox.Cloud, org: str) -> str:
    return cloud.login(f"{org}-owner", f"{org}-pass")


def add(cloud: sandbox.Cloud, session: str, device_id: str, password: str) -> tuple[int, Any]:
    return cloud.request(
        "POST", "/v1/cameras", {"device_id": device_id, "password": password}, session=session
    )


def camera(cloud: sandbox.Cloud, session: str, camera_id: str) -> dict[str, Any]:
    status, body = cloud.request("GET", f"/v1/cameras/{camera_id}", session=session)
    assert status == 200, body
    return dict(body)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    eventually(check, timeout=timeout, interval=0.02, what=what)


def poll_as_device(cloud: sandbox.Cloud, device_id: str, password: str) -> int:
    """One poll with `password`'s proof (as a squatter polls, pretending to be the device)."""
    poll = PollRequest.build(derive_key(password, device_id), device_id, int(time.time()), 0)
    status, _ = cloud.request("POST", "/v1/provisioning/poll", poll.to_json())
    return status


def control_channel_close_code(cloud: sandbox.Cloud, token: str) -> int | None:
    """Open the control channel with `token`, say hello, return the close code."""

    async def run() -> int | None:
        context = ssl.create_default_context(cafile=str(cloud.ca_file))
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"{cloud.url}/v1/devices/ws",
                headers={"Authorization": f"Bearer {token}"},
                ssl=context,
            ) as ws,
        ):
            sock = ws.get_extra_info("socket")
            msg = await ws.receive(timeout=10)
            code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else None
        # A closed WebSocket's TLS shutdown goes on after the `async with`: wait for the
        # socket to close, else asyncio.run closes the loop under it (a ResourceWarning).
        await eventually_async(lambda: sock is None or sock.fileno() == -1, what="socket closed")
        return code

    return asyncio.run(run())


def test_a_camera_moves_to_a_new_account_with_a_reset(
    fleet: Fleet, cloud: sandbox.Cloud, run_cli: Callable[..., Any]
) -> None:
    a, b = owner(cloud, "org1"), owner(cloud, "org2")
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=1.0)
    status, cam_a = add(cloud, a, device_id, password)
    assert status == 201
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    assert agent.status()["token"]["org"] == "org1"
    until(lambda: camera(cloud, a, cam_a["camera_id"])["status"] == "online", 5, "A online")

    status, cam_b = add(cloud, b, device_id, password)  # B has the label password
    assert status == 201
    # Without a reset nothing changes for A: a camera holding a token never polls.
    polled = len(polls(cloud, device_id))
    time.sleep(1.0)  # time is the subject: two fast intervals, a polling device would poll
    assert len(polls(cloud, device_id)) == polled
    assert camera(cloud, a, cam_a["camera_id"])["status"] == "online"

    result = run_cli(config, "reset")
    assert result.returncode == 0, result.stderr
    until(lambda: camera(cloud, b, cam_b["camera_id"])["status"] == "online", 10, "B online")
    reset_poll = polls(cloud, device_id)[-1]
    assert reset_poll["result"] == "token"
    online_b = camera(cloud, b, cam_b["camera_id"])
    # `last_seen` is the hello on B's channel; both times are the mock's clock.
    delay = online_b["last_seen"] - reset_poll["at"]
    print(f"B online {delay:.3f} s after the reset's poll")
    # Online on that poll's token (order, not a time: the run may be on a busy machine):
    # the hello came after it, and the camera polled no more.
    assert delay >= 0, delay
    assert polls(cloud, device_id)[-1] == reset_poll
    assert agent.status()["token"]["org"] == "org2"

    moved = camera(cloud, a, cam_a["camera_id"])
    assert moved["status"] == "moved"
    assert moved["moved_at"] >= reset_poll["at"]
    assert "org2" not in json.dumps(moved)
    assert control_channel_close_code(cloud, cam_a["token"]) == 4401


def test_a_squatters_claim_blocks_nobody(fleet: Fleet, cloud: sandbox.Cloud) -> None:
    squatter, rightful = owner(cloud, "org1"), owner(cloud, "org2")
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=1.0)
    status, squat = add(cloud, squatter, device_id, "a-made-up-password")
    assert status == 201
    status, own = add(cloud, rightful, device_id, password)
    assert status == 201
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    assert agent.status()["token"]["org"] == "org2"
    until(lambda: camera(cloud, rightful, own["camera_id"])["status"] == "online", 5, "up")
    squat_view = camera(cloud, squatter, squat["camera_id"])
    assert squat_view["status"] == "waiting"
    # The camera's polls proved another K: the squatter's history shows none of them.
    assert squat_view["polls"] == []
    assert [p["result"] for p in camera(cloud, rightful, own["camera_id"])["polls"]] == ["token"]


def test_a_device_id_holds_at_most_eight_open_claims(fleet: Fleet, cloud: sandbox.Cloud) -> None:
    config, device_id, _ = fleet.configure(fast_interval=0.5, long_poll=1.0, password="pw-org2")
    added = {}
    for org in ORGS:  # one more than the bound, each with its own password
        session = owner(cloud, org)
        status, body = add(cloud, session, device_id, f"pw-{org}")
        assert status == 201
        added[org] = (session, body)
    # org1's claim lost its place to the ninth add; like every other it shows `waiting`.
    session1, cam1 = added["org1"]
    assert camera(cloud, session1, cam1["camera_id"])["status"] == "waiting"
    # org2's claim, now the oldest placed one, still works: the device connects to org2.
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    assert agent.status()["token"]["org"] == "org2"
    for org in ORGS[2:]:
        session, cam = added[org]
        assert camera(cloud, session, cam["camera_id"])["status"] == "waiting"


def test_adding_another_orgs_camera_answers_exactly_like_a_fresh_add(
    fleet: Fleet, cloud: sandbox.Cloud
) -> None:
    a, b = owner(cloud, "org1"), owner(cloud, "org2")
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=1.0)
    assert add(cloud, a, device_id, password)[0] == 201
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    held_status, held = add(cloud, b, device_id, "any password")
    fresh_status, fresh = add(cloud, b, "02:ff:ff:ff:ff:01", "any password")
    assert held_status == fresh_status == 201
    assert set(held) == set(fresh)
    assert {k: type(v) for k, v in held.items()} == {k: type(v) for k, v in fresh.items()}
    held_view = camera(cloud, b, held["camera_id"])
    fresh_view = camera(cloud, b, fresh["camera_id"])
    assert held_view["status"] == fresh_view["status"] == "waiting"
    assert set(held_view) == set(fresh_view)
    # Only the org's own second add is told "already exists".
    assert add(cloud, a, device_id, password)[0] == 409


def test_a_waiting_cameras_wrong_password_is_corrected(fleet: Fleet, cloud: sandbox.Cloud) -> None:
    session = owner(cloud, "org1")
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=2.0)
    status, cam = add(cloud, session, device_id, "the installer's typo")
    assert status == 201
    agent = fleet.start(config)
    until(lambda: len(polls(cloud, device_id)) >= 1, 10, "a poll")
    assert agent.status()["state"] == "provisioning"
    answer = cloud.change_camera_password(session, cam["camera_id"], password)
    assert (answer["camera_id"], answer["token"]) == (cam["camera_id"], cam["token"])
    agent.wait_for_state("connected", timeout=10)
    assert agent.status()["token"]["jti"] == parse_claims(cam["token"]).jti
    status, body = cloud.request(
        "PATCH", f"/v1/cameras/{cam['camera_id']}", {"password": "x"}, session=session
    )
    assert status == 409, body


def test_a_connected_camera_keeps_its_owner_against_eight_proven_claims(
    fleet: Fleet, cloud: sandbox.Cloud, run_cli: Callable[..., Any]
) -> None:
    """M1: the owner's camera is connected; seven other orgs add its ID, each proving its
    claim by polling as the device with its own password, and an eighth adds it. Before,
    that add dropped the owner's claim (the oldest live one): after a reset the camera
    got 204 forever. Now the used claims keep their places and the add waits outside."""
    owner_session = owner(cloud, "org1")
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=1.0)
    status, own = add(cloud, owner_session, device_id, password)
    assert status == 201
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    for org in ORGS[1:MAX_OPEN_CLAIMS]:
        assert add(cloud, owner(cloud, org), device_id, f"pw-{org}")[0] == 201
        assert poll_as_device(cloud, device_id, f"pw-{org}") == 200  # his own token
    late_session = owner(cloud, ORGS[MAX_OPEN_CLAIMS])
    status, late = add(cloud, late_session, device_id, "pw-late")
    assert status == 201
    assert camera(cloud, late_session, late["camera_id"])["status"] == "waiting"
    assert camera(cloud, owner_session, own["camera_id"])["status"] == "online"

    before = len(polls(cloud, device_id))
    result = run_cli(config, "reset")
    assert result.returncode == 0, result.stderr
    agent.wait_for_state("connected", timeout=10)
    assert agent.status()["token"]["jti"] == parse_claims(own["token"]).jti
    after = polls(cloud, device_id)
    assert len(after) > before
    assert after[-1]["result"] == "token"
    until(
        lambda: camera(cloud, owner_session, own["camera_id"])["status"] == "online",
        10,
        "the owner's camera online again",
    )
