"""QR cards seen by the camera's own video, while it has no token.

The watcher (agent.qr.watcher) runs the decoding child process; this starts and stops it
with the device's state, under the daemon's Supervisor, and sends what a card holds
where it belongs: its token to the gate, its WiFi network to `join_wifi`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent.config import QrConfig
from agent.errors import CamagentError
from agent.keeper import StateKeeper
from agent.supervisor import Supervisor
from agent.trust import VerifiedToken

if TYPE_CHECKING:
    from agent.qr.payloads import Payload, WifiNetwork
    from agent.qr.watcher import QrWatcher

log = logging.getLogger(__name__)

TASK = "QR watcher"


class CardScanning:
    def __init__(
        self,
        config: QrConfig,
        supervisor: Supervisor,
        keeper: StateKeeper,
        on_token: Callable[[VerifiedToken], None],
        join_wifi: Callable[[WifiNetwork], Awaitable[str]],
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.keeper = keeper
        self.on_token = on_token
        self.join_wifi = join_wifi
        self.watcher: QrWatcher | None = None

    async def follow(self, unlinked: bool) -> None:
        """Scan while the device has no token (and a source is set); stop once it has one."""
        wanted = bool(self.config.source) and self.config.scan_when_unprovisioned and unlinked
        if wanted and self.watcher is None:
            from agent.qr.watcher import QrWatcher

            self.watcher = QrWatcher(self.config, self._payload)
        if self.watcher is None:
            return
        if wanted and not self.supervisor.running(TASK):
            # The watcher's own loop, supervised: a failure to start the child (e.g. out
            # of descriptors) is retried with backoff instead of ending scanning for good.
            self.supervisor.start(TASK, self.watcher._run)
        elif not wanted and self.supervisor.running(TASK):
            await self.stop()
            log.info("QR scanning stopped: the device holds a token")

    async def stop(self) -> None:
        await self.supervisor.stop(TASK)
        if self.watcher is not None:
            await self.watcher.stop()

    async def _payload(self, payload: Payload) -> None:
        if payload.wifi is not None:
            try:
                await self.join_wifi(payload.wifi)
            except CamagentError as exc:
                log.warning("WiFi from a QR card not applied: %s", exc)
        if payload.token:
            try:
                token = self.keeper.accept(payload.token, "qr")
            except CamagentError as exc:
                log.warning("token from a QR card refused: %s", exc)
                return
            self.on_token(token)
