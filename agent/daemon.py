"""`camagent run`: wires the parts around the pure schedule and state machine.

All events (poll results, commands, channel changes) go through one queue and are
applied one at a time, in order, by `_process`; every long-lived task (poll loop,
control channel, local API, QR watcher) runs under the Supervisor. The parts: Poller
(agent.poller), CommandTable (agent.commands), StateKeeper and its TokenGate
(agent.keeper, agent.trust), Status (agent.status). See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__, control_socket, identity, logging_setup, sd_notify
from agent import config as config_mod
from agent import lifecycle as lc
from agent.card_scanning import CardScanning
from agent.clock import Clock, SystemClock
from agent.cloud_link import CloudLink
from agent.commands import CAMERA_HAS_NO_CODE, CommandTable
from agent.config import Config
from agent.errors import CamagentError
from agent.instance_lock import InstanceLock
from agent.keeper import StateKeeper
from agent.lifecycle import UNLINKED, DeviceState, Event
from agent.poller import Poller
from agent.status import Status
from agent.supervisor import Supervisor, watchdog
from agent.token_codec import token_summary
from agent.token_store import DeviceRecord
from agent.trust import VerifiedToken

if TYPE_CHECKING:
    import aiohttp

    from agent.local_api.service import LocalApi
    from agent.nvr.link import NvrLink
    from agent.qr.payloads import WifiNetwork
    from agent.video.tunnel import Tunnels

log = logging.getLogger(__name__)

# An event being applied for longer than this means the daemon is wedged: no watchdog ping.
WEDGED_AFTER_S = 120.0


class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.rng = rng or random.Random()
        self.clock = clock or SystemClock()
        self.device_id = identity.device_id(config)
        self.keeper = StateKeeper(config, self.device_id)
        self.state: DeviceState | None = None
        self.connected_since: float | None = None
        self.commands = CommandTable(self)
        self.supervisor = Supervisor(rng=self.rng, clock=self.clock)
        self.lock = InstanceLock(config.state_dir)
        self.nvr: NvrLink | None = None
        if config.device.kind == "nvr":
            from agent.nvr.link import NvrLink

            self.nvr = NvrLink(
                config, self.device_id, lambda: self.record, self.keeper.save, self.clock.wall
            )
        self.link = CloudLink(config, self.device_id, session, self.rng, self.clock)
        self.http = self.link.http
        self.poller = Poller(
            config, self.device_id, self.keeper, self.http, self.clock, self._token, self.nvr
        )
        self.local_api: LocalApi | None = None
        self.tunnels: Tunnels | None = None  # made on the first tunnel_open (§12.2)
        self.cards = CardScanning(
            config.qr, self.supervisor, self.keeper, self._token, self.join_wifi
        )
        self._events: asyncio.Queue[tuple[Event, asyncio.Future[None] | None]] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._busy_since: float | None = None  # when the event being applied started

    @property
    def record(self) -> DeviceRecord:
        return self.keeper.record

    # -- life cycle -----------------------------------------------------------------

    async def run(self) -> int:
        self.lock.acquire()  # DaemonRunning: exit 1 before touching anything
        try:
            return await self._run()
        finally:
            self.lock.release()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        logging_setup.set_context(DEVICE_ID=self.device_id)
        self.keeper.load(self.config)
        server = await control_socket.serve(self.config.control_socket, self.commands.control)
        socket_inode = control_socket.inode(self.config.control_socket)
        self.link.prepare()  # a bad ca_file fails here
        pinging = asyncio.create_task(watchdog(self.unhealthy, self.clock))
        await self._apply(lc.Started(has_token=self.record.has_token))
        sd_notify.notify(f"READY=1\nSTATUS={self._status_line()}")
        self.supervisor.start("state writer", lambda: self.keeper.keep_saving(self.clock))
        if self.config.local_api.enabled:
            self.supervisor.start("local API", self._start_local_api, finishes=True)
        log.info(
            "camagent %s running as %s %s (cloud %s)",
            __version__,
            self.config.device.kind,
            self.device_id,
            self.config.cloud.url,
        )
        try:
            await self._process()
        finally:
            sd_notify.notify("STOPPING=1")
            log.info("stopping")
            pinging.cancel()
            await self._close_tunnels("camagent is stopping", stopping=True)
            await self.cards.stop()
            await self.supervisor.stop_all()
            if self.local_api is not None:
                await self.local_api.stop()  # the mDNS goodbye
            server.close()
            await server.wait_closed()
            control_socket.remove_if_owned(self.config.control_socket, socket_inode)
            await self.link.close()
        return 0

    def stop(self) -> None:
        self._stopping.set()

    async def _process(self) -> None:
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while True:
                get = asyncio.create_task(self._events.get())
                done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    get.cancel()
                    return
                event, future = get.result()
                self._busy_since = self.clock.monotonic()
                try:
                    await self._apply(event)
                finally:
                    self._busy_since = None
                    if future is not None and not future.done():
                        future.set_result(None)
        finally:
            stop.cancel()

    async def change(self, event: Event, *, wait: bool = True) -> None:
        """Queue an event; with `wait`, return once it has been carried out.

        The cloud's commands do not wait: their actions may close the channel they came on.
        """
        future = asyncio.get_running_loop().create_future() if wait else None
        self._events.put_nowait((event, future))
        if future is not None:
            await future

    def reload(self) -> None:
        """SIGHUP: re-read the config; intervals and trusted keys apply at once."""
        if self.config_path is None:
            return
        try:
            new = config_mod.load(self.config_path)
            candidate = replace(self.config, provisioning=new.provisioning, source=new.source)
            self.keeper.reconfigure(candidate)
        except CamagentError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        for section in ("device", "cloud", "paths", "local_api"):
            if getattr(new, section) != getattr(self.config, section):
                log.warning("[%s] changed: it takes effect when camagent restarts", section)
        # Only the schedule changes live; the rest (nvr and qr too) stays as it started.
        self.config = candidate
        self.poller.reconfigure(candidate)
        log.info("configuration reloaded from %s", self.config_path)

    # -- the state machine's actions ------------------------------------------------

    async def _apply(self, event: Event) -> None:
        step = lc.transition(self.state, event, kind=self.config.device.kind)
        for action in step.actions:
            await self._do(action)
        if step.state is not self.state:
            self.state = step.state
            connected = step.state is DeviceState.CONNECTED
            self.connected_since = self.clock.wall() if connected else None
            logging_setup.set_context(STATE=step.state.value)
            log.info("state: %s", step.state.value)
            await self.cards.follow(self.state in UNLINKED)
            sd_notify.notify(f"STATUS={self._status_line()}")
            if self.local_api is not None:
                self.local_api.state_changed()

    async def _do(self, action: lc.Action) -> None:
        match action:
            case lc.StartPolling():
                self.poller.restart()
                self.supervisor.start("poll loop", self.poller.run, finishes=True)
            case lc.StopPolling():
                await self.supervisor.stop("poll loop")
                self.poller.stop()
            case lc.SaveToken(token=token):
                self.keeper.save(lambda r: r.with_token(token))
                log.info("token accepted (from %s)", token.source)
            case lc.ForgetToken(reason=reason):
                self.keeper.save(DeviceRecord.without_token)
                log.info("token forgotten (%s); provisioning from the first step", reason)
            case lc.Connect():
                self.supervisor.start("control channel", self._channel)
            case lc.Disconnect():
                await self.supervisor.stop("control channel")
                await self._close_tunnels("the token was forgotten or replaced")

    def _post(self, event: Event) -> None:
        self._events.put_nowait((event, None))

    def _token(self, token: VerifiedToken) -> None:
        self._post(lc.TokenAccepted(token))

    # -- the edges: HTTP, the control channel, the local API, WiFi ---------------------

    async def _channel(self) -> None:
        await self.link.channel(self.record.token, self.commands.cloud, self._post)

    def video_tunnels(self) -> Tunnels:
        if self.tunnels is None:
            from agent.video.tunnel import Tunnels

            self.tunnels = Tunnels(self.config, self.http, self.clock)
        return self.tunnels

    async def _close_tunnels(self, why: str, *, stopping: bool = False) -> None:
        if self.tunnels is not None:
            await self.tunnels.close_all(why, stopping=stopping)

    async def _start_local_api(self) -> None:
        from agent.local_api.device import DaemonDevice
        from agent.local_api.service import LocalApi

        if self.local_api is None:
            self.local_api = LocalApi(self.config, self.device_id, DaemonDevice(self))
        await self.local_api.start()

    async def join_wifi(self, network: WifiNetwork) -> str:
        """Join a network (as from a QR card), then restart the fast phase: a new link.

        Raises WifiError; returns the tool that did it.
        """
        from agent import wifi

        applied = await asyncio.to_thread(wifi.apply, network)
        log.info("joined WiFi %r (%s)", network.ssid, applied.tool)
        if self.state in UNLINKED:
            self._post(lc.PollNowRequested("new link"))
        return applied.tool

    # -- status and health ----------------------------------------------------------

    def status(self) -> Status:
        activation = self.nvr.activation() if self.nvr else None
        awaiting = self.state is DeviceState.AWAITING_ACTIVATION
        local_api: dict[str, object] = {"enabled": False}
        if self.config.local_api.enabled:
            local_api = {"enabled": True, "port": None, "fp": None, "mdns": None}
            if self.local_api is not None:
                local_api = self.local_api.status()
        return Status(
            device_id=self.device_id,
            kind=self.config.device.kind,
            name=self.config.device.name,
            state=self.state or DeviceState.PROVISIONING,
            cloud_url=self.config.cloud.url,
            daemon=True,
            token=token_summary(self.record.token),
            provisioning=self.poller.status(polling=self.state in UNLINKED),
            connected_since=self.connected_since,
            local_api=local_api,
            activation=activation.public() if activation and awaiting else None,
        )

    def no_code_reason(self) -> str:
        if self.nvr is None:
            return CAMERA_HAS_NO_CODE
        if self.state is not DeviceState.AWAITING_ACTIVATION:
            return "this NVR is linked to the cloud already (run `camagent reset` to unlink)"
        last = self.poller.last_poll
        return f"no activation code yet: {last.detail if last else 'registering it with the cloud'}"

    def _status_line(self) -> str:
        return f"{self.state.value if self.state else 'starting'} ({self.device_id})"

    def unhealthy(self) -> list[str]:
        reasons = self.supervisor.unhealthy()
        busy = self._busy_since
        if busy is not None and self.clock.monotonic() - busy > WEDGED_AFTER_S:
            reasons.append(f"an event has been applied for more than {WEDGED_AFTER_S:g} s")
        return reasons


def run(config: Config, config_path: Path | None) -> int:
    return asyncio.run(Daemon(config, config_path).run())
