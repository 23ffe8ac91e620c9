"""The CLI against a running daemon and without one; bad input never loses state."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.token_codec import parse_claims, sign_token
from tests.eventually import eventually

pytestmark = pytest.mark.e2e


def _forge(token: str) -> str:
    """Same claims, signed by a key nobody trusts."""
    claims = parse_claims(token)
    payload = {k: getattr(claims, k) for k in ("v", "sub", "kind", "org", "api", "iat", "jti")}
    return sign_token(payload, Ed25519PrivateKey.generate())


@pytest.fixture
def connected(fleet, add_camera):
    config, device_id, password = fleet.configure()
    camera = add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    return config, device_id, camera, agent


def test_status_json_from_the_running_daemon(connected, run_cli):
    config, device_id, camera, _ = connected
    result = run_cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["device_id"] == device_id
    assert status["state"] == "connected"
    assert status["token"]["present"] is True
    assert status["token"]["jti"] == parse_claims(camera["token"]).jti
    assert status["provisioning"] == {
        "attempts": 0,
        "phase": "off",
        "next_poll_in": None,
        "last_attempt": 1,
        "last_result": "token received",
        "last_at": status["provisioning"]["last_at"],
    }
    human = run_cli(config, "status")
    assert "connected" in human.stdout
    assert device_id in human.stdout


@pytest.mark.parametrize("bad", ["garbage", "a.b", "", "x" * 9000])
def test_garbage_token_is_refused_and_nothing_is_lost(connected, run_cli, bad):
    config, _, camera, agent = connected
    result = run_cli(config, "token", "set", bad)
    assert result.returncode == 1
    assert result.stderr.startswith("camagent: ")
    assert "Traceback" not in result.stderr
    assert agent.status()["state"] == "connected"
    assert agent.status()["token"]["jti"] == parse_claims(camera["token"]).jti


def test_forged_foreign_device_and_foreign_cloud_tokens_are_refused(
    connected, run_cli, add_camera, cloud
):
    config, _, camera, agent = connected
    forged = run_cli(config, "token", "set", _forge(camera["token"]))
    assert forged.returncode == 1
    assert "signature" in forged.stderr

    other = add_camera("02:99:99:99:99:99", "other-password")
    foreign = run_cli(config, "token", "set", other["token"])
    assert foreign.returncode == 1
    assert "02:99:99:99:99:99" in foreign.stderr

    # A device that trusts another cloud URL refuses tokens naming this one.
    elsewhere = config.parent / "elsewhere.toml"
    elsewhere.write_text(
        config.read_text()
        .replace(cloud.url, cloud.url.replace("127.0.0.1", "localhost"))
        .replace('/run"', '/run-elsewhere"')
        .replace('/state"', '/state-elsewhere"')
    )
    refused = run_cli(elsewhere, "token", "set", camera["token"])
    assert refused.returncode == 1
    assert "trusts only" in refused.stderr
    assert agent.status()["token"]["jti"] == parse_claims(camera["token"]).jti


def test_forced_token_change_makes_no_poll_and_reconnects(
    connected, run_cli, add_camera, cloud, session
):
    config, device_id, camera, agent = connected
    # The owner re-adds the camera (new token); the installer pushes it by CLI.
    _status, _ = cloud.request("DELETE", f"/v1/cameras/{camera['camera_id']}", session=session)
    agent.wait_for_state("provisioning", timeout=5)
    new = add_camera(device_id, "whatever-the-owner-typed")  # K differs: polls cannot open it
    result = run_cli(config, "token", "set", new["token"])
    assert result.returncode == 0, result.stderr
    agent.wait_for_state("connected")
    assert agent.status()["token"]["jti"] == parse_claims(new["token"]).jti


def test_offline_reset_and_token_set_change_the_state_under_lock(fleet, add_camera, run_cli):
    config, device_id, password = fleet.configure()
    camera = add_camera(device_id, password)
    result = run_cli(config, "token", "set", camera["token"])
    assert result.returncode == 0, result.stderr
    assert "when the daemon starts" in result.stdout
    status = json.loads(run_cli(config, "status", "--json").stdout)
    assert status["daemon"] is False
    assert status["token"]["present"] is True

    agent = fleet.start(config)
    agent.wait_for_state("connected")
    assert agent.stop() == 0
    assert run_cli(config, "reset").returncode == 0
    status = json.loads(run_cli(config, "status", "--json").stdout)
    assert status["token"] == {"present": False}


def test_poll_now_restarts_the_fast_phase(fleet, run_cli):
    # The fast phase lasts 3 x 0.8 s: long enough to be seen by `status` after the
    # CLI returns on a loaded machine (0.3 s was not).
    config, _, _ = fleet.configure(
        fast_interval=0.8, fast_attempts=3, slow_interval=30, long_poll=0.0
    )
    agent = fleet.start(config)
    prov = eventually(
        lambda: agent.status()["provisioning"],
        until=lambda prov: prov["phase"] == "slow",
        timeout=10,
        what="the slow phase",
    )
    assert prov["next_poll_in"] > 20
    result = run_cli(config, "poll-now")
    assert result.returncode == 0, result.stderr
    prov = eventually(
        lambda: agent.status()["provisioning"],
        until=lambda prov: prov["phase"] == "fast",
        timeout=5,
        what="the fast phase after poll-now",
    )
    assert prov["next_poll_in"] < 1


def test_poll_now_without_daemon_and_usage_errors(fleet, run_cli, tmp_path):
    config, _, _ = fleet.configure()
    result = run_cli(config, "poll-now")
    assert result.returncode == 1
    assert "no camagent daemon is running" in result.stderr
    assert run_cli(config, "frobnicate").returncode == 2
    assert run_cli(config).returncode == 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[device\nid=", "not valid TOML"),
        ('[provisioning]\nfast_interval = "soon"\n', "provisioning.fast_interval"),
        ("[provisioning]\nslow_jitter = 0.9\n", "provisioning.slow_jitter"),
        ('[cloud]\nurl = "http://insecure"\n', "cloud.url"),
        ("[camera]\nid = 1\n", "unknown section [camera]"),
    ],
)
def test_broken_config_gives_a_clear_error(tmp_path, run_cli, text, words):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    result = run_cli(path, "run")
    assert result.returncode == 1
    assert words in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_config_from_environment_variable(fleet, run_cli):
    import os

    config, device_id, _ = fleet.configure()
    result = run_cli(None, "status", "--json", env={**os.environ, "CAMAGENT_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["device_id"] == device_id


def test_doctor_passes_against_the_cloud_and_names_a_tls_problem(connected, run_cli, tmp_path):
    config, _, _, _ = connected
    result = run_cli(config, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("config", "state", "dns", "tls", "clock", "daemon"):
        assert name in result.stdout
    untrusting = tmp_path / "no-ca.toml"
    untrusting.write_text(
        "\n".join(
            line for line in config.read_text().splitlines() if not line.startswith("ca_file")
        )
    )
    result = run_cli(untrusting, "doctor", "--json")
    assert result.returncode == 1
    tls = next(c for c in json.loads(result.stdout) if c["name"] == "tls")
    assert tls["status"] == "fail"
    assert "ca_file" in tls["fix"]
