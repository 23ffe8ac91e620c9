"""What the CLI does to the state when no daemon answers on the control socket.

The commands are the daemon's own (agent.commands): `OfflineDevice` is the device they
act on when no daemon runs, the state on disk. Its changes go through the same state
machine, which keeps the token or forgets it; polling and the channel wait for the daemon.

Every change holds the daemon lock (agent.instance_lock) for its duration, so no daemon
can start in the middle of it; if a daemon holds the lock (it is starting, or its socket
is elsewhere), the change goes through that daemon instead, never under it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from agent import control_socket, identity, label_key
from agent import lifecycle as lc
from agent.commands import CAMERA_HAS_NO_CODE, CommandTable
from agent.config import Config
from agent.errors import CamagentError, DaemonUnavailable
from agent.instance_lock import DaemonRunning, held
from agent.lifecycle import DeviceState, unlinked_state
from agent.status import Status
from agent.token_codec import token_summary
from agent.token_store import DeviceRecord, PasswordStamp, TokenStore
from agent.trust import TokenGate, TokenSource, VerifiedToken

if TYPE_CHECKING:
    import aiohttp

    from agent.keeper import Change
    from agent.nvr.activation import Activation
    from agent.nvr.link import NvrLink
    from agent.qr.payloads import WifiNetwork

T = TypeVar("T")
# A daemon that holds the lock opens its control socket within milliseconds.
SOCKET_WAIT_S = 10.0
# Why an NVR shows no code or takes no registration, told without a daemon.
LINKED_ALREADY = "this NVR is linked to the cloud already (`camagent reset` unlinks)"
NO_CODE_YET = "no activation code yet: start camagent, it registers one"
CODE_EXPIRED = "the last activation code expired: start camagent for a new one"


def status_of(config: Config) -> Status:
    device_id = identity.device_id(config)
    record = TokenStore(config.state_dir).load()
    mine = record.device_id == device_id
    token = record.token if mine else ""
    kind = config.device.kind
    activation = _live_activation(record) if mine and not token and kind == "nvr" else None
    return Status(
        device_id=device_id,
        kind=kind,
        name=config.device.name,
        state=DeviceState.DISCONNECTED if token else unlinked_state(kind),
        cloud_url=config.cloud.url,
        daemon=False,
        token=token_summary(token),
        activation=activation,
    )


def ask(config: Config, name: str) -> Any:
    """Command `name` (no arguments: `status`, `nvr_code`) answered from the state on disk."""
    return _call(config, name, {})


def reset(config: Config) -> None:
    _locked_or_through_daemon(config, lambda: _call(config, "reset", {}), "reset", {})


def set_token(config: Config, token: str) -> None:
    """Verify like any other token, then store it; the daemon connects with it on start."""
    args = {"token": token}
    _locked_or_through_daemon(config, lambda: _call(config, "token_set", args), "token_set", args)


def nvr_register(config: Config, token: str) -> None:
    """Cloud Registration without a daemon; the token is stored for it to connect with."""
    args = {"token": token}
    _locked_or_through_daemon(
        config, lambda: _call(config, "nvr_register", args), "nvr_register", args
    )


def _call(config: Config, name: str, args: dict[str, Any]) -> Any:
    """Command `name` of the daemon's table, carried out on the state on disk."""

    async def call() -> Any:
        device = OfflineDevice(config)
        try:
            return await CommandTable(device).call(name, args, "cli")
        finally:
            await device.close()

    return asyncio.run(call())


