"""Provisioning wire format v1 (docs/design.md §2): key derivation, poll proof, sealed tokens.

Both the agent and the mock cloud use these functions: they *are* the contract, so they
live in one place. Tests check them against values computed independently.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from agent.errors import WireError

KDF_SALT_PREFIX = b"camagent-provisioning-v1|"
KDF_N = 2**14
KDF_R = 8
KDF_P = 1
KEY_LEN = 32
NONCE_BYTES = 16
SEAL_NONCE_BYTES = 12
MAX_WAIT_S = 300
MAX_DEVICE_ID_LEN = 128

# Unix seconds a poll's `ts` may carry: from 1970 to 2**34 s (year 2514). Anything
# else is malformed (400), never an arithmetic error further on.
MAX_TS = 2**34

# A MAC with one consistent separator (":", "-" or none), any case.
_MAC_RE = re.compile(r"^[0-9a-f]{2}(?P<sep>[:-]?)(?:[0-9a-f]{2}(?P=sep)){4}[0-9a-f]{2}$", re.I)
# Looks like a MAC: at least three groups of one to four hex digits joined by ":" or "-".
_MAC_LIKE_RE = re.compile(r"^[0-9a-f]{1,4}(?:[:-][0-9a-f]{1,4}){2,}$", re.I)
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._@-]{0,127}$")
# Near misses of a MAC, refused rather than kept as explicit IDs: six groups of two
# letters/digits with one separator (a letter O for a zero, a "g"...), twelve such
# characters without separators whose only non-hex letters are lookalikes (O, I, l),
# the dotted form aaaa.bbbb.cccc, and a MAC with a leading or trailing separator.
_SIX_GROUPS_RE = re.compile(
    r"^[0-9a-z]{2}(?P<sep>[:-])(?:[0-9a-z]{2}(?P=sep)){4}[0-9a-z]{2}$", re.I
)
_DOTTED_RE = re.compile(r"^[0-9a-z]{4}\.[0-9a-z]{4}\.[0-9a-z]{4}$", re.I)
_EDGE_SEP_RE = re.compile(r"^[:.-]+|[:.-]+$")
_LOOKALIKES = {"o": "0", "i": "1", "l": "1"}

DEVICE_ID_GRAMMAR = (
    "a device ID is either a MAC address of 6 octets (aa:bb:cc:dd:ee:ff; also "
    "aa-bb-cc-dd-ee-ff or aabbccddeeff, any case) or 1 to 128 characters: a letter or "
    "digit, then letters, digits and ':._@-'"
)


def normalize_device_id(raw: str) -> str:
    """Return the canonical device ID: a MAC as `aa:bb:cc:dd:ee:ff`, else the ID as given.

    The grammar (the agent and the cloud share it; WireError names the rule broken):

    - **MAC address**: 6 octets of two hex digits, separated by ":" or "-" (one
      separator throughout) or not at all, any case; canonical form lower case with ":".
      Anything that looks like a MAC (three or more groups of one to four hex digits
      joined by ":" or "-") but is not 6 octets of two digits is refused, so that a
      mistyped MAC never becomes a valid explicit ID. So are the near misses: six
      groups of two characters with one or two non-hex letters (`02:aa:bb:cc:dd:O7`,
      the letter O for a zero, `0g`), twelve characters without separators whose
      non-hex letters are lookalikes (O, I, l), the dotted form `02ca.fe00.0001`, and
      a MAC with a leading or trailing separator; the message names O/0 and I/1.
    - **Explicit ID** (from the agent's config): 1 to 128 characters, the first a letter
      or digit, the rest letters, digits and `: . _ @ -`; kept exactly as given (case
      included). A string of hex digits without separators other than 12 long is an
      explicit ID (serial numbers often are).

    Surrounding white space is ignored.
    """
    text = raw.strip()
    if _MAC_RE.match(text):
        hexdigits = re.sub(r"[:-]", "", text).lower()
        return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))
    if _MAC_LIKE_RE.match(text):
        raise WireError(
            f"invalid device ID {raw!r}: it looks like a MAC address, and a MAC address "
            "has 6 octets of two hex digits with one separator throughout (aa:bb:cc:dd:ee:ff)"
        )
    near_miss = _mac_near_miss(text)
    if near_miss:
        raise WireError(
            f"invalid device ID {raw!r}: it looks like a MAC address but is not one ({near_miss}); "
            f"{MAC_RULE}"
        )
    if not _DEVICE_ID_RE.match(text):
        raise WireError(f"invalid device ID {raw!r}: {DEVICE_ID_GRAMMAR}")
    return text


MAC_RULE = (
    "a MAC address is exactly 6 octets of two hex digits (0-9, a-f, any case) with one "
    "separator throughout, ':' or '-' or none (aa:bb:cc:dd:ee:ff)"
)


def _lookalike_hint(text: str) -> str:
    found = sorted({c for c in text if c.lower() in _LOOKALIKES})
    hints = [f"{c!r} is a letter, not the digit {_LOOKALIKES[c.lower()]}" for c in found]
    other = sorted(
        {c for c in text if c.isalpha() and c.lower() not in "abcdef" and c not in found}
    )
    hints += [f"{c!r} is not a hex digit" for c in other]
    return "; ".join(hints)


def _mac_near_miss(text: str) -> str:
    """Why `text` is a mistyped MAC rather than an explicit ID, or "" if it is not one."""
    stripped = _EDGE_SEP_RE.sub("", text)
    if stripped != text and (_MAC_RE.match(stripped) or _MAC_LIKE_RE.match(stripped)):
        return "a separator at the start or the end"
    if _DOTTED_RE.match(text):
        return "the dotted form aaaa.bbbb.cccc is not accepted"
    non_hex = [c for c in text if c.isalpha() and c.lower() not in "abcdef"]
    if _SIX_GROUPS_RE.match(text) and 0 < len(non_hex) <= 2:
        return _lookalike_hint(text)
    lookalikes_only = all(c.lower() in _LOOKALIKES for c in non_hex)
    twelve = len(text) == 12 and text.isalnum() and text.isascii()
    if twelve and lookalikes_only and 0 < len(non_hex) <= 2:
        return _lookalike_hint(text)
    return ""


def derive_key(password: str, device_id: str) -> bytes:
    """K = scrypt(password, salt=prefix + device_id): slow on purpose (docs/design.md §2)."""
    return hashlib.scrypt(
        password.encode(),
        salt=KDF_SALT_PREFIX + device_id.encode(),
        n=KDF_N,
        r=KDF_R,
        p=KDF_P,
        dklen=KEY_LEN,
        maxmem=64 * 1024 * 1024,
    )


def new_nonce() -> str:
    return base64.b64encode(os.urandom(NONCE_BYTES)).decode()


def poll_proof(key: bytes, device_id: str, ts: int, nonce: str) -> str:
    message = f"{device_id}\n{ts}\n{nonce}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def proof_matches(key: bytes, device_id: str, ts: int, nonce: str, proof: str) -> bool:
    return hmac.compare_digest(poll_proof(key, device_id, ts, nonce), proof)


def seal_token(key: bytes, device_id: str, token: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce12 = os.urandom(SEAL_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce12, token.encode(), device_id.encode())
    return base64.b64encode(nonce12 + ciphertext).decode()


def unseal_token(key: bytes, device_id: str, sealed: str) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = b64decode_strict(sealed, "sealed_token")
    if len(blob) < SEAL_NONCE_BYTES + 16:
        raise WireError("sealed_token is too short to hold a token")
    try:
        plain = AESGCM(key).decrypt(
            blob[:SEAL_NONCE_BYTES], blob[SEAL_NONCE_BYTES:], device_id.encode()
        )
    except InvalidTag:
        raise WireError(
            "sealed_token does not open with this device's key: the password on the device "
            "differs from the one entered in the cloud"
        ) from None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise WireError("sealed_token holds bytes that are not text") from None


def b64decode_strict(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise WireError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{field} is not valid base64") from None


def json_integer(value: object) -> int | None:
    """`value` as JSON Schema's `integer` reads it (1, and also 1.0 or 1e2: a number whose
    fractional part is zero), else None. A boolean is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


