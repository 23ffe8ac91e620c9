"""Independent implementations of the wire format, for checking the mock against.

Deliberately *not* importing agent.provisioning.wire: if both sides shared a bug, a
test using the same code would not see it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_public_key

MAC = "aa:bb:cc:dd:ee:01"
PASSWORD = "label-password-1"


@functools.lru_cache(maxsize=64)
def key_for(password: str, device_id: str) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=b"camagent-provisioning-v1|" + device_id.encode(),
        n=2**14,
        r=8,
        p=1,
        dklen=32,
        maxmem=64 * 1024 * 1024,
    )


def poll_body(
    device_id: str,
    password: str,
    *,
    ts: int | None = None,
    wait: int = 0,
    nonce: str | None = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """A poll as a device sends it; `key` skips the (slow) derivation from `password`."""
    ts = int(time.time()) if ts is None else ts
    key = key if key is not None else key_for(password, device_id)
    nonce = nonce or base64.b64encode(os.urandom(16)).decode()
    message = f"{device_id}\n{ts}\n{nonce}".encode()
    proof = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    return {"device_id": device_id, "ts": ts, "nonce": nonce, "proof": proof, "wait": wait}


def unseal(sealed: str, password: str, device_id: str) -> str:
    blob = base64.b64decode(sealed, validate=True)
    return (
        AESGCM(key_for(password, device_id))
        .decrypt(blob[:12], blob[12:], device_id.encode())
        .decode()
    )


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_token(token: str, pub_pem_file: Path) -> dict[str, Any]:
    """Check the Ed25519 signature against the mock's published key; return claims."""
    key = load_pem_public_key(pub_pem_file.read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    payload_b64, signature_b64 = token.split(".")
    payload = _b64url(payload_b64)
    key.verify(_b64url(signature_b64), payload)  # raises InvalidSignature
    claims: dict[str, Any] = json.loads(payload)
    return claims


async def login(
    client: aiohttp.ClientSession,
    data_dir: Path,
    *,
    device: str = "pytest",
    login_name: str = "admin",
    password: str | None = None,
) -> dict[str, str]:
    """Log in; return the Authorization header for the new session."""
    if password is None:
        password = (data_dir / "admin-password").read_text().strip()
    async with client.post(
        "/v1/auth/login",
        json={
            "login": login_name,
            "password": password,
            "device": device,
            "software": "tests",
        },
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    return {"Authorization": f"Bearer {body['session']}"}


async def add_camera(
    client: aiohttp.ClientSession,
    auth: dict[str, str],
    device_id: str = MAC,
    password: str = PASSWORD,
    name: str = "cam",
) -> dict[str, Any]:
    async with client.post(
        "/v1/cameras",
        headers=auth,
        json={
            "device_id": device_id,
            "password": password,
            "name": name,
        },
    ) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
    return body
