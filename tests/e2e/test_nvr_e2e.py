"""The virtual NVR end to end: an NVR daemon subprocess and the mock cloud over real TLS."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cloud_mock import sandbox
from tests.e2e.conftest import Fleet, RunCli
from tests.eventually import eventually

pytestmark = pytest.mark.e2e

CAMERAS = """
[[nvr.cameras]]
name = "Gate"
url = "rtsp://10.1.1.5/stream1"

[[nvr.cameras]]
name = "Yard"
url = "rtsp://10.1.1.6/stream1"
onvif_url = "http://10.1.1.6/onvif/device_service"
"""


def nvr_config(fleet: Fleet, **options: Any) -> tuple[Path, str, str]:
    options.setdefault("fast_interval", 3.0)
    options.setdefault("long_poll", 2.0)
    return fleet.configure(kind="nvr", password="unused", extra=CAMERAS, **options)


def wait_for_code(agent: sandbox.Agent, timeout: float = 15) -> dict[str, Any]:
    status = eventually(
        agent.status, until=lambda s: s.get("activation"), timeout=timeout, what="activation code"
    )
    assert status["state"] == "awaiting_activation"
    return dict(status["activation"])


def new_registrator(
    cloud: sandbox.Cloud, session: str, name: str = "Server room"
) -> dict[str, Any]:
    status, body = cloud.request(
        "POST",
        "/v1/registrators",
        {"name": name, "note": "rack 2", "device": "virtual"},
        session=session,
    )
    assert status == 201, body
    return dict(body)


def wait_online(
    cloud: sandbox.Cloud, session: str, registrator_id: str, timeout: float = 5.0
) -> dict[str, Any]:
    body: dict[str, Any] = eventually(
        lambda: cloud.request("GET", f"/v1/registrators/{registrator_id}", session=session)[1],
        until=lambda body: body["status"] == "online",
        timeout=timeout,
        interval=0.02,
        what="the registrator online",
    )
    return body


def test_code_activate_online_sync_and_configure(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, run_cli: RunCli
) -> None:
    config, device_id, _ = nvr_config(fleet)
    agent = fleet.start(config)
    code = wait_for_code(agent)

    shown = run_cli(config, "nvr", "code", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == code
    human = run_cli(config, "nvr", "code")
    assert code["code"] in human.stdout
    assert code["activation_url"] in human.stdout
    assert "▀" in human.stdout or "▄" in human.stdout  # the QR code of the URL

    registrator = new_registrator(cloud, session)
    rid = registrator["id"]
    sloppy = code["code"].lower().replace("-", " ")
    status, checks = cloud.request(
        "GET",
        f"/v1/registrators/{rid}/activation?code={sloppy.replace(' ', '')}",
        session=session,
    )
    assert status == 200, checks
    names = {c["name"] for c in checks["checks"]}
    assert {"dns", "tls", "clock", "archive disk", "memory", "outbound port"} <= names

    activated = time.monotonic()
    status, body = cloud.request(
        "POST", f"/v1/registrators/{rid}/activate", {"code": sloppy}, session=session
    )
    assert status == 200, body
    agent.wait_for_state("connected", timeout=5)
    assert time.monotonic() - activated < 1.0
    online = wait_online(cloud, session, rid)
    assert online["status"] == "online"
    assert online["device_id"] == device_id
    status_now = agent.status()
    assert status_now["token"]["present"] is True
    assert "activation" not in status_now

    status, synced = cloud.request("POST", f"/v1/registrators/{rid}/sync", session=session)
    assert status == 200, synced
    assert [c["name"] for c in synced["cameras"]] == ["Gate", "Yard"]
    assert synced["cameras"][1]["onvif_url"].endswith("/onvif/device_service")

    status, body = cloud.request(
        "PUT", f"/v1/registrators/{rid}/archive", {"enabled": True, "days": 14}, session=session
    )
    assert status == 200, body
    assert body["applied"] is True
    kept = json.loads((config.parent / "state" / "nvr-settings.json").read_text())
    assert kept["archive"] == {"enabled": True, "days": 14}
    assert "broadcast/archive settings applied to 2 camera(s)" in agent.log_text()


def test_mistyped_unknown_and_reused_codes_are_told_apart(
    fleet: Fleet, cloud: sandbox.Cloud, session: str
) -> None:
    config, _, _ = nvr_config(fleet)
    agent = fleet.start(config)
    code = wait_for_code(agent)["code"]
    rid = new_registrator(cloud, session)["id"]
    compact = code.replace("-", "")
    typo = compact[:5] + compact[6] + compact[5] + compact[7:]
    if typo != compact:
        status, body = cloud.request(
            "POST", f"/v1/registrators/{rid}/activate", {"code": typo}, session=session
        )
        assert status == 400
        assert "mistyped" in body["error"]
    status, body = cloud.request(
        "POST", f"/v1/registrators/{rid}/activate", {"code": "0000-0000-0000"}, session=session
    )
    assert status == 404, body
    assert (
        cloud.request("POST", f"/v1/registrators/{rid}/activate", {"code": code}, session=session)[
            0
        ]
        == 200
    )
    agent.wait_for_state("connected")
    other = new_registrator(cloud, session, "another")["id"]
    status, _ = cloud.request(
        "POST", f"/v1/registrators/{other}/activate", {"code": code}, session=session
    )
    assert status == 409


def test_only_the_registering_nvr_collects_the_token(
    fleet: Fleet, cloud: sandbox.Cloud, session: str
) -> None:
    from agent.provisioning.wire import PollRequest

    config, device_id, _ = nvr_config(fleet)
    agent = fleet.start(config)
    code = wait_for_code(agent)["code"]
    rid = new_registrator(cloud, session)["id"]
    cloud.request("POST", f"/v1/registrators/{rid}/activate", {"code": code}, session=session)
    agent.wait_for_state("connected")
    # Someone who knows the device ID and the code but not the NVR's secret gets nothing.
    thief = PollRequest.build(b"\x00" * 32, device_id, int(time.time()), 0)
    assert cloud.request("POST", "/v1/provisioning/poll", thief.to_json()) == (204, None)


def test_registration_token_links_once_and_expires(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, run_cli: RunCli
) -> None:
    status, made = cloud.request(
        "POST",
        "/v1/registrator-tokens",
        {"title": "Rack 3", "note": "via token"},
        session=session,
    )
    assert status == 201, made
    config, device_id, _ = nvr_config(fleet)
    agent = fleet.start(config)
    wait_for_code(agent)
    result = run_cli(config, "nvr", "register", made["token"])
    assert result.returncode == 0, result.stderr
    agent.wait_for_state("connected", timeout=5)
    _, listing = cloud.request("GET", "/v1/registrators", session=session)
    linked = [r for r in listing["registrators"] if r["device_id"] == device_id]
    assert len(linked) == 1
    assert linked[0]["name"] in ("Rack 3", f"sandbox {device_id}")

    # Used: a second NVR is refused with the cloud's reason.
    config2, _, _ = nvr_config(fleet)
    again = run_cli(config2, "nvr", "register", made["token"])
    assert again.returncode == 1
    assert "already used" in again.stderr

    # Older than 6 hours: refused, without a daemon running too.
    _, fresh = cloud.request("POST", "/v1/registrator-tokens", {}, session=session)
    cloud.advance_clock(6 * 3600 + 1)
    expired = run_cli(config2, "nvr", "register", fresh["token"])
    assert expired.returncode == 1
    assert "expired" in expired.stderr
    garbage = run_cli(config2, "nvr", "register", "not-a-token")
    assert garbage.returncode == 1
    assert "Traceback" not in garbage.stderr


def test_register_without_a_daemon_then_start_connects(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, run_cli: RunCli
) -> None:
    _, made = cloud.request("POST", "/v1/registrator-tokens", {}, session=session)
    config, _, _ = nvr_config(fleet)
    result = run_cli(config, "nvr", "register", made["token"])
    assert result.returncode == 0, result.stderr
    agent = fleet.start(config)
    agent.wait_for_state("connected")


def test_code_is_renewed_before_it_expires_and_the_old_one_still_works(
    tmp_path: Path, run_cli: RunCli
) -> None:
    short = sandbox.start_cloud(tmp_path / "cloud", env={"CAMAGENT_MOCK_CODE_TTL_S": "10"})
    try:
        fleet = Fleet(tmp_path / "devices", short)
        config, _, _ = nvr_config(fleet, fast_interval=30.0, long_poll=0.0)
        agent = fleet.start(config)
        try:
            session = short.login()
            rid = new_registrator(short, session)["id"]
            first = wait_for_code(agent)
            second = eventually(
                lambda: agent.status()["activation"],
                until=lambda activation: activation["code"] != first["code"],
                timeout=15,
                what="the code renewed",
            )
            assert second["expires_at"] > first["expires_at"]
            assert agent.log_text().count("activation code ") == 2
            # Renewing a code is not a provisioning request: still the one poll at start.
            assert agent.status()["provisioning"]["attempts"] == 1
            # The admin types the code they read a moment ago: it is still valid, and the
            # NVR (same secret across renewals) collects the token at its next poll.
            status, body = short.request(
                "POST",
                f"/v1/registrators/{rid}/activate",
                {"code": first["code"]},
                session=session,
            )
            assert status == 200, body
            assert run_cli(config, "poll-now").returncode == 0
            agent.wait_for_state("connected", timeout=5)
        finally:
            fleet.stop_all()
    finally:
        short.stop()


def test_reset_unlinks_and_shows_a_new_code(
    fleet: Fleet, cloud: sandbox.Cloud, session: str, run_cli: RunCli
) -> None:
    _, made = cloud.request("POST", "/v1/registrator-tokens", {}, session=session)
    config, _, _ = nvr_config(fleet)
    agent = fleet.start(config)
    first = wait_for_code(agent)
    assert run_cli(config, "nvr", "register", made["token"]).returncode == 0
    agent.wait_for_state("connected")
    refused = run_cli(config, "nvr", "code")
    assert refused.returncode == 1
    assert "linked" in refused.stderr
    assert run_cli(config, "reset").returncode == 0
    again = wait_for_code(agent)
    assert again["code"] != first["code"]


def test_nvr_checks_command(fleet: Fleet, run_cli: RunCli) -> None:
    config, _, _ = nvr_config(fleet)
    result = run_cli(config, "nvr", "checks", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["tls"]["status"] == "ok"
    assert checks["archive disk"]["status"] in ("ok", "warn")
    camera_config, _, _ = fleet.configure()
    refused = run_cli(camera_config, "nvr", "code")
    assert refused.returncode == 1
    assert 'device.kind = "nvr"' in refused.stderr


def test_a_squatter_holding_the_ids_keeps_the_real_nvrs_out_of_nothing(
    tmp_path: Path, run_cli: RunCli
) -> None:
    """Issue 25 (M3, M5) with the real agent: another organization linked the NVRs' IDs by
    token and by code first, and keeps a code of its own registered for them."""
    import base64
    import os

    from agent.nvr import activation_code
    from tests.cloud_mock.nvr_helpers import PASSWORDS, write_team_fixtures

    team = sandbox.start_cloud(
        tmp_path / "cloud", fixtures=write_team_fixtures(tmp_path / "team.json")
    )
    fleet = Fleet(tmp_path / "devices", team)
    try:
        owner, squatter = team.login(), team.login("gus", PASSWORDS["gus"])
        by_code, by_token = nvr_config(fleet), nvr_config(fleet)
        fake = base64.b64encode(os.urandom(32)).decode()
        for _, device_id, _ in (by_code, by_token):
            _, made = team.request("POST", "/v1/registrator-tokens", {}, session=squatter)
            status, body = team.request(
                "POST",
                "/v1/nvr/register",
                {"token": made["token"], "device_id": device_id, "secret": fake},
            )
            assert status == 201, body
            code = activation_code.generate()
            held = {"device_id": device_id, "code": code, "secret": fake}
            assert team.request("POST", "/v1/nvr/activations", held)[0] == 201
            assert team.request("POST", "/v1/nvr/activations", held)[0] == 201  # refreshed

        agent = fleet.start(by_code[0])
        code = wait_for_code(agent)["code"]
        rid = new_registrator(team, owner)["id"]
        status, body = team.request(
            "POST", f"/v1/registrators/{rid}/activate", {"code": code}, session=owner
        )
        assert status == 200, body
        agent.wait_for_state("connected", timeout=10)
        assert wait_online(team, owner, rid)["device_id"] == by_code[1]

        _, made = team.request("POST", "/v1/registrator-tokens", {}, session=owner)
        result = run_cli(by_token[0], "nvr", "register", made["token"])
        assert result.returncode == 0, result.stderr
        second = fleet.start(by_token[0])
        second.wait_for_state("connected", timeout=10)
        _, listing = team.request("GET", "/v1/registrators", session=owner)
        assert by_token[1] in {r["device_id"] for r in listing["registrators"]}
    finally:
        fleet.stop_all()
        team.stop()
