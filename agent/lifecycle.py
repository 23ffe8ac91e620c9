"""The device state machine, pure: (state, event) -> (state, actions).

The daemon feeds it events from the network, the CLI, the LAN and timers, and carries
out the actions it returns. A device without a token is PROVISIONING (a camera) or
AWAITING_ACTIVATION (an NVR: it polls the same way, with its activation code's secret).
Polling is only ever started from those two states, which is how "a device holding a
token makes no provisioning request" is guaranteed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.trust import VerifiedToken


class DeviceState(Enum):
    PROVISIONING = "provisioning"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AWAITING_ACTIVATION = "awaiting_activation"


# Actions: what the daemon carries out, each with the data it needs -----------------------


@dataclass(frozen=True)
class StartPolling:
    """(Re)start the schedule from its first step."""


@dataclass(frozen=True)
class StopPolling:
    pass


@dataclass(frozen=True)
class SaveToken:
    token: VerifiedToken


@dataclass(frozen=True)
class ForgetToken:
    reason: str  # for the journal: "reset from cli", "revoked by the cloud"


@dataclass(frozen=True)
class Connect:
    pass


@dataclass(frozen=True)
class Disconnect:
    pass


Action = StartPolling | StopPolling | SaveToken | ForgetToken | Connect | Disconnect


# Events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    has_token: bool


@dataclass(frozen=True)
class TokenAccepted:
    """A verified token arrived: from a poll, or forced (CLI, LAN, cloud `set_token`)."""

    token: VerifiedToken


@dataclass(frozen=True)
class ResetRequested:
    source: str


@dataclass(frozen=True)
class TokenRevoked:
    """The cloud closed the control channel with 4401."""


@dataclass(frozen=True)
class ChannelOpened:
    pass


@dataclass(frozen=True)
class ChannelLost:
    reason: str


@dataclass(frozen=True)
class PollNowRequested:
    """`poll-now` from the CLI or the LAN, or a new network link."""

    source: str


Event = (
    Started
    | TokenAccepted
    | ResetRequested
    | TokenRevoked
    | ChannelOpened
    | ChannelLost
    | PollNowRequested
)


@dataclass(frozen=True)
class Transition:
    state: DeviceState
    actions: tuple[Action, ...] = ()


_HOLDS_TOKEN = frozenset({DeviceState.CONNECTING, DeviceState.CONNECTED, DeviceState.DISCONNECTED})
UNLINKED = frozenset({DeviceState.PROVISIONING, DeviceState.AWAITING_ACTIVATION})


def unlinked_state(kind: str) -> DeviceState:
    return DeviceState.AWAITING_ACTIVATION if kind == "nvr" else DeviceState.PROVISIONING


def _unlink(kind: str, reason: str) -> Transition:
    return Transition(unlinked_state(kind), (Disconnect(), ForgetToken(reason), StartPolling()))


def transition(state: DeviceState | None, event: Event, *, kind: str = "camera") -> Transition:
    """The whole behaviour of the device in one table-like function."""
    match event:
        case Started(has_token=True):
            return Transition(DeviceState.CONNECTING, (Connect(),))
        case Started(has_token=False):
            return Transition(unlinked_state(kind), (StartPolling(),))
        case TokenAccepted(token=token):
            if state in UNLINKED:
                return Transition(
                    DeviceState.CONNECTING, (StopPolling(), SaveToken(token), Connect())
                )
            # Forced change while holding a token: replace it and reconnect with it.
            return Transition(DeviceState.CONNECTING, (SaveToken(token), Disconnect(), Connect()))
        case ResetRequested(source=source):
            return _unlink(kind, f"reset from {source}")
        case TokenRevoked():
            return _unlink(kind, "revoked by the cloud")
        case ChannelOpened():
            if state in _HOLDS_TOKEN:
                return Transition(DeviceState.CONNECTED)
        case ChannelLost():
            if state in _HOLDS_TOKEN:
                return Transition(DeviceState.DISCONNECTED)
        case PollNowRequested():  # pragma: no branch (every event has its case above)
            if state in UNLINKED:
                return Transition(state, (StartPolling(),))
    # Anything else changes nothing: e.g. poll-now while holding a token (no polls, ever).
    assert state is not None, f"{event!r} before Started"
    return Transition(state)
