"""Linking an NVR to an organization (docs/design.md §3): activation codes and registration tokens.

With a code, the NVR registers `(code, secret, check results)` with the cloud and then
polls exactly like a camera, its key being the secret: only the NVR that registered the
code can collect the token it unlocks. Codes live 24 h; the NVR renews them before that.
A registration token goes with the same secret: the cloud keeps its hash with the link,
and a later link of this device ID in that organization must show it again.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import CamagentError, WireError
from agent.nvr import activation_code

if TYPE_CHECKING:
    import aiohttp

    from agent.checks import Check

log = logging.getLogger(__name__)

ACTIVATIONS_PATH = "/v1/nvr/activations"
REGISTER_PATH = "/v1/nvr/register"
# Renew a code this long before it expires (at most an hour, at most a tenth of its life).
RENEW_MARGIN_MAX_S = 3600.0
RENEW_MARGIN_FRACTION = 0.1
CODE_ATTEMPTS = 3  # a fresh code collides with a live one about never; retry anyway
MAX_ANSWER = 64 * 1024
DATE_RESOLUTION_S = 1.0
# What the cloud accepts of the checks (docs/api/openapi.yaml, Checks): the payload keeps
# within it rather than be refused.
MAX_CHECKS = 20
MAX_CHECK_TEXT = 1024
MAX_CHECKS_BYTES = 4 * 1024


class RegistrationError(CamagentError):
    """The cloud refused a registration; the message is the cloud's reason."""


@dataclass(frozen=True)
class Activation:
    code: str
    secret: str  # base64 of 32 random bytes, never shown
    expires_at: float  # local wall clock
    lifetime: float  # seconds the cloud gave the code
    activation_url: str

    def renew_at(self) -> float:
        return self.expires_at - min(RENEW_MARGIN_MAX_S, RENEW_MARGIN_FRACTION * self.lifetime)

    def needs_renewal(self, now: float) -> bool:
        return now >= self.renew_at()

    def key(self) -> bytes:
        return base64.b64decode(self.secret)

    def public(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "expires_at": self.expires_at,
            "activation_url": self.activation_url,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Activation:
        return cls(
            code=str(data["code"]),
            secret=str(data["secret"]),
            expires_at=float(data["expires_at"]),
            lifetime=float(data["lifetime"]),
            activation_url=str(data["activation_url"]),
        )


def new_secret() -> str:
    """An NVR's secret: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(32)).decode()


def device_payload(device_id: str, name: str, version: str, checks: list[Check]) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "name": name[:128],
        "version": version[:128],
        "checks": bounded_checks([c.to_json() for c in checks]),
    }


def bounded_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks within the cloud's bounds: at most `MAX_CHECKS`, texts cut short, and
    shorter still (then checks left out from the end) while the whole is too large."""
    for limit in (MAX_CHECK_TEXT, 256, 64):
        kept = [_clipped(check, limit) for check in checks[:MAX_CHECKS]]
        if len(json.dumps(kept)) <= MAX_CHECKS_BYTES:
            return kept
    while kept and len(json.dumps(kept)) > MAX_CHECKS_BYTES:
        kept.pop()
    return kept


def _clipped(check: dict[str, Any], limit: int) -> dict[str, Any]:
    texts = {
        key: _clip(check[key], 128 if key == "name" else limit)
        for key in ("name", "detail", "fix")
        if isinstance(check.get(key), str)
    }
    return {**check, **texts}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def register_code(
    session: aiohttp.ClientSession,
    cloud_url: str,
    payload: dict[str, Any],
    secret: str | None = None,
    now: Callable[[], float] = time.time,
) -> Activation:
    """Register a fresh code; return what the NVR shows and polls with.

    A renewal keeps the secret: a code shown earlier may still be entered in the cloud,
    and the token it unlocks is sealed under the secret that code was registered with.
    """
    secret = secret or new_secret()
    for _ in range(CODE_ATTEMPTS):
        code = activation_code.generate()
        status, answer, cloud_now = await _post(
            session, cloud_url + ACTIVATIONS_PATH, {**payload, "code": code, "secret": secret}
        )
        if status == 409:
            continue
        if status != 201:
            raise RegistrationError(
                f"the cloud refused the activation code: {_reason(answer, status)}"
            )
        try:
            expires = float(answer["expires_at"])
            url = str(answer["activation_url"])
        except (KeyError, TypeError, ValueError):
            raise WireError("the cloud's answer to the activation code is malformed") from None
        # The Date header counts whole seconds: assume the code has one second less.
        lifetime = max(0.0, expires - (cloud_now or now()) - DATE_RESOLUTION_S)
        return Activation(code, secret, now() + lifetime, lifetime, url)
    raise RegistrationError("the cloud refused every activation code offered (all in use?)")


async def register_with_token(
    session: aiohttp.ClientSession,
    cloud_url: str,
    token: str,
    payload: dict[str, Any],
    secret: str,
) -> str:
    """Cloud Registration with a registration token and the NVR's secret (the one its
    codes carry); return the device token (unverified)."""
    body = {**payload, "token": token, "secret": secret}
    status, answer, _ = await _post(session, cloud_url + REGISTER_PATH, body)
    if status != 201:
        raise RegistrationError(
            f"the cloud refused the registration token: {_reason(answer, status)}"
        )
    device_token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(device_token, str):
        raise WireError("the cloud's answer to the registration has no token")
    return device_token


async def _post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, Any, float | None]:
    """POST JSON; return (status, decoded answer or None, the cloud's clock if it said)."""
    import aiohttp

    from agent.provisioning.client import read_bounded

    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=20)) as resp:
            raw = await read_bounded(resp, MAX_ANSWER)
            date = resp.headers.get("Date")
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise RegistrationError(
            f"cannot reach the cloud at {url}: {exc or type(exc).__name__}"
        ) from None
    try:
        answer = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        answer = None
    cloud_now = None
    if date:
        try:
            cloud_now = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            cloud_now = None
    return status, answer, cloud_now


def _reason(answer: Any, status: int) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        return f"{answer['message']} (HTTP {status})"  # a coded error: its text
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return f"{answer['error']} (HTTP {status})"
    return f"HTTP {status}"
