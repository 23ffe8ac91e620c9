"""Test vectors of the wire formats (docs/design.md §2.12, §3.1), made by the real code.

`python -m cloud_mock.conformance.vectors --write docs/api/vectors.json` writes them;
without `--write` they go to standard output. tests/contract/test_vectors.py checks that
the file is what this makes now, and recomputes each vector independently.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.errors import WireError
from agent.nvr.activation_code import check_character, format_code, parse
from agent.provisioning.wire import (
    KDF_SALT_PREFIX,
    derive_key,
    normalize_device_id,
    poll_proof,
    unseal_token,
)
from agent.token_codec import b64url_encode, sign_token, split_token

PASSWORD = "Label-Pass 42 ü"  # not ASCII on purpose: UTF-8 is part of the contract
DEVICE_ID = "02:77:31:d1:af:ae"
TS = 1_700_000_000
NONCE = base64.b64encode(bytes(range(16))).decode()
SEAL_NONCE = bytes(range(100, 112))
SIGNING_SEED = hashlib.sha256(b"camagent test vector signing key (public, never trust it)").digest()
TOKEN_PAYLOAD: dict[str, Any] = {
    "v": 1,
    "sub": DEVICE_ID,
    "kind": "camera",
    "org": "demo",
    "api": "https://cloud.example.com",
    "iat": TS,
    "jti": "0123456789abcdef0123456789abcdef",
    "cid": "fedcba9876543210fedcba9876543210",
}
CODE_BODIES = ["ABCDEFGHJK1", "00000000000", "ZZZZZZZZZZZ", "7Q2MXR5HNDT"]
ID_SPELLINGS = [
    "02:77:31:d1:af:ae",
    "02-77-31-D1-AF-AE",
    "027731D1AFAE",
    "cam-lobby-01",
    "02:AA:BB:CC:DD:O7",
    "02:aa:bb:cc:dd:0g",
    "02:ca:fe:00:00:01:",
    "02ca.fe00.0001",
    "aa:bb:cc:dd:ee",
]


def _id_vector(raw: str) -> dict[str, Any]:
    try:
        return {"input": raw, "canonical": normalize_device_id(raw)}
    except WireError:
        return {"input": raw, "canonical": None}


def vectors() -> dict[str, Any]:
    key = derive_key(PASSWORD, DEVICE_ID)
    message = f"{DEVICE_ID}\n{TS}\n{NONCE}".encode()
    private = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    token = sign_token(TOKEN_PAYLOAD, private)
    payload, signature = split_token(token)
    sealed = base64.b64encode(
        SEAL_NONCE + AESGCM(key).encrypt(SEAL_NONCE, token.encode(), DEVICE_ID.encode())
    ).decode()
    assert unseal_token(key, DEVICE_ID, sealed) == token  # the real code opens it
    return {
        "about": (
            "Test vectors of docs/design.md §2.12 and §3.1, made by "
            "`python -m cloud_mock.conformance.vectors --write docs/api/vectors.json`. "
            "Byte strings are hex unless a field says base64; text is UTF-8. The signing "
            "key is a published test key: never trust it."
        ),
        "device_ids": [_id_vector(raw) for raw in ID_SPELLINGS],
        "key_derivation": {
            "password": PASSWORD,
            "device_id": DEVICE_ID,
            "salt_hex": (KDF_SALT_PREFIX + DEVICE_ID.encode()).hex(),
            "scrypt": {"n": 2**14, "r": 8, "p": 1, "length": 32},
            "key_hex": key.hex(),
        },
        "poll_proof": {
            "key_hex": key.hex(),
            "device_id": DEVICE_ID,
            "ts": TS,
            "nonce": NONCE,
            "message_hex": message.hex(),
            "proof": poll_proof(key, DEVICE_ID, TS, NONCE),
        },
        "token_signature": {
            "private_key_seed_hex": SIGNING_SEED.hex(),
            "public_key_hex": public.hex(),
            "payload": TOKEN_PAYLOAD,
            "signing_input_hex": payload.hex(),
            "payload_b64url": b64url_encode(payload),
            "signature_hex": signature.hex(),
            "token": token,
        },
        "sealed_token": {
            "key_hex": key.hex(),
            "aad": DEVICE_ID,
            "nonce_hex": SEAL_NONCE.hex(),
            "sealed_token": sealed,
            "plaintext": token,
        },
        "activation_codes": [
            {
                "body": body,
                "check_character": check_character(body),
                "code": parse(format_code(body + check_character(body))),
            }
            for body in CODE_BODIES
        ],
    }


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, help="write the vectors to this file")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
