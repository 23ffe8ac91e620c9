"""Provisioning end to end: real mock cloud, real daemon, real TLS, shrunk intervals."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cloud_mock import sandbox
from tests.e2e.conftest import AddCamera, Fleet, RunCli, polls
from tests.eventually import eventually

pytestmark = pytest.mark.e2e


def test_long_poll_delivers_the_token_within_a_second_of_adding(
    fleet: Fleet, cloud: sandbox.Cloud, add_camera: AddCamera
) -> None:
    config, device_id, password = fleet.configure(fast_interval=3.0, long_poll=2.0)
    agent = fleet.start(config)
    # Wait until a poll is being held by the cloud, then add the camera.
    eventually(
        lambda: agent.status()["provisioning"]["attempts"],
        until=lambda attempts: attempts >= 1,
        interval=0.02,
        what="the first poll",
    )
    # Time is the subject: the add comes while the poll is held (>= 0.2 s into it, as
    # asserted below), not in a race with the poll's arrival. The mock exposes no
    # "held now" signal to wait on instead.
    time.sleep(0.3)
    added = time.monotonic()
    add_camera(device_id.upper().replace(":", "-"), password)
    agent.wait_for_state("connected", timeout=5)
    assert time.monotonic() - added < 1.0
    log = polls(cloud, device_id)
    assert log[-1]["result"] == "token"
    assert log[-1]["held_s"] >= 0.2, "the token should have come back in the held long-poll"


def test_fast_phase_then_slow_phase_cadence(fleet: Fleet, cloud: sandbox.Cloud) -> None:
    """The real daemon walks its schedule's phases in order, by its own account and the
    cloud's log. The intervals themselves are the fake-clock daemon test's subject
    (tests/agent/test_daemon.py): here they would be times of real processes, which a busy
    machine stretches."""
    config, device_id, _ = fleet.configure(
        fast_interval=0.6, fast_attempts=3, slow_interval=2.0, slow_jitter=0.0, long_poll=0.0
    )
    agent = fleet.start(config)
    seen: set[tuple[int, str]] = set()

    def six_polls() -> list[dict[str, Any]]:
        provisioning = agent.status()["provisioning"]
        seen.add((provisioning["attempts"], provisioning["phase"]))
        return polls(cloud, device_id)

    log = eventually(six_polls, until=lambda log: len(log) >= 6, timeout=30, what="6 polls")
    assert [p["result"] for p in log] == ["unknown"] * len(log)
    # The first request and fast_attempts more are the fast phase, then the slow one.
    for attempts, phase in seen:
        assert phase == ("fast" if attempts <= 3 else "slow"), sorted(seen)
    assert any(phase == "slow" for _, phase in seen)
    provisioning = agent.status()["provisioning"]
    assert provisioning["phase"] == "slow"
    assert provisioning["attempts"] >= 6
    # The agent's own plan for the next request: within one slow interval (no jitter).
    assert 0 <= provisioning["next_poll_in"] <= 2.0


def test_no_polls_while_a_token_is_held_even_after_restart_or_sigkill(
    fleet: Fleet, cloud: sandbox.Cloud, add_camera: AddCamera
) -> None:
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=0.0)
    add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    count = len(polls(cloud, device_id))
    # Time is the subject: three fast intervals in which a polling device would have polled.
    time.sleep(1.5)
    assert len(polls(cloud, device_id)) == count

    assert agent.stop() == 0
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    agent.kill()  # SIGKILL: no chance to clean up
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    time.sleep(1.0)  # time is the subject: two fast intervals with no poll after the SIGKILL
    assert len(polls(cloud, device_id)) == count
    assert agent.status()["provisioning"]["phase"] == "off"


def test_cli_reset_and_cloud_revocation_start_provisioning_again(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, add_camera: AddCamera, run_cli: RunCli
) -> None:
    config, device_id, password = fleet.configure(fast_interval=1.0, long_poll=0.5)
    camera = add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    jti = agent.status()["token"]["jti"]
    before = len(polls(cloud, device_id))

    result = run_cli(config, "reset")
    assert result.returncode == 0, result.stderr
    agent.wait_for_state("connected")
    assert len(polls(cloud, device_id)) == before + 1, "reset → one poll, from the first step"
    assert agent.status()["token"]["jti"] == jti  # the cloud still holds the same token

    status, _ = cloud.request("DELETE", f"/v1/cameras/{camera['camera_id']}", session=session)
    assert status == 204
    agent.wait_for_state("provisioning", timeout=5)
    assert agent.status()["token"] == {"present": False}
    camera = add_camera(device_id, password)
    agent.wait_for_state("connected", timeout=5)
    assert agent.status()["token"]["jti"] != jti


def test_wrong_password_never_provisions(
    fleet: Fleet, cloud: sandbox.Cloud, add_camera: AddCamera
) -> None:
    config, device_id, _ = fleet.configure(fast_interval=0.5, long_poll=0.0)
    add_camera(device_id, "the-password-the-owner-typed")
    agent = fleet.start(config)
    log = eventually(
        lambda: polls(cloud, device_id), until=lambda log: len(log) >= 3, what="three polls"
    )
    assert agent.status()["state"] == "provisioning"
    assert {p["result"] for p in log} == {"bad_proof"}
    assert {p["result"] for p in polls(cloud, device_id)} == {"bad_proof"}


def test_token_signed_by_an_untrusted_key_is_discarded(
    tmp_path: Path, fleet: Fleet, cloud: sandbox.Cloud, add_camera: AddCamera
) -> None:
    other = sandbox.start_cloud(tmp_path / "other-cloud")
    try:
        config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=0.0)
        text = config.read_text().replace(str(cloud.signing_key_file), str(other.signing_key_file))
        config.write_text(text)
        add_camera(device_id, password)
        agent = fleet.start(config)
        status = eventually(
            agent.status,
            until=lambda s: "signature" in (s["provisioning"].get("last_result") or ""),
            what="a poll's token refused for its signature",
        )
        assert status["state"] == "provisioning"
        eventually(
            agent.log_text, until=lambda log: "discarding the token" in log, what="the log line"
        )
        assert {p["result"] for p in polls(cloud, device_id)} == {"token"}
    finally:
        other.stop()


def test_token_for_another_cloud_url_is_refused(
    fleet: Fleet, cloud: sandbox.Cloud, add_camera: AddCamera
) -> None:
    # Same server, but the device trusts https://localhost:PORT while tokens name 127.0.0.1.
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=0.0)
    config.write_text(
        config.read_text().replace(
            f'url = "{cloud.url}"', f'url = "{cloud.url.replace("127.0.0.1", "localhost")}"'
        )
    )
    add_camera(device_id, password)
    agent = fleet.start(config)
    status = eventually(
        agent.status,
        until=lambda s: "trusts only" in (s["provisioning"].get("last_result") or ""),
        what="a poll's token refused for its api",
    )
    assert status["state"] == "provisioning"


def test_retry_after_is_honoured(fleet: Fleet, cloud: sandbox.Cloud) -> None:
    status, _ = cloud.request(
        "POST", "/v1/test/provisioning/fault", {"status": 503, "retry_after": 2, "count": 1}
    )
    assert status == 200
    config, device_id, _ = fleet.configure(fast_interval=0.5, fast_attempts=10, long_poll=0.0)
    agent = fleet.start(config)
    log = eventually(
        lambda: polls(cloud, device_id), until=lambda log: len(log) >= 3, what="three polls"
    )
    assert log[0]["result"] == "fault"
    # A lower bound only, which a busy machine cannot break: the next request waited the
    # 2 s the cloud asked for, not the 0.5 s of the fast phase.
    assert log[1]["at"] - log[0]["at"] >= 1.95
    # Then the schedule goes on as before: the fast phase, its requests answered.
    assert [p["result"] for p in log[1:3]] == ["unknown", "unknown"]
    assert agent.status()["provisioning"]["phase"] == "fast"


def test_mock_restart_keeps_cameras_and_agents_come_back(
    tmp_path: Path, fleet: Fleet, cloud: sandbox.Cloud, session: str, add_camera: AddCamera
) -> None:
    configs = [fleet.configure(fast_interval=1.0, long_poll=0.5) for _ in range(3)]
    for _, device_id, password in configs:
        add_camera(device_id, password)
    agents = [fleet.start(config) for config, _, _ in configs]
    for agent in agents:
        agent.wait_for_state("connected")
    port = cloud.url.rsplit(":", 1)[1]
    assert cloud.stop() == 0
    for agent in agents:
        agent.wait_for_state("disconnected", timeout=5)
    restarted = sandbox.start_cloud(cloud.data_dir)
    try:
        assert restarted.url.rsplit(":", 1)[1] == port
        for agent in agents:
            agent.wait_for_state("connected", timeout=15)
        _, body = restarted.request("GET", "/v1/cameras", session=restarted.login())
        assert {c["device_id"] for c in body["cameras"]} == {d for _, d, _ in configs}
        assert {c["status"] for c in body["cameras"]} == {"online"}
    finally:
        restarted.stop()


def test_cloud_commands_reach_the_device(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, add_camera: AddCamera
) -> None:
    config, device_id, password = fleet.configure()
    camera = add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    status, body = cloud.request(
        "POST",
        f"/v1/cameras/{camera['camera_id']}/commands",
        {"name": "ping", "args": {}},
        session=session,
    )
    assert status == 200, body
    assert body["ok"] is True
    assert body["data"]["device_id"] == device_id
    status, body = cloud.request(
        "POST",
        f"/v1/cameras/{camera['camera_id']}/commands",
        {"name": "set_token", "args": {"token": "garbage"}},
        session=session,
    )
    assert status == 200
    assert body["ok"] is False
    assert agent.status()["state"] == "connected"


def test_a_replayed_poll_gets_nothing(cloud: sandbox.Cloud, add_camera: AddCamera) -> None:
    """An observer who recorded a camera's poll cannot replay it to get the token."""
    import base64

    from agent.provisioning.wire import PollRequest, derive_key

    device_id, password = "02:00:00:00:fe:01", "replay-test-password"
    add_camera(device_id, password)
    poll = PollRequest.build(derive_key(password, device_id), device_id, int(time.time()), 0)
    first = cloud.request("POST", "/v1/provisioning/poll", poll.to_json())
    replay = cloud.request("POST", "/v1/provisioning/poll", poll.to_json())
    assert first[0] == 200
    assert base64.b64decode(first[1]["sealed_token"])  # sealed, not the token in clear
    assert replay == (204, None)
    assert [p["result"] for p in polls(cloud, device_id)] == ["token", "replay"]


def test_heartbeats_keep_the_camera_seen(
    tmp_path: Path, fleet: Fleet, add_camera: AddCamera
) -> None:
    slow_cloud = sandbox.start_cloud(tmp_path / "hb-cloud", env={"CAMAGENT_MOCK_HEARTBEAT_S": "1"})
    try:
        session = slow_cloud.login()
        hb_fleet = type(fleet)(tmp_path / "hb-devices", slow_cloud)
        config, device_id, password = hb_fleet.configure()
        camera = slow_cloud.add_camera(session, device_id, password)
        agent = hb_fleet.start(config)
        agent.wait_for_state("connected")
        first = slow_cloud.camera(session, camera["camera_id"])["last_seen"]
        later = eventually(
            lambda: slow_cloud.camera(session, camera["camera_id"]),
            until=lambda c: c["last_seen"] - first >= 1.5,
            timeout=5,
            what="last_seen moved on by heartbeats (1 s apart)",
        )
        assert later["status"] == "online"
        hb_fleet.stop_all()
        eventually(
            lambda: slow_cloud.camera(session, camera["camera_id"])["status"],
            until=lambda status: status == "offline",
            timeout=5,
            what="the camera offline once its agent stopped",
        )
    finally:
        slow_cloud.stop()