@dataclass(frozen=True)
class PollRequest:
    device_id: str
    ts: int
    nonce: str
    proof: str
    wait: int

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "ts": self.ts,
            "nonce": self.nonce,
            "proof": self.proof,
            "wait": self.wait,
        }

    @classmethod
    def build(cls, key: bytes, device_id: str, ts: int, wait: int) -> PollRequest:
        nonce = new_nonce()
        return cls(device_id, ts, nonce, poll_proof(key, device_id, ts, nonce), wait)

    @classmethod
    def parse(cls, body: bytes) -> PollRequest:
        """Validate a poll body; raise WireError naming the first problem."""
        try:
            data = json.loads(body)
        except ValueError:
            raise WireError("body is not JSON") from None
        except RecursionError:  # a few KiB of "[" are enough to exhaust the decoder
            raise WireError("body is nested too deeply") from None
        if not isinstance(data, dict):
            raise WireError("body must be a JSON object")
        missing = {"device_id", "ts", "nonce", "proof"} - data.keys()
        if missing:
            raise WireError(f"missing field(s): {', '.join(sorted(missing))}")
        device_id = data["device_id"]
        if not isinstance(device_id, str) or not device_id or len(device_id) > MAX_DEVICE_ID_LEN:
            raise WireError("device_id must be a non-empty string")
        ts = json_integer(data["ts"])
        if ts is None or not 0 <= ts <= MAX_TS:
            raise WireError(f"ts must be an integer from 0 to {MAX_TS} (Unix seconds)")
        wait = json_integer(data.get("wait", 0))
        if wait is None or not 0 <= wait <= MAX_WAIT_S:
            raise WireError(f"wait must be an integer from 0 to {MAX_WAIT_S}")
        nonce = data["nonce"]
        if len(b64decode_strict(nonce, "nonce")) != NONCE_BYTES:
            raise WireError(f"nonce must be base64 of {NONCE_BYTES} bytes")
        proof = data["proof"]
        if len(b64decode_strict(proof, "proof")) != 32:
            raise WireError("proof must be base64 of an HMAC-SHA256 (32 bytes)")
        return cls(device_id, ts, nonce, proof, wait)
