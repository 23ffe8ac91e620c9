"""One table of the daemon's commands, for every way in: the control socket (`camagent`
on this machine), the LAN API (agent.local_api.device adapts it) and the cloud's
control channel; and, with no daemon running, the CLI's own (agent.offline).

A new command is one entry in COMMANDS: its handler, the ways in that may call it, and
what the cloud is told when it is done. Handlers raise CamagentError subclasses; each way
in turns them into its own answer (a JSON error line, an HTTP status, `ok: false`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent.errors import CamagentError
from agent.lifecycle import (
    UNLINKED,
    DeviceState,
    Event,
    PollNowRequested,
    ResetRequested,
    TokenAccepted,
)

if TYPE_CHECKING:
    import aiohttp

    from agent.config import Config
    from agent.nvr.activation import Activation
    from agent.qr.payloads import WifiNetwork
    from agent.status import Status
    from agent.token_store import DeviceRecord
    from agent.trust import TokenSource, VerifiedToken

Way = Literal["cli", "lan", "cloud"]


class Gate(Protocol):
    """The token gate and the word on whether a change was saved (agent.keeper)."""

    def accept(self, raw: object, source: TokenSource) -> VerifiedToken: ...

    def raise_if_unsaved(self, what: str) -> None: ...


class Nvr(Protocol):
    """An NVR's side of the commands (agent.nvr.link)."""

    def activation(self) -> Activation | None: ...

    async def register(self, session: aiohttp.ClientSession, token: str) -> str: ...

    async def command(self, name: str, args: dict[str, Any]) -> tuple[bool, Any] | None: ...


class Tunnels(Protocol):
    async def open(self, args: dict[str, Any], token: str) -> dict[str, Any]: ...


class Device(Protocol):
    """What the commands use of the daemon: its identity and state, the gate, and the
    events it gives the state machine; no more. With no daemon, agent.offline's
    OfflineDevice is it, over the state on disk."""

    @property
    def device_id(self) -> str: ...

    @property
    def config(self) -> Config: ...

    @property
    def state(self) -> DeviceState | None: ...

    @property
    def record(self) -> DeviceRecord: ...

    @property
    def keeper(self) -> Gate: ...

    @property
    def nvr(self) -> Nvr | None: ...

    @property
    def http(self) -> Callable[[], aiohttp.ClientSession]: ...

    def status(self) -> Status: ...

    async def change(self, event: Event, *, wait: bool = True) -> None: ...

    def no_code_reason(self) -> str:
        """Why there is no activation code to show (a camera, linked, not yet)."""

    async def join_wifi(self, network: WifiNetwork) -> str: ...

    def video_tunnels(self) -> Tunnels: ...


Handler = Callable[[Device, dict[str, Any], Way], Awaitable[Any]]


class UnknownCommand(CamagentError):
    pass


class NotNow(CamagentError):
    """The command does not apply in the device's present state (e.g. poll-now with a
    token); the message says what to do instead."""


class HoldsToken(NotNow):
    """A provisioning request (poll-now) while the device holds a token."""

    http = (409, "holds_token")


class NotAnNvr(CamagentError):
    http = (409, "not_an_nvr")


CAMERA_HAS_NO_CODE = 'this device is a camera; only an NVR (device.kind = "nvr") has a code'
# Each way in gets the advice it can act on: on the device, the setting to change.
CAMERA_NOT_NVR: dict[Way, str] = {
    "cli": 'this device is a camera: set device.kind = "nvr"',
    "lan": "this device is a camera: only an NVR takes a registration",
}


@dataclass(frozen=True)
class Command:
    handler: Handler
    ways: frozenset[Way]
    done: str = ""  # what the cloud is told when the handler returns nothing


async def _status(device: Device, args: dict[str, Any], way: Way) -> Any:
    return device.status().to_json()


async def _reset(device: Device, args: dict[str, Any], way: Way) -> None:
    await device.change(ResetRequested(way), wait=way != "cloud")


async def _set_token(device: Device, args: dict[str, Any], way: Way) -> None:
    token = device.keeper.accept(args.get("token"), way)  # the gate: raises TokenError
    await device.change(TokenAccepted(token), wait=way != "cloud")
    if way != "cloud":
        device.keeper.raise_if_unsaved("the token")


async def _poll_now(device: Device, args: dict[str, Any], way: Way) -> None:
    if device.state not in UNLINKED:
        raise HoldsToken(
            "this device holds a token and makes no provisioning requests; "
            "run `camagent reset` first to provision again"
        )
    await device.change(PollNowRequested(way))


