"""Applying what a QR card says, from the CLI (`qr scan --apply`): WiFi first (a camera
without network needs it to reach the cloud), then the token — verified like any token,
by the daemon when it runs, else under the state lock. Each part succeeds or fails on
its own and says so."""

from __future__ import annotations

from dataclasses import dataclass

from agent import control_socket, wifi
from agent.config import Config
from agent.errors import CamagentError, DaemonUnavailable, QrPayloadError
from agent.qr.payloads import APPLICABLE, Payload


@dataclass(frozen=True)
class Step:
    """One part of a card carried out, or not: a person reads `message`."""

    part: str  # "wifi" | "token"
    ok: bool
    message: str


def apply_payload(config: Config, payload: Payload) -> list[Step]:
    """Carry out each part of a wifi/token/combined card on its own: a WiFi that cannot
    be joined (no radio here, a wrong password) does not keep a good token from being
    used, and each part's outcome is reported."""
    if payload.type not in APPLICABLE:
        raise QrPayloadError(f"a {payload.type} code is shown, never applied")
    steps = []
    if payload.wifi is not None:
        try:
            applied = wifi.apply(payload.wifi)
        except CamagentError as exc:
            steps.append(Step("wifi", False, f"WiFi {payload.wifi.ssid!r} not joined: {exc}"))
        else:
            note = _new_link(config)
            steps.append(
                Step("wifi", True, f"joined WiFi {payload.wifi.ssid!r} ({applied.tool}); {note}")
            )
    if payload.token:
        steps.append(_use_token(config, payload.token))
    return steps


def _use_token(config: Config, token: str) -> Step:
    try:
        control_socket.request(config.control_socket, "token_set", {"token": token})
        return Step("token", True, "token accepted by the daemon")
    except DaemonUnavailable:
        pass
    except CamagentError as exc:
        return Step("token", False, f"token not used: {exc}")
    from agent import offline

    try:
        offline.set_token(config, token)
    except CamagentError as exc:
        return Step("token", False, f"token not used: {exc}")
    return Step("token", True, "token stored; the daemon connects with it when it starts")


def _new_link(config: Config) -> str:
    """A new network link restarts the fast provisioning phase (docs/design.md §2)."""
    try:
        control_socket.request(config.control_socket, "poll_now")
    except DaemonUnavailable:
        return "no daemon running: it polls when it starts"
    except CamagentError as exc:  # e.g. the device holds a token: no polls, by design
        return f"no poll: {exc}"
    return "provisioning fast phase restarted"
