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


class DeviceState(Enum):
    PROVISIONING = "provisioning"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AWAITING_ACTIVATION = "awaiting_activation"


class Action(Enum):
    START_POLLING = "start_polling"  # (re)start the schedule from its first step
    STOP_POLLING = "stop_polling"
    SAVE_TOKEN = "save_token"
    FORGET_TOKEN = "forget_token"
    CONNECT = "connect"
    DISCONNECT = "disconnect"


# Events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    has_token: bool


@dataclass(frozen=True)
class TokenAccepted:
    """A verified token arrived: from a poll, or forced (CLI, LAN, cloud `set_token`)."""

    token: str
    source: str


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


def transition(state: DeviceState | None, event: Event, *, kind: str = "camera") -> Transition:
    """The whole behaviour of the device in one table-like function."""
    match event:
        case Started(has_token=True):
            return Transition(DeviceState.CONNECTING, (Action.CONNECT,))
        case Started(has_token=False):
            return Transition(unlinked_state(kind), (Action.START_POLLING,))
        case TokenAccepted():
            if state in UNLINKED:
                return Transition(
                    DeviceState.CONNECTING,
                    (Action.STOP_POLLING, Action.SAVE_TOKEN, Action.CONNECT),
                )
            # Forced change while holding a token: replace it and reconnect with it.
            return Transition(
                DeviceState.CONNECTING, (Action.SAVE_TOKEN, Action.DISCONNECT, Action.CONNECT)
            )
        case ResetRequested() | TokenRevoked():
            return Transition(
                unlinked_state(kind),
                (Action.DISCONNECT, Action.FORGET_TOKEN, Action.START_POLLING),
            )
        case ChannelOpened():
            if state in _HOLDS_TOKEN:
                return Transition(DeviceState.CONNECTED)
        case ChannelLost():
            if state in _HOLDS_TOKEN:
                return Transition(DeviceState.DISCONNECTED)
        case PollNowRequested():
            if state in UNLINKED:
                return Transition(state, (Action.START_POLLING,))
    # Anything else changes nothing: e.g. poll-now while holding a token (no polls, ever).
    assert state is not None, f"{event!r} before Started"
    return Transition(state)