async def _nvr_code(device: Device, args: dict[str, Any], way: Way) -> Any:
    activation = device.nvr.activation() if device.nvr else None
    if activation is None or device.state is not DeviceState.AWAITING_ACTIVATION:
        raise NotNow(device.no_code_reason())
    return activation.public()


async def _nvr_register(device: Device, args: dict[str, Any], way: Way) -> None:
    if device.nvr is None:
        raise NotAnNvr(CAMERA_NOT_NVR.get(way, CAMERA_NOT_NVR["cli"]))
    if device.state is not DeviceState.AWAITING_ACTIVATION:
        raise NotNow(device.no_code_reason())
    answer = await device.nvr.register(device.http(), str(args.get("token") or ""))
    token = device.keeper.accept(answer, "registration")
    await device.change(TokenAccepted(token))
    device.keeper.raise_if_unsaved("the token")


async def _wifi(device: Device, args: dict[str, Any], way: Way) -> Any:
    return {"tool": await device.join_wifi(args["network"])}


async def _ping(device: Device, args: dict[str, Any], way: Way) -> Any:
    return {"pong": True, "device_id": device.device_id, "ts": time.time()}


async def _nvr_command(device: Device, name: str, args: dict[str, Any]) -> Any:
    if device.nvr is None:
        raise UnknownCommand(f"unknown command {name!r}")
    answer = await device.nvr.command(name, args)
    if answer is None:
        raise UnknownCommand(f"unknown command {name!r}")
    ok, data = answer
    if not ok:
        raise CamagentError(str(data))
    return data


async def _tunnel_open(device: Device, args: dict[str, Any], way: Way) -> Any:
    return await device.video_tunnels().open(args, device.record.token)


async def _probe(device: Device, args: dict[str, Any], way: Way) -> Any:
    if not device.config.video_targets():
        return {"streams": []}  # no video: nothing to load for the cloud's regular probe
    from agent.video.rtsp_probe import probe_all, rtsp_targets

    results = await probe_all(rtsp_targets(device.config))
    return {"streams": [result.to_json() for result in results]}


async def _sync(device: Device, args: dict[str, Any], way: Way) -> Any:
    return await _nvr_command(device, "sync", args)


async def _configure(device: Device, args: dict[str, Any], way: Way) -> Any:
    return await _nvr_command(device, "configure", args)


CLI: frozenset[Way] = frozenset({"cli"})
ALL: frozenset[Way] = frozenset({"cli", "lan", "cloud"})

# The names are the wire's: the control socket's and the cloud's differ for one command.
COMMANDS: dict[str, Command] = {
    "status": Command(_status, CLI),
    "reset": Command(_reset, ALL, done="resetting"),
    "token_clear": Command(_reset, CLI),
    "token_set": Command(_set_token, frozenset({"cli", "lan"})),
    "set_token": Command(_set_token, frozenset({"cloud"}), done="token replaced"),
    "poll_now": Command(_poll_now, frozenset({"cli", "lan"})),
    "nvr_code": Command(_nvr_code, CLI),
    "nvr_register": Command(_nvr_register, frozenset({"cli", "lan"})),
    "wifi": Command(_wifi, frozenset({"lan"})),
    "ping": Command(_ping, frozenset({"cloud"})),
    "sync": Command(_sync, frozenset({"cloud"})),
    "configure": Command(_configure, frozenset({"cloud"})),
    "tunnel_open": Command(_tunnel_open, frozenset({"cloud"})),
    "probe": Command(_probe, frozenset({"cloud"})),
}


class CommandTable:
    def __init__(self, device: Device, commands: dict[str, Command] | None = None) -> None:
        self.device = device
        self.commands = COMMANDS if commands is None else commands

    async def call(self, name: str, args: dict[str, Any], way: Way) -> Any:
        command = self.commands.get(name)
        if command is None or way not in command.ways:
            raise UnknownCommand(f"unknown command {name!r}")
        return await command.handler(self.device, args, way)

    async def control(self, name: str, args: dict[str, Any]) -> Any:
        """The control socket: a command's data, or the status after a change."""
        data = await self.call(name, args, "cli")
        return self.device.status().to_json() if data is None else data

    async def cloud(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """The control channel: `(ok, data)`, never an exception (the cloud gets a reason)."""
        try:
            data = await self.call(name, args, "cloud")
        except CamagentError as exc:
            return False, str(exc)
        return True, self.commands[name].done if data is None else data
