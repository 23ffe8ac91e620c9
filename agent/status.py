"""The device's status: one frozen value, whoever builds it (daemon or offline CLI) and
whoever shows it (`camagent status`, `status --json`, the LAN API, doctor).

`to_json` gives the keys `camagent status --json` has always printed; new keys are only
ever added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agent import __version__
from agent.lifecycle import DeviceState

Phase = Literal["off", "fast", "slow"]

PASSWORD_HINT = (
    "no token after {polls} polls: if the camera was added in the cloud, "
    "check that password_file holds the label password"
)


def password_hint(polls: int) -> str:
    return PASSWORD_HINT.format(polls=polls)


@dataclass(frozen=True)
class LastPoll:
    attempt: int
    detail: str
    at: float  # wall clock, for people


@dataclass(frozen=True)
class ProvisioningStatus:
    attempts: int = 0
    phase: Phase = "off"
    next_poll_in: float | None = None
    last: LastPoll | None = None
    # Set when the fast phase ended without a token although the cloud answered every
    # poll: the cloud does not know the key, which is most often a wrong label password.
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "attempts": self.attempts,
            "phase": self.phase,
            "next_poll_in": self.next_poll_in,
        }
        if self.last is not None:
            data["last_attempt"] = self.last.attempt
            data["last_result"] = self.last.detail
            data["last_at"] = self.last.at
        if self.hint is not None:
            data["hint"] = self.hint
        return data


@dataclass(frozen=True)
class Status:
    device_id: str
    kind: str
    name: str
    state: DeviceState
    cloud_url: str
    daemon: bool
    token: dict[str, Any] = field(default_factory=lambda: {"present": False})
    provisioning: ProvisioningStatus = ProvisioningStatus()
    connected_since: float | None = None
    local_api: dict[str, Any] | None = None  # None: no daemon, so nothing listens
    activation: dict[str, Any] | None = None  # an NVR awaiting activation: its live code
    version: str = __version__

    @property
    def hint(self) -> str | None:
        return self.provisioning.hint

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "device_id": self.device_id,
            "kind": self.kind,
            "name": self.name,
            "state": self.state.value,
            "token": self.token,
            "provisioning": self.provisioning.to_json(),
            "cloud": {"url": self.cloud_url, "connected_since": self.connected_since},
            "version": self.version,
            "daemon": self.daemon,
        }
        if self.local_api is not None:
            data["local_api"] = self.local_api
        if self.activation is not None:
            data["activation"] = self.activation
        return data

    def info(self, model: str) -> dict[str, Any]:
        """What the LAN API's `GET /v1/info` shows (the server adds `fp`)."""
        return {
            "id": self.device_id,
            "kind": self.kind,
            "state": self.state.value,
            "ver": self.version,
            "name": self.name,
            "model": model,
        }
