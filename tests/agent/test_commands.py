"""The command table over a stand-in device: what each command asks of the `Device`
protocol, and how each way in gets its answer (the daemon's side: tests/agent/test_daemon.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from agent.commands import (
    CAMERA_NOT_NVR,
    CommandTable,
    HoldsToken,
    NotAnNvr,
    NotNow,
    UnknownCommand,
    Way,
)
from agent.config import Config
from agent.errors import StateError, TokenError
from agent.lifecycle import DeviceState, Event, PollNowRequested, ResetRequested, TokenAccepted
from agent.qr.payloads import WifiNetwork
from agent.status import Status
from agent.token_store import DeviceRecord
from agent.trust import TokenSource, VerifiedToken
from tests.agent.tokens import verified


class Gate:
    def __init__(self) -> None:
        self.accepted: list[tuple[object, TokenSource]] = []
        self.unsaved: StateError | None = None

    def accept(self, raw: object, source: TokenSource) -> VerifiedToken:
        self.accepted.append((raw, source))
        if raw == "forged":
            raise TokenError("token signature does not verify")
        return verified(source)

    def raise_if_unsaved(self, what: str) -> None:
        if self.unsaved is not None:
            raise self.unsaved


class Device:
    """Only what the `Device` protocol names: no daemon, no event loop of its own."""

    def __init__(self, state: DeviceState = DeviceState.PROVISIONING) -> None:
        self.device_id = "aa:bb:cc:dd:ee:ff"
        self.config = Config()
        self.state: DeviceState | None = state
        self.record = DeviceRecord(device_id=self.device_id)
        self.keeper = Gate()
        self.nvr = None
        self.events: list[tuple[Event, bool]] = []

    @property
    def http(self) -> Callable[[], aiohttp.ClientSession]:
        raise AssertionError("no command here goes to the cloud")

    def status(self) -> Status:
        assert self.state is not None
        return Status(self.device_id, "camera", "", self.state, "https://c", daemon=True)

    async def change(self, event: Event, *, wait: bool = True) -> None:
        self.events.append((event, wait))

    def no_code_reason(self) -> str:
        return "no code: a camera"

    async def join_wifi(self, network: WifiNetwork) -> str:
        return "nmcli"

    def video_tunnels(self) -> Any:
        raise AssertionError("no tunnel here")


async def test_a_token_passes_the_gate_with_its_way_in_as_source() -> None:
    device = Device()
    table = CommandTable(device)
    await table.control("token_set", {"token": "sealed"})
    assert await table.cloud("set_token", {"token": "sealed"}) == (True, "token replaced")
    assert device.keeper.accepted == [("sealed", "cli"), ("sealed", "cloud")]
    sources = [
        (event.token.source, wait)
        for event, wait in device.events
        if isinstance(event, TokenAccepted)
    ]
    # The cloud does not wait: carrying it out may close the channel it came on.
    assert sources == [("cli", True), ("cloud", False)]
    assert len(device.events) == 2


async def test_a_token_the_disk_refused_is_told_to_the_cli_not_the_cloud() -> None:
    device = Device()
    device.keeper.unsaved = StateError("disk full")
    table = CommandTable(device)
    with pytest.raises(StateError, match="disk full"):
        await table.control("token_set", {"token": "sealed"})
    assert await table.cloud("set_token", {"token": "sealed"}) == (True, "token replaced")


async def test_refusals_carry_their_answer_for_each_way_in() -> None:
    device = Device(DeviceState.CONNECTED)
    table = CommandTable(device)
    with pytest.raises(HoldsToken) as holds:
        await table.call("poll_now", {}, "lan")
    assert holds.value.http == (409, "holds_token")
    assert "camagent reset" in str(holds.value)
    with pytest.raises(TokenError) as forged:
        await table.call("token_set", {"token": "forged"}, "lan")
    assert forged.value.http == (400, "token_refused")
    ok, reason = await table.cloud("set_token", {"token": "forged"})
    assert (ok, reason) == (False, "token signature does not verify")
    assert device.events == []


@pytest.mark.parametrize("way", ["cli", "lan"])
async def test_a_camera_has_no_code_and_takes_no_registration(way: Way) -> None:
    table = CommandTable(Device(DeviceState.PROVISIONING))
    with pytest.raises(NotAnNvr, match=CAMERA_NOT_NVR[way]):
        await table.call("nvr_register", {"token": "x"}, way)
    if way == "cli":
        with pytest.raises(NotNow, match="no code: a camera"):
            await table.call("nvr_code", {}, way)


async def test_commands_outside_their_ways_are_unknown() -> None:
    table = CommandTable(Device())
    for name, way in [("wifi", "cli"), ("status", "lan"), ("reset", "nope"), ("poll", "cli")]:
        with pytest.raises(UnknownCommand, match=f"unknown command '{name}'"):
            await table.call(name, {}, way)  # type: ignore[arg-type]


async def test_changes_are_events_for_the_state_machine() -> None:
    device = Device()
    table = CommandTable(device)
    assert (await table.control("reset", {}))["state"] == "provisioning"
    await table.control("poll_now", {})
    assert await table.cloud("reset", {}) == (True, "resetting")
    assert device.events == [
        (ResetRequested("cli"), True),
        (PollNowRequested("cli"), True),
        (ResetRequested("cloud"), False),
    ]
    assert await table.call("wifi", {"network": WifiNetwork("n")}, "lan") == {"tool": "nmcli"}
