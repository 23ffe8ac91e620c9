"""docs/api/vectors.json both ways: it is what the real code makes now, and each vector
recomputes from the documents alone (hashlib, hmac and cryptography; no agent helpers)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud_mock.conformance.vectors import render

FILE = Path(__file__).resolve().parents[2] / "docs" / "api" / "vectors.json"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FILE.read_text(encoding="utf-8"))
    return data


def test_the_file_is_what_the_generator_makes_now() -> None:
    assert FILE.read_text(encoding="utf-8") == render(), (
        "regenerate: python -m cloud_mock.conformance.vectors --write docs/api/vectors.json"
    )


def test_key_derivation_recomputes(doc: dict[str, Any]) -> None:
    v = doc["key_derivation"]
    salt = b"camagent-provisioning-v1|" + v["device_id"].encode("utf-8")
    assert salt.hex() == v["salt_hex"]
    key = hashlib.scrypt(
        v["password"].encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32, maxmem=2**26
    )
    assert key.hex() == v["key_hex"]


def test_poll_proof_recomputes(doc: dict[str, Any]) -> None:
    v = doc["poll_proof"]
    message = f"{v['device_id']}\n{v['ts']}\n{v['nonce']}".encode()
    assert message.hex() == v["message_hex"]
    assert len(base64.b64decode(v["nonce"], validate=True)) == 16
    digest = hmac.new(bytes.fromhex(v["key_hex"]), message, hashlib.sha256).digest()
    assert base64.b64encode(digest).decode() == v["proof"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_token_signature_recomputes(doc: dict[str, Any]) -> None:
    v = doc["token_signature"]
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["private_key_seed_hex"]))
    public = private.public_key()
    assert public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == v["public_key_hex"]
    signing_input = bytes.fromhex(v["signing_input_hex"])
    assert json.loads(signing_input) == v["payload"]
    assert "kid" not in v["payload"]
    signature = bytes.fromhex(v["signature_hex"])
    public.verify(signature, signing_input)  # over the JSON bytes, not their base64url
    assert private.sign(signing_input) == signature  # Ed25519 is deterministic
    assert v["token"] == _b64url(signing_input) + "." + _b64url(signature)
    assert v["payload_b64url"] == _b64url(signing_input)


def test_sealed_token_recomputes(doc: dict[str, Any]) -> None:
    v = doc["sealed_token"]
    blob = base64.b64decode(v["sealed_token"], validate=True)
    nonce, rest = blob[:12], blob[12:]
    assert nonce.hex() == v["nonce_hex"]
    assert len(rest) == len(v["plaintext"].encode()) + 16  # ciphertext, then the tag
    aead = AESGCM(bytes.fromhex(v["key_hex"]))
    assert aead.decrypt(nonce, rest, v["aad"].encode()).decode() == v["plaintext"]
    resealed = nonce + aead.encrypt(nonce, v["plaintext"].encode(), v["aad"].encode())
    assert base64.b64encode(resealed).decode() == v["sealed_token"]


ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _times2(r: int) -> int:
    r <<= 1
    return r ^ 0b100101 if r & 0b100000 else r


def test_activation_check_characters_recompute(doc: dict[str, Any]) -> None:
    for v in doc["activation_codes"]:
        r = 0
        for c in v["body"]:
            r = _times2(r) ^ ALPHABET.index(c)
        check = ALPHABET[_times2(r)]
        assert check == v["check_character"]
        compact = v["body"] + check
        assert v["code"] == "-".join(compact[i : i + 4] for i in range(0, 12, 4))
        r = 0
        for c in compact:
            r = _times2(r) ^ ALPHABET.index(c)
        assert r == 0


def test_device_id_vectors_follow_the_grammar(doc: dict[str, Any]) -> None:
    import re

    mac = re.compile(r"^[0-9a-f]{2}([:-]?)(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}$", re.I)
    for v in doc["device_ids"]:
        if mac.match(v["input"]):
            hexdigits = re.sub("[:-]", "", v["input"]).lower()
            assert v["canonical"] == ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))
        elif v["canonical"] is not None:
            assert v["canonical"] == v["input"]
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9:._@-]{0,127}", v["input"])
