"""The daemon as the local API sees it: the `Device` the HTTP handlers act on.

Each change is a command of the daemon's one command table (agent.commands), the same
as its `camagent` command, with "lan" as its way in (and source in the journal);
refusals become ActionErrors with the status the API answers.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from agent import identity
from agent.commands import NotAnNvr, NotNow
from agent.errors import CamagentError, TokenError
from agent.local_api.server import ActionError
from agent.local_api.service import device_model

if TYPE_CHECKING:
    from agent.daemon import Daemon
    from agent.qr.payloads import WifiNetwork


class DaemonDevice:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    @functools.cached_property
    def model(self) -> str:
        return device_model()

    def info(self) -> dict[str, Any]:
        return self.daemon.status().info(self.model)

    def password(self) -> str:
        return identity.read_password(self.daemon.config)

    async def _call(self, name: str, **args: Any) -> Any:
        return await self.daemon.commands.call(name, args, "lan")

    def _answer(self, **extra: Any) -> dict[str, Any]:
        return {"state": self.info()["state"], **extra}

    async def set_token(self, token: str) -> dict[str, Any]:
        try:
            await self._call("token_set", token=token)
        except TokenError as exc:
            raise ActionError(400, "token_refused", str(exc)) from None
        return self._answer()

    async def reset(self) -> dict[str, Any]:
        await self._call("reset")
        return self._answer()

    async def poll_now(self) -> dict[str, Any]:
        try:
            await self._call("poll_now")
        except NotNow as exc:
            raise ActionError(409, "holds_token", str(exc)) from None
        return self._answer()

    async def join_wifi(self, network: WifiNetwork) -> dict[str, Any]:
        try:
            done = await self._call("wifi", network=network)
        except CamagentError as exc:
            raise ActionError(409, "wifi_not_joined", str(exc)) from None
        return self._answer(ssid=network.ssid, tool=done["tool"])

    async def register(self, token: str) -> dict[str, Any]:
        try:
            await self._call("nvr_register", token=token)
        except NotAnNvr:
            raise ActionError(
                409, "not_an_nvr", "this device is a camera: only an NVR takes a registration"
            ) from None
        except TokenError as exc:
            raise ActionError(400, "token_refused", str(exc)) from None
        except CamagentError as exc:
            raise ActionError(409, "registration_failed", str(exc)) from None
        return self._answer()
