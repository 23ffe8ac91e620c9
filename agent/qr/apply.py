"""Applying what a QR card says, from the CLI (`qr scan --apply`): WiFi first (a camera
without network needs it to reach the cloud), then the token — verified like any token,
by the daemon when it runs, else under the state lock."""

from __future__ import annotations

from agent import control_socket, wifi
from agent.config import Config
from agent.errors import CamagentError, DaemonUnavailable, QrPayloadError
from agent.qr.payloads import Payload


def apply_payload(config: Config, payload: Payload) -> list[str]:
    """Carry out a wifi/token/combined payload; return what was done, for people."""
    if payload.type not in ("wifi", "token", "combined"):
        raise QrPayloadError(f"a {payload.type} code is shown, never applied")
    done = []
    if payload.wifi is not None:
        applied = wifi.apply(payload.wifi)
        done.append(f"joined WiFi {payload.wifi.ssid!r} ({applied.tool})")
        done.append(_new_link(config))
    if payload.token:
        try:
            control_socket.request(config.control_socket, "token_set", {"token": payload.token})
            done.append("token accepted by the daemon")
        except DaemonUnavailable:
            from agent import offline

            offline.set_token(config, payload.token)
            done.append("token stored; the daemon connects with it when it starts")
    return done


def _new_link(config: Config) -> str:
    """A new network link restarts the fast provisioning phase (DESIGN §2)."""
    try:
        control_socket.request(config.control_socket, "poll_now")
    except DaemonUnavailable:
        return "no daemon running: it polls when it starts"
    except CamagentError as exc:  # e.g. the device holds a token: no polls, by design
        return f"no poll: {exc}"
    return "provisioning fast phase restarted"
