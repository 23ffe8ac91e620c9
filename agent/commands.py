"""One table of the daemon's commands, for every way in: the control socket (`camagent`
on this machine), the LAN API (agent.local_api.device adapts it) and the cloud's
control channel.

A new command is one entry in COMMANDS: its handler, the ways in that may call it, and
what the cloud is told when it is done. Handlers raise CamagentError subclasses; each way
in turns them into its own answer (a JSON error line, an HTTP status, `ok: false`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agent.errors import CamagentError
from agent.lifecycle import UNLINKED, DeviceState, PollNowRequested, ResetRequested, TokenAccepted

if TYPE_CHECKING:
    from agent.daemon import Daemon

Way = Literal["cli", "lan", "cloud"]
Handler = Callable[["Daemon", dict[str, Any], Way], Awaitable[Any]]


class UnknownCommand(CamagentError):
    pass


class NotNow(CamagentError):
    """The command does not apply in the device's present state (e.g. poll-now with a
    token); the message says what to do instead."""


class NotAnNvr(CamagentError):
    pass


@dataclass(frozen=True)
class Command:
    handler: Handler
    ways: frozenset[Way]
    done: str = ""  # what the cloud is told when the handler returns nothing


def no_code_reason(daemon: Daemon) -> str:
    if daemon.nvr is None:
        return 'this device is a camera; only an NVR (device.kind = "nvr") has a code'
    if daemon.state is not DeviceState.AWAITING_ACTIVATION:
        return "this NVR is linked to the cloud already (run `camagent reset` to unlink)"
    last = daemon.poller.last_poll
    return f"no activation code yet: {last.detail if last else 'registering it with the cloud'}"


async def _status(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    return daemon.status().to_json()


async def _reset(daemon: Daemon, args: dict[str, Any], way: Way) -> None:
    await daemon.change(ResetRequested(way), wait=way != "cloud")


async def _set_token(daemon: Daemon, args: dict[str, Any], way: Way) -> None:
    token = daemon.keeper.accept(args.get("token"), way)  # the gate: raises TokenError
    await daemon.change(TokenAccepted(token), wait=way != "cloud")
    if way != "cloud":
        daemon.keeper.raise_if_unsaved("the token")


async def _poll_now(daemon: Daemon, args: dict[str, Any], way: Way) -> None:
    if daemon.state not in UNLINKED:
        raise NotNow(
            "this device holds a token and makes no provisioning requests; "
            "run `camagent reset` first to provision again"
        )
    await daemon.change(PollNowRequested(way))


async def _nvr_code(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    activation = daemon.nvr.activation() if daemon.nvr else None
    if activation is None or daemon.state is not DeviceState.AWAITING_ACTIVATION:
        raise NotNow(no_code_reason(daemon))
    return activation.public()


async def _nvr_register(daemon: Daemon, args: dict[str, Any], way: Way) -> None:
    if daemon.nvr is None:
        raise NotAnNvr('this device is a camera: set device.kind = "nvr"')
    if daemon.state is not DeviceState.AWAITING_ACTIVATION:
        raise NotNow(no_code_reason(daemon))
    answer = await daemon.nvr.register(daemon.http(), str(args.get("token") or ""))
    token = daemon.keeper.accept(answer, "registration")
    await daemon.change(TokenAccepted(token))
    daemon.keeper.raise_if_unsaved("the token")


async def _wifi(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    return {"tool": await daemon.join_wifi(args["network"])}


async def _ping(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    return {"pong": True, "device_id": daemon.device_id, "ts": time.time()}


async def _nvr_command(daemon: Daemon, name: str, args: dict[str, Any]) -> Any:
    if daemon.nvr is None:
        raise UnknownCommand(f"unknown command {name!r}")
    answer = await daemon.nvr.command(name, args)
    if answer is None:
        raise UnknownCommand(f"unknown command {name!r}")
    ok, data = answer
    if not ok:
        raise CamagentError(str(data))
    return data


async def _tunnel_open(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    return await daemon.video_tunnels().open(args, daemon.record.token)


async def _probe(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    if not daemon.config.video_targets():
        return {"streams": []}  # no video: nothing to load for the cloud's regular probe
    from agent.video.rtsp_probe import probe_all, rtsp_targets

    results = await probe_all(rtsp_targets(daemon.config))
    return {"streams": [result.to_json() for result in results]}


async def _sync(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    return await _nvr_command(daemon, "sync", args)


async def _configure(daemon: Daemon, args: dict[str, Any], way: Way) -> Any:
    return await _nvr_command(daemon, "configure", args)


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
    def __init__(self, daemon: Daemon, commands: dict[str, Command] | None = None) -> None:
        self.daemon = daemon
        self.commands = COMMANDS if commands is None else commands

    async def call(self, name: str, args: dict[str, Any], way: Way) -> Any:
        command = self.commands.get(name)
        if command is None or way not in command.ways:
            raise UnknownCommand(f"unknown command {name!r}")
        return await command.handler(self.daemon, args, way)

    async def control(self, name: str, args: dict[str, Any]) -> Any:
        """The control socket: a command's data, or the status after a change."""
        data = await self.call(name, args, "cli")
        return self.daemon.status().to_json() if data is None else data

    async def cloud(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """The control channel: `(ok, data)`, never an exception (the cloud gets a reason)."""
        try:
            data = await self.call(name, args, "cloud")
        except CamagentError as exc:
            return False, str(exc)
        return True, self.commands[name].done if data is None else data