class OfflineDevice:
    """The device as the commands see it (agent.commands.Device) when no daemon runs:
    the record on disk, read once; each change written at once, its failure raised."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.device_id = identity.device_id(config)
        self.store = TokenStore(config.state_dir)
        self.keeper = _OfflineGate(self)
        self.nvr = _OfflineNvr(self) if config.device.kind == "nvr" else None
        self._record: DeviceRecord | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def record(self) -> DeviceRecord:
        if self._record is None:
            self._record = self.store.load()
        return self._record

    @property
    def ours(self) -> bool:
        """The record is this device's: another's (a changed device.id) counts as none."""
        return self.record.device_id == self.device_id

    @property
    def state(self) -> DeviceState:
        linked = self.ours and self.record.has_token
        return DeviceState.DISCONNECTED if linked else unlinked_state(self.config.device.kind)

    @property
    def http(self) -> Callable[[], aiohttp.ClientSession]:
        return self._http

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            from agent.tls import client_context

            connector = aiohttp.TCPConnector(ssl=client_context(self.config.cloud.ca_file))
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def status(self) -> Status:
        return status_of(self.config)

    async def change(self, event: lc.Event, *, wait: bool = True) -> None:
        step = lc.transition(self.state, event, kind=self.config.device.kind)
        for action in step.actions:
            match action:
                case lc.SaveToken(token=token):
                    self._save(self.keeper.keep(token))
                case lc.ForgetToken():
                    self._save(lambda r: replace(r.without_token(), device_id=self.device_id))
        # The other actions (polling, the channel) are the daemon's when it starts.

    def _save(self, change: Change) -> None:
        self._record = self.store.update(change)

    def no_code_reason(self) -> str:
        if self.nvr is None:
            return CAMERA_HAS_NO_CODE
        if self.state is not DeviceState.AWAITING_ACTIVATION:
            return LINKED_ALREADY
        kept = self.nvr.link.activation() if self.ours else None
        return CODE_EXPIRED if kept is not None else NO_CODE_YET

    async def join_wifi(self, network: WifiNetwork) -> str:
        raise CamagentError("joining a network is the daemon's: start camagent")

    def video_tunnels(self) -> Any:
        raise CamagentError("video goes through the daemon: start camagent")


class _OfflineGate:
    """The token gate of a device without a daemon: the record's keys, else the cloud's
    fetched now; K kept in the record, else derived to open a seal (and then kept)."""

    def __init__(self, device: OfflineDevice) -> None:
        self.device = device
        self.pems: tuple[str, ...] = ()
        self.stamp: PasswordStamp | None = None
        self.derived: list[bytes] = []

    def accept(self, raw: object, source: TokenSource) -> VerifiedToken:
        device, config = self.device, self.device.config
        ours = device.ours
        self.pems = device.record.trusted_keys_pem if ours else ()
        self.stamp = label_key.stamp_of(config)
        key = label_key.cached(device.record, self.stamp) if ours else None

        def sealing_key() -> bytes:
            if key is not None:
                return key
            self.derived.append(label_key.derive(config, device.device_id))
            return self.derived[-1]

        gate = TokenGate(config, device.device_id, self.pems, label_key=sealing_key)
        if gate.needs_keys:
            self.pems = tuple(_fetch_keys_now(config))
            gate = TokenGate(config, device.device_id, self.pems, label_key=sealing_key)
        return gate.accept(raw, source)

    def keep(self, token: VerifiedToken) -> Change:
        """The change that stores `token` with what accepting it needed."""
        device_id, derived, stamp, pems = (
            self.device.device_id,
            self.derived,
            self.stamp,
            self.pems,
        )

        def change(r: DeviceRecord) -> DeviceRecord:
            if r.device_id != device_id:
                r = DeviceRecord(device_id=device_id)
            if derived:  # K derived for the seal: kept, as the poll would have kept it
                r = label_key.kept(derived[-1], stamp)(r)
            return replace(r.with_token(token), trusted_keys_pem=pems)

        return change

    def raise_if_unsaved(self, what: str) -> None:
        """Nothing to say: a write the disk refuses raises at once here."""


class _OfflineNvr:
    """An NVR's side without a daemon: its last code while it is valid, registration."""

    def __init__(self, device: OfflineDevice) -> None:
        from agent.nvr.link import NvrLink

        self.device = device
        # Nothing it learns is saved: a code is the daemon's to register and renew.
        self.link: NvrLink = NvrLink(
            device.config, device.device_id, device.store.load, lambda change: None
        )

    def activation(self) -> Activation | None:
        current = self.link.activation() if self.device.ours else None
        return current if current is not None and current.expires_at > time.time() else None

    async def register(self, session: aiohttp.ClientSession, token: str) -> str:
        return await self.link.register(session, token)

    async def command(self, name: str, args: dict[str, Any]) -> tuple[bool, Any] | None:
        return None  # `sync` and `configure` are the cloud's, through a daemon


def _locked_or_through_daemon(
    config: Config, offline: Callable[[], T], cmd: str, args: dict[str, Any]
) -> T | Any:
    try:
        with held(config.state_dir):
            return offline()
    except DaemonRunning as running:
        return _through_daemon(config, cmd, args, running)


def _through_daemon(config: Config, cmd: str, args: dict[str, Any], running: DaemonRunning) -> Any:
    deadline = time.monotonic() + SOCKET_WAIT_S
    while True:
        try:
            return control_socket.request(config.control_socket, cmd, args)
        except DaemonUnavailable:
            if time.monotonic() >= deadline:
                raise CamagentError(
                    f"{running}, but it does not answer on {config.control_socket}: "
                    "try again when it has started, or stop it first"
                ) from None
            time.sleep(0.1)  # the daemon took the lock and is opening its socket


def _fetch_keys_now(config: Config) -> list[str]:
    # The gate's `accept` is synchronous (the daemon's never fetches); offline nothing
    # else runs, so the one fetch a token may need runs to its end on a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _fetch_keys(config)).result()


async def _fetch_keys(config: Config) -> list[str]:
    import aiohttp

    from agent.provisioning.client import fetch_keys
    from agent.tls import client_context

    connector = aiohttp.TCPConnector(ssl=client_context(config.cloud.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        return await fetch_keys(session, config.cloud.url)


def _live_activation(record: DeviceRecord) -> dict[str, Any] | None:
    from agent.nvr.activation import Activation

    if not record.activation:
        return None
    try:
        activation = Activation.from_json(record.activation)
    except (KeyError, TypeError, ValueError):
        return None
    return activation.public() if activation.expires_at > time.time() else None
