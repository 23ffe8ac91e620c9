"""Signed tokens (docs/design.md §2.12): `base64url(payload JSON) + "." + base64url(signature)`.

A token is accepted from any path (poll, LAN push, QR, CLI, cloud, NVR registration) only
through `agent.trust.TokenGate.accept`, which calls `verify_token`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.errors import TokenError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

TOKEN_VERSION = 1
MAX_TOKEN_LEN = 8192
KINDS = ("camera", "nvr")


@dataclass(frozen=True)
class TokenClaims:
    v: int
    sub: str
    kind: str
    org: str
    api: str
    iat: int
    jti: str
    raw: str

    def summary(self) -> dict[str, Any]:
        return {"present": True, "org": self.org, "api": self.api, "jti": self.jti, "iat": self.iat}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    if any(c not in _B64URL_ALPHABET for c in text):
        raise TokenError("token is not base64url text")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("token is not base64url text") from None
    # One spelling per byte string (unused trailing bits zero): an altered token never
    # verifies, so anything that logs, keys or compares tokens as text sees one token.
    if b64url_encode(data) != text:
        raise TokenError("token is not canonical base64url text")
    return data


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def sign_token(payload: dict[str, Any], key: Ed25519PrivateKey) -> str:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return b64url_encode(body) + "." + b64url_encode(key.sign(body))


def split_token(token: str) -> tuple[bytes, bytes]:
    """Return (payload bytes, signature bytes) or raise TokenError."""
    if not isinstance(token, str) or not token:
        raise TokenError("token is empty")
    token = token.strip()
    if len(token) > MAX_TOKEN_LEN:
        raise TokenError(f"token is longer than {MAX_TOKEN_LEN} characters")
    parts = token.split(".")
    if len(parts) != 2 or not all(parts):
        raise TokenError("token must be two base64url parts joined by '.' (payload.signature)")
    return b64url_decode(parts[0]), b64url_decode(parts[1])


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A signed payload means one thing: with a key twice, readers may disagree on which."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def parse_claims(token: str) -> TokenClaims:
    """Decode the payload *without* checking the signature (for display and checks)."""
    payload_bytes, _ = split_token(token)
    try:
        data = json.loads(payload_bytes, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise TokenError(f"token payload has the key {str(exc)!r} twice") from None
    except (ValueError, RecursionError):
        raise TokenError("token payload is not JSON") from None
    if not isinstance(data, dict):
        raise TokenError("token payload must be a JSON object")
    expected: dict[str, type] = {
        "v": int,
        "sub": str,
        "kind": str,
        "org": str,
        "api": str,
        "iat": int,
        "jti": str,
    }
    for name, typ in expected.items():
        value = data.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise TokenError(f"token payload field {name!r} is missing or not a {typ.__name__}")
    if data["v"] != TOKEN_VERSION:
        raise TokenError(f"token version {data['v']} is not supported (this agent speaks v1)")
    if data["kind"] not in KINDS:
        raise TokenError(f"token kind {data['kind']!r} is neither 'camera' nor 'nvr'")
    return TokenClaims(
        v=data["v"],
        sub=data["sub"],
        kind=data["kind"],
        org=data["org"],
        api=data["api"],
        iat=data["iat"],
        jti=data["jti"],
        raw=token.strip(),
    )


def token_summary(token: str) -> dict[str, Any]:
    """What `status` shows of a held token (no secrets: the signature is left out)."""
    if not token:
        return {"present": False}
    try:
        return parse_claims(token).summary()
    except TokenError:
        return {"present": True}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return scheme, "", -1  # an unparsable port is no port: it matches nothing
    if port is None:
        port = {"https": 443, "http": 80, "wss": 443, "ws": 80}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


def api_origin(api: str) -> tuple[str, str, int] | None:
    """The origin a token's `api` names, or None when it is more than an origin.

    Only `https://host[:port]` with an optional "/" counts: userinfo, a path, a query or a
    fragment could make a person (or a lax comparison) read another cloud than the one
    compared.
    """
    try:
        parts = urlsplit(api)
    except ValueError:
        return None
    if "@" in parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if "?" in api or "#" in api:  # an empty query or fragment is still one
        return None
    found = origin(api)
    if not found[1] or found[2] <= 0:
        return None
    return found


def verify_token(
    token: str,
    trusted_keys: Iterable[Ed25519PublicKey],
    *,
    device_id: str,
    kind: str,
    cloud_url: str,
) -> TokenClaims:
    """Check signature, subject, kind and cloud; return the claims or raise TokenError."""
    from cryptography.exceptions import InvalidSignature

    claims = parse_claims(token)
    payload, signature = split_token(claims.raw)
    keys = list(trusted_keys)
    if not keys:
        raise TokenError(
            "no trusted token-signing key: set [cloud] trust_keys to the cloud's public key file"
        )
    for key in keys:
        try:
            key.verify(signature, payload)
            break
        except InvalidSignature:
            continue
    else:
        raise TokenError(
            "token signature does not verify against any trusted cloud key "
            "(forged, or signed by another cloud)"
        )
    if claims.sub != device_id:
        raise TokenError(f"token is for device {claims.sub!r}, not this device ({device_id!r})")
    if claims.kind != kind:
        raise TokenError(f"token is for a {claims.kind}, but this device is a {kind}")
    expected = origin(cloud_url)
    if api_origin(claims.api) != expected or expected[0] != "https":
        raise TokenError(
            f"token points to cloud {claims.api!r}, but this device trusts only {cloud_url!r}"
        )
    return claims


def load_public_key(pem: bytes, source: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise TokenError(f"{source}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise TokenError(f"{source}: not an Ed25519 public key")
    return key
