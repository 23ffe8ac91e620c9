"""Attacks from docs/security.md that no other test plays through end to end.

- someone holding a list of MACs adds them to their own account first;
- someone who added the camera's MAC to their own org holds the token the cloud handed
  them (plain, or sealed for the password they typed) or a forged one in front of the
  camera on a QR card, sets it by CLI, or pushes it over the LAN;
- someone who knows the label password pushes, over the LAN, a token that is real but
  points to another cloud, or one signed by another key.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.provisioning.wire import derive_key, seal_token
from agent.token_codec import sign_token
from benchmarks.crash_bench import Daemon, Device, Harness
from cloud_mock.server import RunningMock, start
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import add_camera, login, poll_body
from tests.hardening.test_fuzz_local_api import Lan

OWNER_PASSWORD = "the-password-on-the-label"
SQUATTER_PASSWORD = "guessed-nothing"
MAC = "02:00:00:5a:00:01"


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[RunningMock]:
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        yield running
    finally:
        await running.stop()


async def _poll(client: aiohttp.ClientSession, password: str) -> int:
    body = json.dumps(poll_body(MAC, password, wait=0)).encode()
    headers = {"Content-Type": "application/json"}
    async with client.post("/v1/provisioning/poll", data=body, headers=headers) as answer:
        return answer.status


async def test_a_mac_squatter_never_gets_the_camera(
    mock: RunningMock,
) -> None:
    async with client_for(mock) as client:
        squatter = await login(client, mock.data_dir)
        await add_camera(client, squatter, MAC, SQUATTER_PASSWORD, "not mine")
        # The camera proves its real password: the squatter's token never reaches it.
        assert await _poll(client, OWNER_PASSWORD) == 204
        # The same org adding the ID again is told it exists; another org's add is a claim
        # of its own and is never blocked (tests/cloud_mock/test_claims.py,
        # tests/e2e/test_claims_e2e.py).
        async with client.post(
            "/v1/cameras",
            headers=squatter,
            json={"device_id": MAC, "password": OWNER_PASSWORD, "name": "mine"},
        ) as answer:
            assert answer.status == 409


def _cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *argv],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Harness(tmp_path, random.Random(0)).device("target")


def _forged(device: Device, **changes: str) -> str:
    payload = {
        "v": 1,
        "sub": device.device_id,
        "kind": "camera",
        "org": "attacker",
        "api": device.cloud_url,
        "iat": 1,
        "jti": "forged",
    }
    payload.update(changes)
    return sign_token(payload, Ed25519PrivateKey.generate())


def _squatters(device: Device) -> str:
    """What the cloud hands anyone who adds the camera's MAC: a token the trusted key
    really signed for this device, into the squatter's org."""
    return device.sign(
        {
            "v": 1,
            "sub": device.device_id,
            "kind": "camera",
            "org": "squatter",
            "api": device.cloud_url,
            "iat": 1,
            "jti": "squat",
        }
    )


def _sealed_with(password: str, device: Device, token: str) -> str:
    return seal_token(derive_key(password, device.device_id), device.device_id, token)


def _hostile_tokens(device: Device) -> dict[str, tuple[str, str]]:
    """Each token a squatter could hold, with the words the camera refuses it with."""
    squatters = _squatters(device)
    return {
        # Genuine, plain: the form the squatter's add answers with.
        "plain": (squatters, "only sealed"),
        # Genuine, sealed as the cloud seals it for the squatter's add: under the
        # password the squatter typed, which is not the one on the label.
        "sealed for the squatter's password": (
            _sealed_with(SQUATTER_PASSWORD, device, squatters),
            "does not open with this device's key",
        ),
        # Sealed right, but signed by a key the camera does not trust.
        "forged": (device.seal(_forged(device)), "signature does not verify"),
    }


@pytest.mark.parametrize("kind", ["plain", "sealed for the squatter's password", "forged"])
def test_a_squatters_qr_card_changes_nothing(tmp_path: Path, device: Device, kind: str) -> None:
    token, refusal = _hostile_tokens(device)[kind]
    card = tmp_path / "card.png"
    made = _cli("qr", "make", "token", "--png", str(card), stdin=token)
    assert made.returncode == 0, made.stderr
    applied = _cli("--config", str(device.config_path), "qr", "scan", "--apply", str(card))
    assert applied.returncode == 1, applied  # a part of the card failed
    assert "token not used" in applied.stdout, applied
    assert refusal in applied.stdout, applied
    assert not device.store().load().has_token


def test_the_owners_qr_card_is_taken(tmp_path: Path, device: Device) -> None:
    """The other side of the squatter's refusal: the card the owner's console prints (the
    cloud's `sealed_token`) works."""
    token = device.mint()
    card = tmp_path / "card.png"
    made = _cli("qr", "make", "token", "--png", str(card), stdin=device.seal(token))
    assert made.returncode == 0, made.stderr
    applied = _cli("--config", str(device.config_path), "qr", "scan", "--apply", str(card))
    assert applied.returncode == 0, applied
    assert device.store().load().token == token


@pytest.mark.parametrize("kind", ["plain", "sealed for the squatter's password", "forged"])
def test_a_squatters_token_set_by_cli_changes_nothing(device: Device, kind: str) -> None:
    """`camagent token set` while the daemon is stopped (the offline path)."""
    token, refusal = _hostile_tokens(device)[kind]
    refused = _cli("--config", str(device.config_path), "token", "set", stdin=token)
    assert refused.returncode == 1, refused
    assert refusal in refused.stderr
    assert not device.store().load().has_token


@pytest.fixture
def lan(device: Device) -> Iterator[Lan]:
    device.local_api = True
    device.write_config()
    daemon = Daemon(device, PATH="/nonexistent")
    daemon.start()
    lan = Lan(device, daemon)
    try:
        yield lan
    finally:
        lan.close()
        daemon.stop()


def test_the_label_password_cannot_move_a_camera_to_another_cloud(lan: Lan) -> None:
    device = lan.device
    genuine = device.mint()
    redirected = device.sign(
        {
            "v": 1,
            "sub": device.device_id,
            "kind": "camera",
            "org": "attacker",
            "api": "https://evil.example.com",
            "iat": 1,
            "jti": "redirect",
        }
    )
    json_type = {"Content-Type": "application/json"}
    # Knowing the label password, one can seal; what is sealed must still be the trusted
    # cloud's own token for the trusted cloud.
    for token in (device.seal(redirected), device.seal(_forged(device))):
        body = json.dumps({"token": token}).encode()
        status, _, answer = lan.post("/v1/token", body, json_type, auth=True)
        assert status == 400
        assert json.loads(answer)["error"] == "token_refused"
        assert not device.store().load().has_token
    # The same request with the owner's sealed token of the trusted cloud goes through.
    body = json.dumps({"token": device.seal(genuine)}).encode()
    status, _, _ = lan.post("/v1/token", body, json_type, auth=True)
    assert status == 200
    assert device.store().load().token == genuine


@pytest.mark.parametrize("kind", ["plain", "sealed for the squatter's password", "forged"])
def test_a_squatters_token_pushed_over_the_lan_changes_nothing(lan: Lan, kind: str) -> None:
    """Even with the Digest password (an installer's, say), a token the squatter was
    handed does not open on the camera: it was sealed for another password, or not at all."""
    device = lan.device
    token, _ = _hostile_tokens(device)[kind]
    body = json.dumps({"token": token}).encode()
    status, _, answer = lan.post("/v1/token", body, {"Content-Type": "application/json"}, True)
    assert status == 400, answer
    assert json.loads(answer)["error"] == "token_refused"
    assert not device.store().load().has_token
