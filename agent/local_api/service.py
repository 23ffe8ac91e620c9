"""The local API as one part of the daemon: certificate, HTTPS server and mDNS together.

Started after READY=1 so that it never delays the start; a failure here (port taken,
no network for mDNS) is logged and leaves the rest of the daemon running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.errors import CamagentError

if TYPE_CHECKING:
    from agent.local_api.lockout import Lockout
    from agent.local_api.mdns import Announcer
    from agent.local_api.server import Clock, Device, Running

log = logging.getLogger(__name__)

MODEL_FILES = (Path("/sys/devices/virtual/dmi/id/product_name"), Path("/proc/device-tree/model"))


def device_model(files: tuple[Path, ...] = MODEL_FILES) -> str:
    """The hardware's model name (x86 DMI, or the device tree on ARM boards), else ""."""
    for path in files:
        try:
            text = path.read_bytes()[:256].decode("utf-8", "replace")
        except OSError:
            continue
        model = text.replace("\x00", "").strip()
        if model:
            return model
    return ""


class LocalApi:
    def __init__(self, config: Config, device_id: str, device: Device, clock: Clock = time.time):
        self.config = config
        self.device_id = device_id
        self.device = device
        self.clock = clock
        self.fp: str | None = None
        self.port: int | None = None
        self.error: str | None = None
        self._running: Running | None = None
        self._lockout: Lockout | None = None
        self._announcer: Announcer | None = None
        self._updates: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            await self._start_server()
        except (OSError, CamagentError, ValueError) as exc:
            self.error = f"local API not started: {exc}"
            log.error("%s", self.error)
            return
        if self.config.local_api.mdns:
            await self._start_mdns()

    async def _start_server(self) -> None:
        from agent.local_api import cert, digest, server
        from agent.local_api.lockout import FILE_NAME, Lockout, LockoutPolicy

        settings = self.config.local_api
        made = await cert.ensure_in_child(self.config.state_dir, self.device_id)
        policy = LockoutPolicy(after=settings.lockout_after, base_s=settings.lockout_base_s)
        auth = server.Auth(
            Lockout(self.config.state_dir / FILE_NAME, policy, self.clock),
            digest.NonceBook.for_this_boot(),
            self.clock,
        )
        self._lockout = auth.lockout
        app = server.make_app(self.device, auth, made.fp)
        context = server.server_context(str(made.cert_path), str(made.key_path))
        self._running = await server.start(app, settings.listen, settings.port, context)
        self.fp, self.port = made.fp, self._running.port
        log.info(
            "local API on https://%s:%d/ (certificate fingerprint %s)",
            settings.listen,
            self.port,
            self.fp,
        )

    async def _start_mdns(self) -> None:
        assert self.port is not None
        assert self.fp is not None
        from agent.local_api.mdns import Announcer

        announcer = Announcer(
            self.device_id,
            self.config.device.name,
            self.port,
            self.fp,
            self.config.local_api.listen,
        )
        # Known before it is registered: a state change during the ~1 s of probing queues
        # an update behind the registration instead of being lost.
        self._announcer = announcer
        try:
            await announcer.start(self.device.info())
        except Exception as exc:  # zeroconf raises its own types too; mDNS is optional
            self._announcer = None
            self.error = f"mDNS announcement failed: {exc}"
            log.error("%s", self.error)
            with contextlib.suppress(Exception):
                await announcer.stop()
            return
        await self._update(announcer)  # whatever changed since info() was read

    def state_changed(self) -> None:
        """Refresh the TXT record (state) without holding up the caller."""
        if self._announcer is None:
            return
        task = asyncio.create_task(self._update(self._announcer))
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def _update(self, announcer: Announcer) -> None:
        try:
            await announcer.update(self.device.info())
        except Exception as exc:  # a lost network must not take the daemon with it
            log.warning("mDNS update failed: %s", exc)

    async def stop(self) -> None:
        for task in list(self._updates):
            with contextlib.suppress(Exception):
                await task
        announcer, self._announcer = self._announcer, None
        running, self._running = self._running, None
        try:
            if announcer is not None:
                await announcer.stop()
        except Exception as exc:  # stopping goes on: the server and the daemon must close
            log.warning("mDNS goodbye failed: %s", exc)
        if running is not None:
            await running.stop()
        if self._lockout is not None:
            self._lockout.flush()  # the last second of wrong passwords, kept for a restart

    def status(self) -> dict[str, Any]:
        settings = self.config.local_api
        status: dict[str, Any] = {
            "enabled": True,
            "listen": settings.listen,
            "port": self.port,
            "fp": self.fp,
            "mdns": self._announcer.registered_name if self._announcer else None,
        }
        if self._running is not None:
            status["connections"] = self._running.listener.stats()
        if self.error:
            status["error"] = self.error
        return status
