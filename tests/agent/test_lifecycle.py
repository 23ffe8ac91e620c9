"""The device state machine: every row of the table, and the invariants of docs/design.md §2."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.lifecycle import (
    ChannelLost,
    ChannelOpened,
    Connect,
    DeviceState,
    Disconnect,
    ForgetToken,
    PollNowRequested,
    ResetRequested,
    SaveToken,
    Started,
    StartPolling,
    StopPolling,
    TokenAccepted,
    TokenRevoked,
    Transition,
    transition,
)
from tests.agent.tokens import verified
from tests.examples import examples

S = DeviceState
TOKEN = verified("poll")
FORCED = verified("cli")
START, STOP, CONNECT, DISCONNECT = StartPolling(), StopPolling(), Connect(), Disconnect()
HOLDS_TOKEN = [S.CONNECTING, S.CONNECTED, S.DISCONNECTED]
NO_TOKEN = [S.PROVISIONING, S.AWAITING_ACTIVATION]
ALL_STATES = list(DeviceState)

EVENTS = [
    Started(has_token=True),
    Started(has_token=False),
    TokenAccepted(TOKEN),
    TokenAccepted(FORCED),
    ResetRequested("cli"),
    TokenRevoked(),
    ChannelOpened(),
    ChannelLost("network down"),
    PollNowRequested("lan"),
]


# -- start -------------------------------------------------------------------------------


def test_start_with_a_token_connects_and_never_polls() -> None:
    assert transition(None, Started(has_token=True)) == Transition(S.CONNECTING, (CONNECT,))


def test_start_without_a_token_polls() -> None:
    assert transition(None, Started(has_token=False)) == Transition(S.PROVISIONING, (START,))


# -- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["poll", "cli", "lan", "qr", "cloud", "registration"])
def test_token_while_provisioning_stops_polling_saves_and_connects(source: str) -> None:
    token = verified(source)  # type: ignore[arg-type]
    assert transition(S.PROVISIONING, TokenAccepted(token)) == Transition(
        S.CONNECTING, (STOP, SaveToken(token), CONNECT)
    )


@pytest.mark.parametrize("state", HOLDS_TOKEN)
def test_forced_change_while_holding_a_token_replaces_it_without_polling(
    state: DeviceState,
) -> None:
    result = transition(state, TokenAccepted(FORCED))
    assert result == Transition(S.CONNECTING, (SaveToken(FORCED), DISCONNECT, CONNECT))
    assert START not in result.actions


# -- reset and revocation ----------------------------------------------------------------


@pytest.mark.parametrize("state", [*ALL_STATES, None])
@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (ResetRequested("cli"), "reset from cli"),
        (ResetRequested("lan"), "reset from lan"),
        (TokenRevoked(), "revoked by the cloud"),
    ],
)
def test_reset_or_revocation_from_any_state_provisions_again(
    state: DeviceState | None, event: object, reason: str
) -> None:
    assert transition(state, event) == Transition(  # type: ignore[arg-type]
        S.PROVISIONING, (DISCONNECT, ForgetToken(reason), START)
    )


# -- poll now ----------------------------------------------------------------------------


def test_poll_now_while_provisioning_restarts_the_schedule() -> None:
    assert transition(S.PROVISIONING, PollNowRequested("cli")) == Transition(
        S.PROVISIONING, (START,)
    )


@pytest.mark.parametrize("state", HOLDS_TOKEN)
def test_poll_now_while_holding_a_token_does_nothing(state: DeviceState) -> None:
    assert transition(state, PollNowRequested("link")) == Transition(state, ())


# -- the NVR: awaiting activation instead of provisioning ----------------------------------


def test_an_nvr_without_a_token_awaits_activation() -> None:
    assert transition(None, Started(has_token=False), kind="nvr") == Transition(
        S.AWAITING_ACTIVATION, (START,)
    )


def test_an_activated_nvr_connects() -> None:
    token = verified("poll", kind="nvr")
    assert transition(S.AWAITING_ACTIVATION, TokenAccepted(token), kind="nvr") == (
        Transition(S.CONNECTING, (STOP, SaveToken(token), CONNECT))
    )


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("event", [ResetRequested("cli"), TokenRevoked()])
def test_a_reset_nvr_awaits_activation_again(state: DeviceState, event: object) -> None:
    result = transition(state, event, kind="nvr")  # type: ignore[arg-type]
    assert result.state is S.AWAITING_ACTIVATION
    assert result.actions[0] == DISCONNECT
    assert isinstance(result.actions[1], ForgetToken)
    assert result.actions[2] == START


def test_poll_now_while_awaiting_activation_restarts_the_schedule() -> None:
    assert transition(S.AWAITING_ACTIVATION, PollNowRequested("cli"), kind="nvr") == Transition(
        S.AWAITING_ACTIVATION, (START,)
    )


# -- the control channel -----------------------------------------------------------------


@pytest.mark.parametrize("state", HOLDS_TOKEN)
def test_channel_opened_means_connected(state: DeviceState) -> None:
    assert transition(state, ChannelOpened()) == Transition(S.CONNECTED, ())


@pytest.mark.parametrize("state", HOLDS_TOKEN)
def test_channel_lost_means_disconnected(state: DeviceState) -> None:
    assert transition(state, ChannelLost("eof")) == Transition(S.DISCONNECTED, ())


@pytest.mark.parametrize("state", NO_TOKEN)
@pytest.mark.parametrize("event", [ChannelOpened(), ChannelLost("late")])
def test_channel_events_without_a_token_change_nothing(state: DeviceState, event: object) -> None:
    # e.g. a channel that closes after a reset already moved the device to provisioning
    assert transition(state, event) == Transition(state, ())  # type: ignore[arg-type]


# -- invariants --------------------------------------------------------------------------


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("event", EVENTS)
def test_start_polling_only_ever_leads_to_provisioning(state: DeviceState, event: object) -> None:
    result = transition(state, event)  # type: ignore[arg-type]
    if START in result.actions:
        assert result.state in (S.PROVISIONING, S.AWAITING_ACTIVATION)
    if CONNECT in result.actions:
        assert result.state is S.CONNECTING
    if result.state in HOLDS_TOKEN and state is S.PROVISIONING and not isinstance(event, Started):
        assert STOP in result.actions  # leaving provisioning always stops the polls
    assert len({type(a) for a in result.actions}) == len(result.actions)


event_strategy = st.sampled_from(EVENTS)


@settings(max_examples=examples(300), deadline=None)
@given(has_token=st.booleans(), events=st.lists(event_strategy, max_size=30))
def test_any_event_sequence_keeps_polls_and_token_consistent(
    has_token: bool, events: list[object]
) -> None:
    """Carry out the actions like the daemon would: polling <=> provisioning <=> no token."""
    result = transition(None, Started(has_token=has_token))
    state = result.state
    polling = START in result.actions
    token = has_token
    connected_attempt = CONNECT in result.actions
    for event in events:
        if isinstance(event, Started):
            continue  # only ever the first event
        result = transition(state, event)  # type: ignore[arg-type]
        if START in result.actions:
            assert result.state is S.PROVISIONING
        for action in result.actions:
            match action:
                case StartPolling():
                    polling = True
                case StopPolling():
                    polling = False
                case SaveToken():
                    token = True
                case ForgetToken():
                    token = False
                case Connect():
                    connected_attempt = True
                case Disconnect():
                    connected_attempt = False
        state = result.state
        assert polling == (state is S.PROVISIONING)
        assert token == (state in HOLDS_TOKEN)
        assert connected_attempt == (state in HOLDS_TOKEN)
        assert state is not S.AWAITING_ACTIVATION  # only the NVR flow goes there
