"""Fuzzing the token codec and the trust gate: any text in, claims or TokenError out.

Every path that brings a token (poll, LAN push, QR card, CLI, cloud command) ends in
TokenGate.accept → token_codec.verify_token, so these properties cover all of them; a
camera's paths outside the poll open a seal under its K first (docs/design.md §2.9).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import CloudConfig, Config, DeviceConfig
from agent.errors import TokenError
from agent.provisioning.wire import derive_key, seal_token
from agent.token_codec import (
    b64url_encode,
    parse_claims,
    sign_token,
    split_token,
    token_summary,
    verify_token,
)
from agent.trust import TokenGate, TokenSource
from tests.examples import examples
from tests.hardening.strategies import json_values, refusal

DEVICE = "aa:bb:cc:dd:ee:ff"
CLOUD = "https://cloud.example.com"
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
PUBLIC_PEM = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
LABEL_K = derive_key("the-password-on-the-label", DEVICE)
OTHER_K = derive_key("what-a-squatter-typed", DEVICE)

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
token_like = st.builds(
    lambda a, b: f"{a}.{b}", st.text(B64URL, max_size=120), st.text(B64URL, max_size=120)
)
any_token_text = st.one_of(
    st.text(max_size=300), token_like, st.text(B64URL + ". \n", max_size=200)
)


def good_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "v": 1,
        "sub": DEVICE,
        "kind": "camera",
        "org": "demo",
        "api": CLOUD,
        "iat": 1_700_000_000,
        "jti": "j-1",
    }
    payload.update(changes)
    return payload


def verify(token: str, key: Ed25519PrivateKey = KEY) -> Any:
    return verify_token(token, [key.public_key()], device_id=DEVICE, kind="camera", cloud_url=CLOUD)


@settings(max_examples=examples(400))
@given(any_token_text)
def test_any_text_is_claims_or_a_token_error(text: str) -> None:
    for fn in (split_token, parse_claims, verify):
        refusal(fn, text, allowed=TokenError)  # with a message for the person who pasted it
    assert isinstance(token_summary(text), dict)  # status never fails on a stored token


@settings(max_examples=examples(300))
@given(json_values, st.binary(max_size=80))
def test_any_json_payload_with_a_wrong_signature_is_refused(payload: Any, signature: bytes) -> None:
    body = json.dumps(payload).encode()
    token = b64url_encode(body) + "." + b64url_encode(signature or b"x")
    with pytest.raises(TokenError):
        verify(token)


claim_values = st.one_of(json_values, st.sampled_from([DEVICE, "camera", "nvr", CLOUD, 1]))


@settings(max_examples=examples(300))
@given(
    st.dictionaries(
        st.sampled_from(["v", "sub", "kind", "org", "api", "iat", "jti", "extra"]),
        claim_values,
        max_size=8,
    ),
    st.sampled_from([KEY, OTHER_KEY]),
)
def test_signed_junk_is_accepted_only_when_every_check_holds(
    changes: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    token = sign_token(good_payload(**changes), key)
    try:
        claims = verify(token)
    except TokenError:
        return
    assert key is KEY
    assert claims.sub == DEVICE
    assert claims.kind == "camera"
    assert claims.v == 1
    assert claims.api.lower().startswith("https://cloud.example.com")


@settings(max_examples=examples(300))
@given(st.data())
def test_changing_any_character_of_a_valid_token_breaks_it(data: st.DataObject) -> None:
    token = sign_token(good_payload(jti=data.draw(st.text(min_size=1, max_size=20))), KEY)
    assert verify(token).raw == token
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(B64URL + ".").filter(lambda c: c != token[position]))
    mutated = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(TokenError):
        verify(mutated)


@settings(max_examples=examples(100))
@given(st.text(B64URL, min_size=1, max_size=40))
def test_padding_or_whitespace_inside_is_not_a_token(part: str) -> None:
    padded = base64.urlsafe_b64encode(b"{}").decode()  # with '='
    for text in (f"{padded}.{part}", f"{part} .{part}", f"{part}.{part}.{part}"):
        with pytest.raises(TokenError):
            split_token(text)


def test_a_token_for_another_cloud_device_or_kind_is_refused(tmp_path: Path) -> None:
    """The trust gate as the daemon builds it: keys from [cloud] trust_keys."""
    pem = tmp_path / "key.pem"
    pem.write_bytes(KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    config = Config(
        device=DeviceConfig(id=DEVICE),
        cloud=CloudConfig(url=CLOUD, trust_keys=(str(pem),)),
    )
    gate = TokenGate(config, DEVICE, label_key=lambda: LABEL_K)
    # Sealed for this camera's label, as a camera takes a token by CLI: each refusal below
    # is for what the token says, not for how it came.
    assert gate.accept(sealed(sign_token(good_payload(), KEY)), "cli").claims.org == "demo"
    for changes, reason in (
        ({"api": "https://evil.example.com"}, "points to"),
        ({"api": "http://cloud.example.com"}, "points to"),
        ({"api": "https://cloud.example.com:8443"}, "points to"),
        ({"sub": "11:22:33:44:55:66"}, "not this device"),
        ({"kind": "nvr"}, "nvr"),
    ):
        with pytest.raises(TokenError, match=reason):
            gate.accept(sealed(sign_token(good_payload(**changes), KEY)), "cli")
    with pytest.raises(TokenError, match="signature"):
        gate.accept(sealed(sign_token(good_payload(), OTHER_KEY)), "cli")


def sealed(token: str, key: bytes | None = None) -> str:
    return seal_token(LABEL_K if key is None else key, DEVICE, token)


def _camera_gate() -> TokenGate:
    # A camera with a label password (a file that exists: K itself is LABEL_K).
    config = Config(
        device=DeviceConfig(id=DEVICE, password_file=__file__), cloud=CloudConfig(url=CLOUD)
    )
    return TokenGate(config, DEVICE, [PUBLIC_PEM], label_key=lambda: LABEL_K)


@settings(max_examples=examples(200))
@given(any_token_text, st.sampled_from(["cli", "lan", "qr", "cloud"]))
def test_outside_the_poll_a_camera_takes_nothing_but_a_seal_under_its_k(
    text: str, source: TokenSource
) -> None:
    """Any text, plain or sealed under another K, is refused with a reason; what a
    squatter's org gets from the cloud (a good token sealed under its own K) included."""
    gate = _camera_gate()
    for candidate in (
        text,
        sealed(text, OTHER_K),
        sealed(sign_token(good_payload(), KEY), OTHER_K),
    ):
        with pytest.raises(TokenError) as info:
            gate.accept(candidate, source)
        assert str(info.value), candidate
    # A real token in plain is refused for that reason alone; sealed right, it passes.
    good = sign_token(good_payload(jti=f"j-{len(text)}"), KEY)
    with pytest.raises(TokenError, match="only sealed"):
        gate.accept(good, source)
    assert gate.accept(sealed(good), source).raw == good


@settings(max_examples=examples(100))
@given(st.binary(max_size=300))
def test_a_seal_of_any_bytes_opens_to_a_verdict(blob: bytes) -> None:
    """Whatever is sealed under the right K, the gate answers with claims or TokenError."""
    gate = _camera_gate()
    text = blob.decode("utf-8", errors="replace")
    verdict: object
    try:
        verdict = gate.accept(sealed(text), "qr")
    except TokenError as exc:
        verdict = str(exc)
    assert verdict
