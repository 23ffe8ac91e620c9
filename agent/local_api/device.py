"""The daemon as the local API sees it: the `Device` the HTTP handlers act on.

Each change is a command of the daemon's one command table (agent.commands), the same
as its `camagent` command, with "lan" as its way in (and source in the journal). A
refusal carries its own HTTP status and code (agent.errors) and the server answers it;
here a command only names what its other failures are called on the wire.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

from agent import identity
from agent.errors import CamagentError
from agent.local_api.server import ActionError
from agent.local_api.service import device_model

if TYPE_CHECKING:
    from agent.commands import Way
    from agent.config import Config
    from agent.qr.payloads import WifiNetwork
    from agent.status import Status


class Commands(Protocol):
    async def call(self, name: str, args: dict[str, Any], way: Way) -> Any: ...


class DeviceSide(Protocol):
    """What the local API needs of the daemon: its config, its status, its commands."""

    @property
    def config(self) -> Config: ...

    @property
    def commands(self) -> Commands: ...

    def status(self) -> Status: ...


class DaemonDevice:
    def __init__(self, daemon: DeviceSide) -> None:
        self.daemon = daemon

    @functools.cached_property
    def model(self) -> str:
        return device_model()

    def info(self) -> dict[str, Any]:
        return self.daemon.status().info(self.model)

    def password(self) -> str:
        return identity.read_password(self.daemon.config)

    async def _call(self, name: str, failed: str = "", **args: Any) -> Any:
        """Command `name`; an error that names no answer of its own is refused as 409
        `failed` when the command names one (the device failed to do it), else a 500."""
        try:
            return await self.daemon.commands.call(name, args, "lan")
        except CamagentError as exc:
            if exc.http is None and failed:
                raise ActionError(409, failed, str(exc)) from None
            raise

    def _answer(self, **extra: Any) -> dict[str, Any]:
        return {"state": self.info()["state"], **extra}

    async def set_token(self, token: str) -> dict[str, Any]:
        await self._call("token_set", token=token)
        return self._answer()

    async def reset(self) -> dict[str, Any]:
        await self._call("reset")
        return self._answer()

    async def poll_now(self) -> dict[str, Any]:
        await self._call("poll_now")
        return self._answer()

    async def join_wifi(self, network: WifiNetwork) -> dict[str, Any]:
        done = await self._call("wifi", "wifi_not_joined", network=network)
        return self._answer(ssid=network.ssid, tool=done["tool"])

    async def register(self, token: str) -> dict[str, Any]:
        await self._call("nvr_register", "registration_failed", token=token)
        return self._answer()
