"""The NVR's side of the daemon: its activation code, Cloud Registration, and the
`sync` / `configure` commands. The daemon owns the event loop, the HTTP session and the
state; this holds what only an NVR does with them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.config import Config
from agent.errors import CamagentError, StateError, WireError
from agent.nvr import checks as nvr_checks
from agent.nvr import settings as nvr_settings
from agent.nvr.activation import (
    Activation,
    device_payload,
    new_secret,
    register_code,
    register_with_token,
)
from agent.token_store import DeviceRecord

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

Save = Callable[[Callable[[DeviceRecord], DeviceRecord]], None]


class NvrLink:
    def __init__(
        self,
        config: Config,
        device_id: str,
        record: Callable[[], DeviceRecord],
        save: Save,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self._record = record
        self._save = save
        self._wall = wall  # the daemon's clock: renewals follow it

    def activation(self) -> Activation | None:
        data = self._record().activation
        if not data:
            return None
        try:
            return Activation.from_json(data)
        except (KeyError, TypeError, ValueError):
            return None

    def renew_at(self) -> float | None:
        current = self.activation()
        return current.renew_at() if current else None

    async def key(self, session: aiohttp.ClientSession) -> bytes:
        """The secret to poll with: that of a live code, registered anew when due."""
        current = self.activation()
        if current is None or current.needs_renewal(self._wall()):
            current = await self._register(session, current.secret if current else None)
        return current.key()

    async def _register(self, session: aiohttp.ClientSession, secret: str | None) -> Activation:
        payload = await self._payload()
        activation = await register_code(
            session, self.config.cloud.url, payload, secret, now=self._wall
        )
        self._save(lambda r: replace(r, activation=activation.to_json()))
        expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(activation.expires_at))
        log.info(
            "activation code %s (valid until %s): enter it in the cloud, or open %s",
            activation.code,
            expires,
            activation.activation_url,
        )
        return activation

    async def _payload(self) -> dict[str, Any]:
        checks = await asyncio.to_thread(nvr_checks.run_checks, self.config)
        name = self.config.device.name or f"NVR {self.device_id}"
        return device_payload(self.device_id, name, __version__, checks)

    async def register(self, session: aiohttp.ClientSession, token: str) -> str:
        """Cloud Registration: trade a registration token for this NVR's device token.

        It goes with the secret of the NVR's activation code (a fresh one if it has
        none): the same NVR, whichever way it is linked."""
        if not isinstance(token, str) or not token.strip() or len(token) > 4096:
            raise CamagentError("a registration token is the text the cloud showed (rt_…)")
        current = self.activation()
        secret = current.secret if current is not None else new_secret()
        return await register_with_token(
            session, self.config.cloud.url, token.strip(), await self._payload(), secret
        )

    async def command(self, name: str, args: dict[str, Any]) -> tuple[bool, Any] | None:
        """`sync` and `configure`; None for commands that are not the NVR's."""
        cameras = self.config.nvr.cameras
        if name == "sync":
            return True, {"cameras": nvr_settings.camera_list(cameras)}
        if name != "configure":
            return None
        try:
            settings = nvr_settings.parse(args)
            nvr_settings.save(self.config.state_dir, settings)
        except (WireError, StateError) as exc:
            return False, str(exc)
        log.info("broadcast/archive settings applied to %d camera(s)", len(cameras))
        return True, {"applied": nvr_settings.apply(settings, cameras)}
