"""Real signed tokens for the agent's tests, accepted through the real gate.

A camera takes a token from outside its poll (CLI, LAN, QR card, the cloud's `set_token`)
only sealed under its K (docs/design.md §2.9): `sealed(token)` is that form, for the label
password `LABEL_PASSWORD` unless told otherwise.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.config import CloudConfig, Config, DeviceConfig
from agent.provisioning.wire import derive_key, seal_token
from agent.token_codec import sign_token
from agent.trust import TokenGate, TokenSource, VerifiedToken

DEVICE = "aa:bb:cc:dd:ee:ff"
CLOUD = "https://cloud.example.com"
KEY = Ed25519PrivateKey.generate()
LABEL_PASSWORD = "the-password-on-the-label"


def public_pem(key: Ed25519PrivateKey = KEY) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def payload(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": 1,
        "sub": DEVICE,
        "kind": "camera",
        "org": "demo",
        "api": CLOUD,
        "iat": 1_700_000_000,
        "jti": "tok-1",
    }
    data.update(changes)
    return data


def signed(key: Ed25519PrivateKey = KEY, /, **changes: Any) -> str:
    return sign_token(payload(**changes), key)


@functools.cache
def label_key(password: str = LABEL_PASSWORD, device_id: str = DEVICE) -> bytes:
    """K of the wire format (scrypt: slow on purpose, so derived once per password)."""
    return derive_key(password, device_id)


def sealed(token: str, password: str = LABEL_PASSWORD, device_id: str = DEVICE) -> str:
    """`token` sealed under the K of `password`, as the cloud's `sealed_token` is."""
    return seal_token(label_key(password, device_id), device_id, token)


def gate(kind: str = "camera", cloud: str = CLOUD, password: str = LABEL_PASSWORD) -> TokenGate:
    """The gate of a device whose label password is `password`."""
    # A password file that exists (this file): the gate asks only whether the device has
    # a label password at all; K itself comes from `label_key`.
    config = Config(
        device=DeviceConfig(id=DEVICE, kind=kind, password_file=__file__),
        cloud=CloudConfig(url=cloud),
    )
    return TokenGate(config, DEVICE, [public_pem()], label_key=lambda: label_key(password))


def verified(source: TokenSource = "poll", kind: str = "camera", **changes: Any) -> VerifiedToken:
    """A VerifiedToken from `source`, made by the gate's checks of a plain token."""
    return gate(kind).check(signed(kind=kind, **changes), source)


def write_public_key(directory: Path, key: Ed25519PrivateKey = KEY) -> Path:
    path = directory / "cloud-key.pem"
    path.write_text(public_pem(key))
    return path
