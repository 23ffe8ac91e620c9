"""Real signed tokens for the agent's tests, accepted through the real gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.config import CloudConfig, Config, DeviceConfig
from agent.token_codec import sign_token
from agent.trust import TokenGate, TokenSource, VerifiedToken

DEVICE = "aa:bb:cc:dd:ee:ff"
CLOUD = "https://cloud.example.com"
KEY = Ed25519PrivateKey.generate()


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


def signed(key: Ed25519PrivateKey = KEY, **changes: Any) -> str:
    return sign_token(payload(**changes), key)


def gate(kind: str = "camera", cloud: str = CLOUD) -> TokenGate:
    config = Config(device=DeviceConfig(id=DEVICE, kind=kind), cloud=CloudConfig(url=cloud))
    return TokenGate(config, DEVICE, [public_pem()])


def verified(source: TokenSource = "poll", kind: str = "camera", **changes: Any) -> VerifiedToken:
    return gate(kind).accept(signed(kind=kind, **changes), source)


def write_public_key(directory: Path, key: Ed25519PrivateKey = KEY) -> Path:
    path = directory / "cloud-key.pem"
    path.write_text(public_pem(key))
    return path
