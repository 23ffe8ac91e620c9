"""`camagent run`: wires the parts around the pure schedule and state machine.

All events (poll results, commands, channel changes) go through one queue and are
applied one at a time, in order, by `_process`; every long-lived task (poll loop,
control channel, local API, QR watcher) runs under the Supervisor. The parts: Poller
(agent.poller), CommandTable (agent.commands), StateKeeper and its TokenGate
(agent.keeper, agent.trust), Status (agent.status). See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__, identity, logging_setup, sd_notify
from agent import config as config_mod
from agent.clock import Clock, SystemClock
from agent.commands import CommandTable
from agent.config import Config
from agent.control_socket import serve as serve_control_socket
from agent.errors import CamagentError
from agent.instance_lock import InstanceLock
from agent.keeper import StateKeeper
from agent.lifecycle import (
    UNLINKED,
    Action,
    ChannelLost,
    ChannelOpened,
    Connect,
    DeviceState,
    Disconnect,
    Event,
    ForgetToken,
    PollNowRequested,
    SaveToken,
    Started,
    StartPolling,
    StopPolling,
    TokenAccepted,
    TokenRevoked,
    transition,
)
from agent.poller import Poller
from agent.status import Status
from agent.supervisor import Supervisor
from agent.token_codec import token_summary
from agent.token_store import DeviceRecord
from agent.trust import VerifiedToken

if TYPE_CHECKING:
    import ssl

    import aiohttp

    from agent.local_api.service import LocalApi
    from agent.nvr.link import NvrLink
    from agent.qr.payloads import Payload, WifiNetwork
    from agent.qr.watcher import QrWatcher

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
        self.supervisor = Supervisor(rng=self.rng)
        self.lock = InstanceLock(config.state_dir)
        self.nvr: NvrLink | None = None
        if config.device.kind == "nvr":
            from agent.nvr.link import NvrLink

            self.nvr = NvrLink(
                config, self.device_id, lambda: self.record, self.keeper.save, self.clock.wall
            )
        self.poller = Poller(
            config, self.device_id, self.keeper, self.http, self.clock, self._token, self.nvr
        )
        self.local_api: LocalApi | None = None
        self.qr_watcher: QrWatcher | None = None
        self._events: asyncio.Queue[tuple[Event, asyncio.Future[None] | None]] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._busy_since: float | None = None  # when the event being applied started
        self._session = session
        self._own_session = session is None
        self._tls: ssl.SSLContext | None = None

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
        server = await serve_control_socket(self.config.control_socket, self.commands.control)
        inode = _inode(self.config.control_socket)
        if self._session is None:
            from agent.tls import client_context

            self._tls = client_context(self.config.cloud.ca_file)  # a bad ca_file fails here
        watchdog = asyncio.create_task(self._watchdog())
        await self._apply(Started(has_token=self.record.has_token))
        sd_notify.notify(f"READY=1\nSTATUS={self._status_line()}")
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
            watchdog.cancel()
            await self.supervisor.stop_all()
            if self.local_api is not None:
                await self.local_api.stop()  # the mDNS goodbye
            if self.qr_watcher is not None:
                await self.qr_watcher.stop()
            server.close()
            await server.wait_closed()
            _unlink_if_ours(self.config.control_socket, inode)
            if self._session is not None and self._own_session:
                await self._session.close()
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
        step = transition(self.state, event, kind=self.config.device.kind)
        for action in step.actions:
            await self._do(action)
        if step.state is not self.state:
            self.state = step.state
            connected = step.state is DeviceState.CONNECTED
            self.connected_since = self.clock.wall() if connected else None
            logging_setup.set_context(STATE=step.state.value)
            log.info("state: %s", step.state.value)
            await self._follow_qr_scanning()
            sd_notify.notify(f"STATUS={self._status_line()}")
            if self.local_api is not None:
                self.local_api.state_changed()

    async def _do(self, action: Action) -> None:
        match action:
            case StartPolling():
                self.poller.restart()
                self.supervisor.start("poll loop", self.poller.run, finishes=True)
            case StopPolling():
                await self.supervisor.stop("poll loop")
                self.poller.stop()
            case SaveToken(token=token):
                self.keeper.save(lambda r: r.with_token(token.raw, token.source))
                log.info("token accepted (from %s)", token.source)
            case ForgetToken(reason=reason):
                self.keeper.save(DeviceRecord.without_token)
                log.info("token forgotten (%s); provisioning from the first step", reason)
            case Connect():
                self.supervisor.start("control channel", self._channel)
            case Disconnect():
                await self.supervisor.stop("control channel")

    def _token(self, token: VerifiedToken) -> None:
        self._events.put_nowait((TokenAccepted(token), None))

    # -- the edges: HTTP, the control channel, the local API, QR cards ------------------

    def http(self) -> aiohttp.ClientSession:
        """The one HTTPS session, made on first use (aiohttp is the heaviest import:
        READY=1 and the control socket do not wait for it)."""
        if self._session is None:
            import aiohttp

            assert self._tls is not None, "run() makes the TLS context first"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._tls),
                headers={"User-Agent": f"camagent/{__version__}"},
            )
        return self._session

    async def _channel(self) -> None:
        from agent.control_channel import ControlChannel, Hello, TokenRevokedError

        channel = ControlChannel(
            self.http(),
            self.config.cloud.url,
            self.record.token,
            Hello(self.device_id, self.config.device.kind, __version__),
            on_command=self.commands.cloud,
            on_connected=lambda: self._events.put_nowait((ChannelOpened(), None)),
            on_lost=lambda reason: self._events.put_nowait((ChannelLost(reason), None)),
            rng=self.rng,
        )
        try:
            await channel.run()
        except TokenRevokedError as exc:
            log.warning("%s", exc)
            self._events.put_nowait((TokenRevoked(), None))
            await asyncio.Event().wait()  # the reset cancels this task; no restart meanwhile

    async def _start_local_api(self) -> None:
        from agent.local_api.device import DaemonDevice
        from agent.local_api.service import LocalApi

        if self.local_api is None:
            self.local_api = LocalApi(self.config, self.device_id, DaemonDevice(self))
        await self.local_api.start()

    async def _follow_qr_scanning(self) -> None:
        """Scan the camera's own video while there is no token; stop once there is one."""
        qr = self.config.qr
        wanted = bool(qr.source) and qr.scan_when_unprovisioned and self.state in UNLINKED
        if wanted and self.qr_watcher is None:
            from agent.qr.watcher import QrWatcher

            self.qr_watcher = QrWatcher(qr, self._qr_payload)
        if self.qr_watcher is None:
            return
        if wanted and not self.supervisor.running("QR watcher"):
            self.supervisor.start("QR watcher", self.qr_watcher._run)
        elif not wanted and self.supervisor.running("QR watcher"):
            await self.supervisor.stop("QR watcher")
            await self.qr_watcher.stop()
            log.info("QR scanning stopped: the device holds a token")

    async def _qr_payload(self, payload: Payload) -> None:
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
            self._token(token)

    async def join_wifi(self, network: WifiNetwork) -> str:
        """Join a network (as from a QR card), then restart the fast phase: a new link.

        Raises WifiError; returns the tool that did it.
        """
        from agent import wifi

        applied = await asyncio.to_thread(wifi.apply, network)
        log.info("joined WiFi %r (%s)", network.ssid, applied.tool)
        if self.state in UNLINKED:
            self._events.put_nowait((PollNowRequested("new link"), None))
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
            return 'this device is a camera; only an NVR (device.kind = "nvr") has a code'
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

    async def _watchdog(self) -> None:
        """Ping only while healthy: a wedged daemon is restarted by systemd."""
        interval = sd_notify.watchdog_interval()
        if interval is None:
            return
        while True:
            if reasons := self.unhealthy():
                log.error("unhealthy, no watchdog ping: %s", "; ".join(reasons))
            else:
                sd_notify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _unlink_if_ours(path: Path, inode: int | None) -> None:
    """Remove the control socket only if it is still the one this daemon made."""
    with contextlib.suppress(OSError):
        if inode is not None and path.stat().st_ino == inode:
            path.unlink()


def run(config: Config, config_path: Path | None) -> int:
    return asyncio.run(Daemon(config, config_path).run())
