"""The records of the registrators aggregate (`store.registrators`): virtual NVRs, what
linking one records, the activation codes NVRs register, and registration tokens, with
`Conflict`, which its compare-and-set changes raise.

Frozen dataclasses made from the tables' rows (`db.from_row`; columns only the store
reads, such as a waiting token, stay out); a link keeps only `secret_hash_of` the NVR's
secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


class Conflict(Exception):
    """A guarded change lost a race: what it relied on changed (the message says what)."""


@dataclass(frozen=True)
class Registrator:
    """A virtual NVR of an org; `device_id` and the rest of the link are None until linked."""

    id: str
    org: str
    name: str
    note: str
    device: str  # "virtual" | "network"
    created: float
    broadcast: dict[str, Any]
    archive: dict[str, Any]
    cameras: list[dict[str, str]] = field(default_factory=list)
    pending_configure: bool = False
    device_id: str | None = None
    device_name: str = ""
    version: str = ""
    checks: list[dict[str, str]] = field(default_factory=list)
    token_jti: str | None = None
    linked_at: float | None = None
    hello_at: float | None = None
    last_seen: float | None = None
    # SHA-256 of the secret of the NVR that made the link (None: linked before secrets
    # were recorded).
    secret_hash: bytes | None = None
    # Why it is unlinked, when its NVR was linked anew to another registrator ("" else).
    let_go: str = ""


def secret_hash_of(secret: bytes) -> bytes:
    """What a link keeps of an NVR's secret."""
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True)
class Link:
    """What linking an NVR to a registrator records."""

    device_id: str
    device_name: str
    version: str
    checks: list[dict[str, str]]
    token_jti: str
    linked_at: float
    secret_hash: bytes


@dataclass(frozen=True)
class Activation:
    """An activation code an NVR registered, with its secret and device-side checks."""

    code: str
    device_id: str
    secret: bytes
    name: str
    version: str
    checks: list[dict[str, str]]
    created: float
    expires_at: float
    activated_at: float | None = None
    registrator_id: str | None = None
    client: str = ""  # the address (an IPv6 one as its /64) that registered it


@dataclass(frozen=True)
class RegistrationToken:
    id: str
    org: str
    created_by: str
    title: str
    note: str
    created: float
    expires_at: float
    used_at: float | None = None
    registrator_id: str | None = None
