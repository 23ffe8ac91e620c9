"""The daemon as the local API sees it: the `Device` the HTTP handlers act on.

Each change goes the same way as its `camagent` command (source "lan" in the journal);
refusals become ActionErrors with the status the API answers.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from agent import __version__, identity
from agent.errors import CamagentError, TokenError
from agent.local_api.server import ActionError
from agent.local_api.service import device_model

if TYPE_CHECKING:
    from agent.daemon import Daemon
    from agent.qr.payloads import WifiNetwork

SOURCE = "lan"


class DaemonDevice:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    @functools.cached_property
    def model(self) -> str:
        return device_model()

    def info(self) -> dict[str, Any]:
        d = self.daemon
        return {
            "id": d.device_id,
            "kind": d.config.device.kind,
            "state": d.state.value if d.state else "provisioning",
            "ver": __version__,
            "name": d.config.device.name,
            "model": self.model,
        }

    def password(self) -> str:
        return identity.read_password(self.daemon.config)

    def _answer(self, **extra: Any) -> dict[str, Any]:
        return {"state": self.info()["state"], **extra}

    async def set_token(self, token: str) -> dict[str, Any]:
        try:
            await self.daemon.set_token(token, SOURCE)
        except TokenError as exc:
            raise ActionError(400, "token_refused", str(exc)) from None
        return self._answer()

    async def reset(self) -> dict[str, Any]:
        from agent.lifecycle import ResetRequested

        await self.daemon.submit(ResetRequested(SOURCE))
        return self._answer()

    async def poll_now(self) -> dict[str, Any]:
        try:
            await self.daemon.poll_now(SOURCE)
        except CamagentError as exc:
            raise ActionError(409, "holds_token", str(exc)) from None
        return self._answer()

    async def join_wifi(self, network: WifiNetwork) -> dict[str, Any]:
        try:
            tool = await self.daemon.join_wifi(network)
        except CamagentError as exc:
            raise ActionError(409, "wifi_not_joined", str(exc)) from None
        return self._answer(ssid=network.ssid, tool=tool)

    async def register(self, token: str) -> dict[str, Any]:
        if self.daemon.nvr is None:
            raise ActionError(
                409, "not_an_nvr", "this device is a camera: only an NVR takes a registration"
            )
        try:
            await self.daemon.register_nvr(token)
        except TokenError as exc:
            raise ActionError(400, "token_refused", str(exc)) from None
        except CamagentError as exc:
            raise ActionError(409, "registration_failed", str(exc)) from None
        return self._answer()
