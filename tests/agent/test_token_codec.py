"""Signed tokens (docs/design.md §2.12): Ed25519 over base64url(payload JSON), checked apart."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import TokenError
from agent.token_codec import (
    MAX_TOKEN_LEN,
    TokenClaims,
    load_public_key,
    origin,
    parse_claims,
    sign_token,
    token_summary,
    verify_token,
)
from tests.examples import examples

DEVICE = "aa:bb:cc:dd:ee:ff"
CLOUD = "https://cloud.example.com"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def payload(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": 1,
        "sub": DEVICE,
        "kind": "camera",
        "org": "demo",
        "api": CLOUD,
        "iat": 1_700_000_000,
        "jti": "tok-123",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hand_made_token(data: Any, key: Ed25519PrivateKey, raw: bytes | None = None) -> str:
    """A token built here, without the module: base64url(payload) '.' base64url(sig)."""
    body = raw if raw is not None else json.dumps(data).encode()
    return b64url(body) + "." + b64url(key.sign(body))


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def verify(token: str, key: Ed25519PrivateKey, **kw: Any) -> TokenClaims:
    args: dict[str, Any] = {"device_id": DEVICE, "kind": "camera", "cloud_url": CLOUD}
    args.update(kw)
    return verify_token(token, [key.public_key()], **args)


# -- round trip and independent checks ---------------------------------------------------


def test_sign_then_verify(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(), key)
    claims = verify(token, key)
    assert claims == TokenClaims(
        v=1,
        sub=DEVICE,
        kind="camera",
        org="demo",
        api=CLOUD,
        iat=1_700_000_000,
        jti="tok-123",
        raw=token,
    )


def test_signature_is_over_the_exact_payload_bytes(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(extra="kept"), key)
    assert "=" not in token  # base64url without padding, as in JWT
    assert set(token) <= set(B64URL + ".")
    head, sig = token.split(".")
    body = unb64url(head)
    assert json.loads(body) == payload(extra="kept")
    key.public_key().verify(unb64url(sig), body)  # raises if not over those bytes
    with pytest.raises(InvalidSignature):
        key.public_key().verify(unb64url(sig), body + b" ")


def test_a_hand_made_token_verifies(key: Ed25519PrivateKey) -> None:
    # Another JSON layout (spaces, key order) is fine: the signature covers the bytes sent.
    raw = b'{ "jti": "j", "iat": 5, "api": "https://cloud.example.com/", "org": "o",' + (
        b' "kind": "camera", "sub": "aa:bb:cc:dd:ee:ff", "v": 1, "more": [1, 2] }'
    )
    claims = verify(hand_made_token(None, key, raw), key)
    assert (claims.jti, claims.iat, claims.org) == ("j", 5, "o")


def test_surrounding_whitespace_is_ignored(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(), key)
    assert verify(f"  {token}\n", key).raw == token


def test_nvr_tokens(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(kind="nvr"), key)
    assert verify(token, key, kind="nvr").kind == "nvr"


# -- signature ---------------------------------------------------------------------------


def test_wrong_key_is_refused(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(), other_key)
    with pytest.raises(TokenError, match="signature does not verify"):
        verify(token, key)


def test_any_trusted_key_will_do(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(), key)
    trusted = [other_key.public_key(), key.public_key()]  # e.g. during a key rotation
    claims = verify_token(token, trusted, device_id=DEVICE, kind="camera", cloud_url=CLOUD)
    assert claims.jti == "tok-123"


def test_no_trusted_key_says_what_to_configure(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(), key)
    with pytest.raises(TokenError, match="trust_keys"):
        verify_token(token, [], device_id=DEVICE, kind="camera", cloud_url=CLOUD)


def test_a_changed_payload_breaks_the_signature(key: Ed25519PrivateKey) -> None:
    _, sig = sign_token(payload(), key).split(".")
    forged = b64url(json.dumps(payload(org="evil")).encode()) + "." + sig
    with pytest.raises(TokenError, match="signature"):
        verify(forged, key)


def test_a_truncated_signature_is_refused(key: Ed25519PrivateKey) -> None:
    head, sig = sign_token(payload(), key).split(".")
    with pytest.raises(TokenError):
        verify(head + "." + sig[:-4], key)


# -- subject, kind, cloud ----------------------------------------------------------------


def test_token_for_another_device(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(sub="11:22:33:44:55:66"), key)
    with pytest.raises(TokenError, match="for device '11:22:33:44:55:66', not this device"):
        verify(token, key)


def test_kind_mismatch(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(kind="nvr"), key)
    with pytest.raises(TokenError, match="for a nvr, but this device is a camera"):
        verify(token, key)


@pytest.mark.parametrize(
    "api",
    [
        "https://evil.example.com",  # another host
        "https://cloud.example.com:8443",  # another port
        "http://cloud.example.com",  # plain http
        "wss://cloud.example.com",  # another scheme, same default port
        "https://cloud.example.com.evil.net",
        "cloud.example.com",
        "",
    ],
)
def test_token_pointing_to_another_cloud(key: Ed25519PrivateKey, api: str) -> None:
    token = sign_token(payload(api=api), key)
    with pytest.raises(TokenError, match="points to cloud") as info:
        verify(token, key)
    assert CLOUD in str(info.value)


@pytest.mark.parametrize(
    ("api", "cloud"),
    [
        ("https://cloud.example.com", "https://cloud.example.com:443"),
        ("https://cloud.example.com:443", "https://cloud.example.com"),
        ("https://CLOUD.example.com/", "https://cloud.example.com"),
        ("HTTPS://cloud.example.com/", "https://cloud.example.com/"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_same_origin_is_accepted(key: Ed25519PrivateKey, api: str, cloud: str) -> None:
    verify(sign_token(payload(api=api), key), key, cloud_url=cloud)


@pytest.mark.parametrize(
    "api",
    [
        "https://user@cloud.example.com",  # userinfo: shown as if it were the host
        "https://cloud.example.com:pass@evil.example.net",
        "https://cloud.example.com@evil.example.net",
        "https://cloud.example.com/v1",  # a path: more than an origin
        "https://cloud.example.com//",
        "https://cloud.example.com/?x=1",
        "https://cloud.example.com?",  # an empty query is still one
        "https://cloud.example.com#frag",
        "https://cloud.example.com/#",
    ],
)
def test_an_api_that_is_more_than_an_origin_is_refused(key: Ed25519PrivateKey, api: str) -> None:
    with pytest.raises(TokenError, match="points to cloud"):
        verify(sign_token(payload(api=api), key), key)


def test_a_payload_with_a_key_twice_is_refused(key: Ed25519PrivateKey) -> None:
    """The signature covers the bytes; with a key twice, readers may disagree on which."""
    body = json.dumps(payload()).encode()
    twice = body[:-1] + b',"sub":"11:22:33:44:55:66"}'
    token = hand_made_token(None, key, raw=twice)
    with pytest.raises(TokenError, match="'sub' twice"):
        verify(token, key)
    nested = body[:-1] + b',"x":{"a":1,"a":2}}'
    with pytest.raises(TokenError, match="'a' twice"):
        verify(hand_made_token(None, key, raw=nested), key)


def test_different_port_on_the_same_host_is_refused(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(api="https://h:8443"), key)
    with pytest.raises(TokenError, match="points to cloud"):
        verify(token, key, cloud_url="https://h")
    verify(token, key, cloud_url="https://h:8443")


def test_a_device_configured_for_plain_http_accepts_no_token(key: Ed25519PrivateKey) -> None:
    token = sign_token(payload(api="http://cloud.example.com"), key)
    with pytest.raises(TokenError, match="points to cloud"):
        verify(token, key, cloud_url="http://cloud.example.com")


@pytest.mark.parametrize("api", ["https://cloud.example.com:99999", "https://cloud.example.com:x"])
def test_an_invalid_port_is_not_the_default_port(key: Ed25519PrivateKey, api: str) -> None:
    with pytest.raises(TokenError):
        verify(sign_token(payload(api=api), key), key)


def test_origin() -> None:
    assert origin("https://H.example:443/x") == ("https", "h.example", 443)
    assert origin("https://h") == ("https", "h", 443)
    assert origin("http://h") == ("http", "h", 80)
    assert origin("wss://h:9") == ("wss", "h", 9)
    assert origin("https://[::1]:8443") == ("https", "::1", 8443)


# -- malformed tokens --------------------------------------------------------------------


def good_parts(key: Ed25519PrivateKey) -> tuple[str, str]:
    head, sig = sign_token(payload(), key).split(".")
    return head, sig


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda h, s: "", "empty"),
        (lambda h, s: h + s, "two base64url parts"),
        (lambda h, s: f"{h}.{s}.{s}", "two base64url parts"),
        (lambda h, s: f"{h}.", "two base64url parts"),
        (lambda h, s: f".{s}", "two base64url parts"),
        (lambda h, s: f"{h}+.{s}", "base64url"),
        (lambda h, s: f"{h}==.{s}", "base64url"),
        (lambda h, s: f"{h}.{s}/", "base64url"),
        (lambda h, s: f"{h}é.{s}", "base64url"),
        (lambda h, s: f"A.{s}", "base64url"),  # one character cannot be base64
        (lambda h, s: "x" * (MAX_TOKEN_LEN + 1), "longer than"),
        (lambda h, s: b64url(b"not json") + "." + s, "not JSON"),
        (lambda h, s: b64url(b"\xff\xfe\xfa") + "." + s, "not JSON"),
        (lambda h, s: b64url(b"[1,2]") + "." + s, "JSON object"),
        (lambda h, s: b64url(b"42") + "." + s, "JSON object"),
    ],
)
def test_malformed_tokens(key: Ed25519PrivateKey, make: Any, words: str) -> None:
    token = make(*good_parts(key))
    with pytest.raises(TokenError) as info:
        verify(token, key)
    assert words in str(info.value)


@pytest.mark.parametrize("field", ["v", "sub", "kind", "org", "api", "iat", "jti"])
def test_missing_fields(key: Ed25519PrivateKey, field: str) -> None:
    token = hand_made_token(payload(**{field: ...}), key)
    with pytest.raises(TokenError, match=f"field '{field}' is missing"):
        verify(token, key)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", True),
        ("iat", True),
        ("iat", False),
        ("iat", 1.5),
        ("iat", "1700000000"),
        ("v", "1"),
        ("sub", 5),
        ("org", None),
        ("jti", ["x"]),
    ],
)
def test_wrong_field_types(key: Ed25519PrivateKey, field: str, value: Any) -> None:
    token = hand_made_token(payload(**{field: value}), key)
    with pytest.raises(TokenError, match=f"field '{field}'"):
        verify(token, key)


def test_unsupported_version(key: Ed25519PrivateKey) -> None:
    with pytest.raises(TokenError, match="version 2 is not supported"):
        verify(hand_made_token(payload(v=2), key), key)


def test_unknown_kind(key: Ed25519PrivateKey) -> None:
    with pytest.raises(TokenError, match="'dvr' is neither"):
        verify(hand_made_token(payload(kind="dvr"), key), key, kind="dvr")


def test_none_is_an_empty_token(key: Ed25519PrivateKey) -> None:
    with pytest.raises(TokenError, match="empty"):
        verify(None, key)  # type: ignore[arg-type]


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text_is_only_ever_a_token_error(text: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(TokenError):
        verify(text, key)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet=B64URL + ".", max_size=200))
def test_fuzz_base64url_text_is_only_ever_a_token_error(text: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(TokenError):
        verify(text, key)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=examples(300), deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["v", "sub", "kind", "org", "api", "iat", "jti", "x"]), json_values
    )
    | json_values,
    signature=st.binary(max_size=80),
)
def test_fuzz_json_payloads_are_only_ever_a_token_error(body: Any, signature: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    token = b64url(json.dumps(body).encode()) + "." + b64url(signature)
    with pytest.raises(TokenError):
        verify(token, key)


def test_deeply_nested_payload_is_a_token_error(key: Ed25519PrivateKey) -> None:
    token = b64url(b"[" * 3000) + "." + b64url(b"s" * 64)  # RecursionError in json.loads
    with pytest.raises(TokenError, match="not JSON"):
        verify(token, key)


# -- summary and keys --------------------------------------------------------------------


def test_token_summary(key: Ed25519PrivateKey) -> None:
    assert token_summary("") == {"present": False}
    assert token_summary(sign_token(payload(), key)) == {
        "present": True,
        "org": "demo",
        "api": CLOUD,
        "jti": "tok-123",
        "iat": 1_700_000_000,
    }
    assert token_summary("garbage") == {"present": True}
    summary = token_summary(sign_token(payload(), key))
    assert all("sig" not in k for k in summary)


def test_parse_claims_does_not_check_the_signature(
    key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    assert parse_claims(sign_token(payload(org="x"), other_key)).org == "x"


def test_load_public_key(key: Ed25519PrivateKey) -> None:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    loaded = load_public_key(pem, "k.pem")
    token = sign_token(payload(), key)
    verify_token(token, [loaded], device_id=DEVICE, kind="camera", cloud_url=CLOUD)


def test_load_public_key_refuses_garbage_and_other_algorithms() -> None:
    with pytest.raises(TokenError, match=r"k\.pem: not a PEM public key"):
        load_public_key(b"hello", "k.pem")
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(TokenError, match=r"ec\.pem: not an Ed25519 public key"):
        load_public_key(ec_pem, "ec.pem")
