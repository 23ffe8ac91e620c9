"""`camagent run`: the asyncio shell around the pure schedule and state machine.

All events (poll results, CLI requests, cloud commands, channel changes) go through one
queue and are applied by one supervisor coroutine, so the state machine sees them one at
a time, in order, and no task ever has to cancel itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__, identity, logging_setup, sd_notify
from agent import config as config_mod
from agent.config import Config
from agent.control_socket import serve as serve_control_socket
from agent.errors import CamagentError, StateError, TokenError
from agent.lifecycle import (
    UNLINKED,
    Action,
    ChannelLost,
    ChannelOpened,
    DeviceState,
    Event,
    PollNowRequested,
    ResetRequested,
    Started,
    TokenAccepted,
    TokenRevoked,
    transition,
)
from agent.provisioning.schedule import PollPlan, PollSchedule, ScheduleSettings
from agent.provisioning.wire import derive_key
from agent.tls import client_context
from agent.token_codec import token_summary
from agent.token_store import DeviceRecord, PasswordStamp, TokenStore
from agent.trust import TokenVerifier

if TYPE_CHECKING:
    import ssl

    import aiohttp

    from agent.local_api.service import LocalApi
    from agent.nvr.link import NvrLink
    from agent.provisioning.client import PollOutcome
    from agent.qr.payloads import Payload, WifiNetwork
    from agent.qr.watcher import QrWatcher

log = logging.getLogger("camagent")

# A request must have *ended* before the next is due; this covers the last hop back.
DEADLINE_MARGIN_S = 0.05


@dataclass
class LastPoll:
    attempt: int
    detail: str
    at: float  # wall clock, for people


class Daemon:
    def __init__(
        self, config: Config, config_path: Path | None = None, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.rng = rng or random.Random()
        self.device_id = identity.device_id(config)
        self.store = TokenStore(config.state_dir)
        self.record = DeviceRecord(device_id=self.device_id)
        self.unsaved: StateError | None = None  # why the last state write failed, if it did
        self.verifier: TokenVerifier
        self.state: DeviceState | None = None
        self.schedule: PollSchedule | None = None
        self.last_poll: LastPoll | None = None
        self.clock_offset: float | None = None
        self.connected_since: float | None = None
        self._events: asyncio.Queue[tuple[Event, asyncio.Future[None] | None]] = asyncio.Queue()
        self._poll_task: asyncio.Task[None] | None = None
        self._channel_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._rescheduled = asyncio.Event()  # wakes the poll loop when the schedule moved
        self._session: aiohttp.ClientSession | None = None
        self._tls: ssl.SSLContext | None = None
        self.qr_watcher: QrWatcher | None = None
        self.nvr: NvrLink | None = None
        self.local_api: LocalApi | None = None
        if config.device.kind == "nvr":
            from agent.nvr.link import NvrLink

            self.nvr = NvrLink(config, self.device_id, lambda: self.record, self._save)

    # -- life cycle -----------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        logging_setup.set_context(DEVICE_ID=self.device_id)
        self.record = self._load_record()
        self.verifier = TokenVerifier(self.config, self.device_id, self.record.trusted_keys_pem)
        self._drop_token_if_untrusted()
        server = await serve_control_socket(self.config.control_socket, self._control)
        self._tls = client_context(self.config.cloud.ca_file)  # a bad ca_file fails here
        watchdog = asyncio.create_task(self._watchdog())
        await self._apply(Started(has_token=self.record.has_token))
        sd_notify.notify(f"READY=1\nSTATUS={self._status_line()}")
        local_api = asyncio.create_task(self._start_local_api())
        log.info(
            "camagent %s running as %s %s (cloud %s)",
            __version__,
            self.config.device.kind,
            self.device_id,
            self.config.cloud.url,
        )
        try:
            await self._supervise()
        finally:
            sd_notify.notify("STOPPING=1")
            log.info("stopping")
            for task in (self._poll_task, self._channel_task, watchdog, local_api):
                await _cancel(task)
            if self.local_api is not None:
                await self.local_api.stop()  # the mDNS goodbye
            if self.qr_watcher is not None:
                await self.qr_watcher.stop()
            server.close()
            await server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.config.control_socket.unlink()
            if self._session is not None:
                await self._session.close()
        return 0

    async def _supervise(self) -> None:
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while True:
                get = asyncio.create_task(self._events.get())
                done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    get.cancel()
                    return
                event, future = get.result()
                try:
                    await self._apply(event)
                finally:
                    if future is not None and not future.done():
                        future.set_result(None)
        finally:
            stop.cancel()

    async def submit(self, event: Event) -> None:
        """Queue an event and wait until the supervisor has carried it out."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._events.put_nowait((event, future))
        await future

    def post(self, event: Event) -> None:
        self._events.put_nowait((event, None))

    def reload(self) -> None:
        """SIGHUP: re-read the config; intervals and trusted keys apply at once."""
        if self.config_path is None:
            return
        try:
            new = config_mod.load(self.config_path)
            verifier = TokenVerifier(new, self.device_id, self.record.trusted_keys_pem)
        except CamagentError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        for section in ("device", "cloud", "paths", "local_api"):
            if getattr(new, section) != getattr(self.config, section):
                log.warning("[%s] changed: it takes effect when camagent restarts", section)
        # Only the schedule changes live; the rest (nvr and qr too) stays as it started.
        self.config = replace(self.config, provisioning=new.provisioning, source=new.source)
        self.verifier = TokenVerifier(self.config, self.device_id, self.record.trusted_keys_pem)
        del verifier
        if self.schedule is not None:
            self.schedule.reconfigure(ScheduleSettings.from_config(new.provisioning))
            self._rescheduled.set()
        log.info("configuration reloaded from %s", self.config_path)

    # -- the state machine's actions ------------------------------------------------

    async def _apply(self, event: Event) -> None:
        step = transition(self.state, event, kind=self.config.device.kind)
        for action in step.actions:
            await self._do(action, event)
        if step.state is not self.state:
            self.state = step.state
            self.connected_since = time.time() if step.state is DeviceState.CONNECTED else None
            logging_setup.set_context(STATE=step.state.value)
            log.info("state: %s", step.state.value)
            await self._follow_qr_scanning()
            sd_notify.notify(f"STATUS={self._status_line()}")
            if self.local_api is not None:
                self.local_api.state_changed()

    async def _do(self, action: Action, event: Event) -> None:
        loop = asyncio.get_running_loop()
        match action:
            case Action.START_POLLING:
                await _cancel(self._poll_task)
                settings = ScheduleSettings.from_config(self.config.provisioning)
                self.schedule = PollSchedule(settings, loop.time())
                self._poll_task = asyncio.create_task(self._poll_loop())
            case Action.STOP_POLLING:
                await _cancel(self._poll_task)
                self._poll_task = None
                self.schedule = None
            case Action.SAVE_TOKEN:
                assert isinstance(event, TokenAccepted)
                self._save(lambda r: r.with_token(event.token, event.source))
                log.info("token accepted (from %s)", event.source)
            case Action.FORGET_TOKEN:
                self._save(DeviceRecord.without_token)
                source = getattr(event, "source", "cloud revocation")
                log.info("token forgotten (%s); provisioning from the first step", source)
            case Action.CONNECT:
                self._channel_task = asyncio.create_task(self._channel_loop(self.record.token))
            case Action.DISCONNECT:
                await _cancel(self._channel_task)
                self._channel_task = None

    # -- QR cards seen by the camera ---------------------------------------------------

    async def _follow_qr_scanning(self) -> None:
        """Scan the camera's own video while there is no token; stop once there is one."""
        qr = self.config.qr
        wanted = bool(qr.source) and qr.scan_when_unprovisioned and self.state in UNLINKED
        if wanted and self.qr_watcher is None:
            from agent.qr.watcher import QrWatcher

            self.qr_watcher = QrWatcher(qr, self._qr_payload)
        if self.qr_watcher is None:
            return
        if wanted:
            self.qr_watcher.start()
        elif self.qr_watcher.running:
            await self.qr_watcher.stop()
            log.info("QR scanning stopped: the device holds a token")

    async def _qr_payload(self, payload: Payload) -> None:
        if payload.wifi is not None:
            from agent import wifi

            try:
                applied = await asyncio.to_thread(wifi.apply, payload.wifi)
            except CamagentError as exc:
                log.warning("WiFi from a QR card not applied: %s", exc)
            else:
                log.info("joined WiFi %r from a QR card (%s)", payload.wifi.ssid, applied.tool)
                self.post(PollNowRequested("new link"))
        if payload.token:
            try:
                claims = self.verifier.verify(payload.token)
            except TokenError as exc:
                log.warning("token from a QR card refused: %s", exc)
                return
            self.post(TokenAccepted(claims.raw, "qr"))

    def _save(self, change: Callable[[DeviceRecord], DeviceRecord]) -> None:
        """Persist a change; if the disk refuses, keep running on the in-memory state."""
        try:
            self.record = self.store.update(change)
            self.unsaved = None
        except StateError as exc:
            log.error("%s", exc)
            self.record = change(self.record)
            self.unsaved = exc

    # -- provisioning ---------------------------------------------------------------

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        schedule = self.schedule
        assert schedule is not None
        self._http()  # import the HTTP stack before the clock of the first request starts
        while True:
            await self._sleep_until_due(schedule)
            plan = schedule.begin(loop.time(), self.rng.uniform(-1.0, 1.0))
            outcome = await self._poll(plan)
            schedule.finish(loop.time(), outcome.retry_after)
            self.last_poll = LastPoll(plan.attempt, outcome.detail, time.time())
            if outcome.token is not None:
                log.info("poll %d (%s phase): token received", plan.attempt, plan.phase.value)
                self.post(TokenAccepted(outcome.token, "poll"))
                return
            log.info(
                "poll %d (%s phase, wait %d s): %s; next in %.1f s",
                plan.attempt,
                plan.phase.value,
                plan.wait,
                outcome.detail,
                schedule.delay(loop.time()),
            )

    async def _sleep_until_due(self, schedule: PollSchedule) -> None:
        """Sleep until the next request is due; an NVR wakes up to renew its code too."""
        loop = asyncio.get_running_loop()
        while (delay := schedule.delay(loop.time())) > 0:
            renew_at = self.nvr.renew_at() if self.nvr else None
            if renew_at is not None and renew_at <= time.time():
                await self._renew_code()
                continue
            if renew_at is not None:
                delay = min(delay, renew_at - time.time())
            self._rescheduled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescheduled.wait(), delay)

    async def _renew_code(self) -> None:
        assert self.nvr is not None
        try:
            await self.nvr.key(self._http())
        except CamagentError as exc:
            # The cloud is unreachable: try again at the next poll rather than spin.
            log.warning("cannot renew the activation code: %s", exc)
            await asyncio.sleep(min(60.0, self.config.provisioning.fast_interval))

    def _http(self) -> aiohttp.ClientSession:
        """The one HTTPS session, made on first use.

        aiohttp is the daemon's heaviest import (~150 ms): READY=1 and the control socket
        do not wait for it, the first poll or connection does.
        """
        if self._session is None:
            import aiohttp

            assert self._tls is not None, "run() makes the TLS context first"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._tls),
                headers={"User-Agent": f"camagent/{__version__}"},
            )
        return self._session

    async def _poll(self, plan: PollPlan) -> PollOutcome:
        """One request; every failure becomes an outcome without a token."""
        from agent.provisioning.client import PollOutcome, poll_once

        session = self._http()
        loop = asyncio.get_running_loop()
        try:
            key = await self._provisioning_key()
            # The key fetch shares the request's slot: on a dead link it must not run past
            # the moment the next request is due.
            await self._ensure_trusted_keys(
                timeout=max(0.1, plan.deadline - loop.time() - DEADLINE_MARGIN_S)
            )
        except CamagentError as exc:
            return PollOutcome(None, str(exc))
        timeout = max(0.1, plan.deadline - loop.time() - DEADLINE_MARGIN_S)
        outcome = await poll_once(
            session,
            self.config.cloud.url,
            key,
            self.device_id,
            wait=min(plan.wait, int(timeout)),
            timeout=timeout,
            clock_offset=self.clock_offset,
        )
        if outcome.clock_offset is not None:
            self.clock_offset = outcome.clock_offset
        if outcome.token is None:
            return outcome
        try:
            self.verifier.verify(outcome.token)
        except TokenError as exc:
            log.warning("discarding the token from the cloud: %s", exc)
            return PollOutcome(None, f"token refused: {exc}", None, outcome.clock_offset)
        return outcome

    async def _provisioning_key(self) -> bytes:
        """K, derived once from the password file and kept in the state.

        An NVR has no password: it polls with the secret of its activation code.
        """
        if self.nvr is not None:
            return await self.nvr.key(self._http())
        path = Path(self.config.device.password_file)
        stamp = PasswordStamp.of(path) if path.exists() else None
        key = self.record.provisioning_key()
        if key is not None and (stamp is None or stamp == self.record.key_stamp):
            return key
        password = identity.read_password(self.config)
        key = await asyncio.to_thread(derive_key, password, self.device_id)
        encoded = base64.b64encode(key).decode()
        self._save(lambda r: replace(r, key=encoded, key_stamp=stamp))
        log.info("provisioning key derived from %s", path)
        return key

    async def _ensure_trusted_keys(self, timeout: float = 15.0) -> None:
        if not self.verifier.needs_keys:
            return
        from agent.provisioning.client import fetch_keys

        pems = await fetch_keys(self._http(), self.config.cloud.url, timeout=timeout)
        self._save(lambda r: replace(r, trusted_keys_pem=tuple(pems)))
        self.verifier = TokenVerifier(self.config, self.device_id, pems)
        log.info(
            "trusting %d token-signing key(s) fetched from %s", len(pems), self.config.cloud.url
        )

    # -- the control channel --------------------------------------------------------

    async def _channel_loop(self, token: str) -> None:
        from agent.control_channel import ControlChannel, Hello, TokenRevokedError

        channel = ControlChannel(
            self._http(),
            self.config.cloud.url,
            token,
            Hello(self.device_id, self.config.device.kind, __version__),
            on_command=self._cloud_command,
            on_connected=lambda: self.post(ChannelOpened()),
            on_lost=lambda reason: self.post(ChannelLost(reason)),
            rng=self.rng,
        )
        try:
            await channel.run()
        except TokenRevokedError as exc:
            log.warning("%s", exc)
            self.post(TokenRevoked())

    async def _cloud_command(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        match name:
            case "ping":
                return True, {"pong": True, "device_id": self.device_id, "ts": time.time()}
            case "reset":
                self.post(ResetRequested("cloud"))
                return True, "resetting"
            case "set_token":
                try:
                    self.verifier.verify(str(args.get("token", "")))
                except TokenError as exc:
                    return False, str(exc)
                self.post(TokenAccepted(str(args["token"]), "cloud"))
                return True, "token replaced"
        if self.nvr is not None and (answer := await self.nvr.command(name, args)) is not None:
            return answer
        return False, f"unknown command {name!r}"

    # -- the local control socket ---------------------------------------------------

    async def _control(self, cmd: str, args: dict[str, Any]) -> Any:
        match cmd:
            case "status":
                return self.status()
            case "reset" | "token_clear":
                await self.submit(ResetRequested("cli"))
                return self.status()
            case "token_set":
                token = args.get("token")
                if not isinstance(token, str):
                    raise TokenError("token must be a string")
                await self.set_token(token, "cli")
                return self.status()
            case "nvr_code":
                activation = self.nvr.activation() if self.nvr else None
                if activation is None or self.state is not DeviceState.AWAITING_ACTIVATION:
                    raise CamagentError(self._no_code_reason())
                return activation.public()
            case "nvr_register":
                await self.register_nvr(str(args.get("token") or ""))
                return self.status()
            case "poll_now":
                await self.poll_now("cli")
                return self.status()
        raise CamagentError(f"unknown command {cmd!r}")

    # -- changes shared by the control socket and the local API ----------------------

    async def set_token(self, token: str, source: str) -> None:
        """A forced token change: verified like any token (raises TokenError)."""
        self.verifier.verify(token)
        await self.submit(TokenAccepted(token.strip(), source))
        self._raise_if_unsaved("the token")

    def _raise_if_unsaved(self, what: str) -> None:
        # The person who asked must know: the change holds only until the daemon stops.
        if self.unsaved is not None:
            raise StateError(
                f"{what} is in use but could not be saved, so it is lost when the daemon "
                f"stops ({self.unsaved}); fix the state directory, then set it again"
            )

    async def register_nvr(self, token: str) -> None:
        if self.nvr is None:
            raise CamagentError('this device is a camera: set device.kind = "nvr"')
        if self.state is not DeviceState.AWAITING_ACTIVATION:
            raise CamagentError(self._no_code_reason())
        answer = await self.nvr.register(self._http(), token)
        claims = self.verifier.verify(answer)
        await self.submit(TokenAccepted(claims.raw, "registration"))

    async def poll_now(self, source: str) -> None:
        if self.state not in UNLINKED:
            raise CamagentError(
                "this device holds a token and makes no provisioning requests; "
                "run `camagent reset` first to provision again"
            )
        await self.submit(PollNowRequested(source))

    async def join_wifi(self, network: WifiNetwork) -> str:
        """Join a network (as from a QR card), then restart the fast phase: a new link.

        Raises WifiError; returns the tool that did it.
        """
        from agent import wifi

        applied = await asyncio.to_thread(wifi.apply, network)
        log.info("joined WiFi %r (%s)", network.ssid, applied.tool)
        if self.state in UNLINKED:
            await self.submit(PollNowRequested("new link"))
        return applied.tool

    # -- the local HTTPS API and mDNS ---------------------------------------------------

    async def _start_local_api(self) -> None:
        if not self.config.local_api.enabled:
            return
        from agent.local_api.device import DaemonDevice
        from agent.local_api.service import LocalApi

        self.local_api = LocalApi(self.config, self.device_id, DaemonDevice(self))
        await self.local_api.start()

    def _local_api_status(self) -> dict[str, Any]:
        if not self.config.local_api.enabled:
            return {"enabled": False}
        if self.local_api is None:
            return {"enabled": True, "port": None, "fp": None, "mdns": None}
        return self.local_api.status()

    def status(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        schedule = self.schedule
        provisioning: dict[str, Any] = {"attempts": 0, "phase": "off", "next_poll_in": None}
        if schedule is not None and self.state in UNLINKED:
            provisioning = {
                "attempts": schedule.attempts,
                "phase": schedule.phase.value,
                "next_poll_in": round(schedule.delay(loop.time()), 3),
            }
        if self.last_poll is not None:
            provisioning["last_attempt"] = self.last_poll.attempt
            provisioning["last_result"] = self.last_poll.detail
            provisioning["last_at"] = self.last_poll.at
        return {
            "device_id": self.device_id,
            "kind": self.config.device.kind,
            "name": self.config.device.name,
            "state": self.state.value if self.state else "provisioning",
            "token": token_summary(self.record.token),
            "provisioning": provisioning,
            "cloud": {"url": self.config.cloud.url, "connected_since": self.connected_since},
            "version": __version__,
            "daemon": True,
            "local_api": self._local_api_status(),
            **self._activation_status(),
        }

    def _activation_status(self) -> dict[str, Any]:
        activation = self.nvr.activation() if self.nvr else None
        if activation is None or self.state is not DeviceState.AWAITING_ACTIVATION:
            return {}
        return {"activation": activation.public()}

    def _no_code_reason(self) -> str:
        if self.nvr is None:
            return 'this device is a camera; only an NVR (device.kind = "nvr") has a code'
        if self.state is not DeviceState.AWAITING_ACTIVATION:
            return "this NVR is linked to the cloud already (run `camagent reset` to unlink)"
        reason = self.last_poll.detail if self.last_poll else "registering it with the cloud"
        return f"no activation code yet: {reason}"

    def _status_line(self) -> str:
        return f"{self.state.value if self.state else 'starting'} ({self.device_id})"

    # -- start-up helpers -----------------------------------------------------------

    def _load_record(self) -> DeviceRecord:
        try:
            record = self.store.load()
        except StateError as exc:
            aside = self.store.set_aside()
            log.error("%s; moved it to %s and starting with a fresh state", exc, aside)
            record = DeviceRecord()
        if record.device_id != self.device_id:
            if record.device_id:
                log.warning(
                    "the state belongs to device %s, this is %s: starting afresh",
                    record.device_id,
                    self.device_id,
                )
            record = DeviceRecord(device_id=self.device_id)
            try:
                self.store.update(lambda _: record)
            except StateError as exc:
                log.error("%s", exc)
        return record

    def _drop_token_if_untrusted(self) -> None:
        """A held token that no longer verifies (new cloud, new keys) is useless: provision."""
        if not self.record.has_token or self.verifier.needs_keys:
            return
        try:
            self.verifier.verify(self.record.token)
        except TokenError as exc:
            log.warning("the stored token is no longer accepted (%s): provisioning again", exc)
            self._save(DeviceRecord.without_token)

    async def _watchdog(self) -> None:
        interval = sd_notify.watchdog_interval()
        if interval is None:
            return
        while True:
            sd_notify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(config: Config, config_path: Path | None) -> int:
    return asyncio.run(Daemon(config, config_path).run())
