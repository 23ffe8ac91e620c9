"""One Status for the daemon, the offline CLI, the LAN API and `status --json`."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agent import __version__
from agent.cli import format_status
from agent.lifecycle import DeviceState
from agent.status import LastPoll, ProvisioningStatus, Status, password_hint

DEVICE = "aa:bb:cc:dd:ee:ff"


def test_status_is_frozen_and_its_json_has_the_keys_status_json_always_had() -> None:
    status = Status(DEVICE, "camera", "Lobby", DeviceState.CONNECTED, "https://c", daemon=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.state = DeviceState.PROVISIONING  # type: ignore[misc]
    assert status.to_json() == {
        "device_id": DEVICE,
        "kind": "camera",
        "name": "Lobby",
        "state": "connected",
        "token": {"present": False},
        "provisioning": {"attempts": 0, "phase": "off", "next_poll_in": None},
        "cloud": {"url": "https://c", "connected_since": None},
        "version": __version__,
        "daemon": True,
    }
    assert status.info("Pi 4") == {
        "id": DEVICE,
        "kind": "camera",
        "state": "connected",
        "ver": __version__,
        "name": "Lobby",
        "model": "Pi 4",
    }


def test_the_password_hint_is_in_the_json_and_the_text() -> None:
    status = Status(
        DEVICE,
        "camera",
        "",
        DeviceState.PROVISIONING,
        "https://c",
        daemon=True,
        provisioning=ProvisioningStatus(
            attempts=6,
            phase="slow",
            next_poll_in=3599.0,
            last=LastPoll(6, "no token yet", 1_700_000_000.0),
            hint=password_hint(6),
        ),
    )
    data = json.loads(json.dumps(status.to_json()))
    hint = (
        "no token after 6 polls: if the camera was added in the cloud, "
        "check that password_file holds the label password"
    )
    assert data["provisioning"]["hint"] == hint
    assert status.hint == hint
    assert f"  hint          {hint}" in format_status(data).splitlines()
