"""What a QR code says (docs/design.md §6): WiFi, a token, both, a URL, or just text.

- WiFi: `WIFI:T:WPA;S:<ssid>;P:<pass>;H:true;;`, fields in any order, `\\` escaping of
  `\\ ; , : "`, optional double quotes around a value, T: WPA/WPA2/WPA3/SAE/WEP/nopass.
  WPA3's form (with `R:` transition-disable and/or `K:` public-key fields) percent-encodes
  the SSID and password; it is read too.
- Combined: a WiFi payload with one more field `CT:<token>` (phones ignore it).
- Token: the bare token, or `CAMAGENT:T:<token>;;`. A camera's card holds its token
  sealed under its K (standard base64, docs/design.md §2.9): both forms are tokens here,
  and the gate decides which one a device takes.
- Label (a camera's factory label): `CAMAGENT:ID:<device id>;PW:<password>;;`, with the
  WiFi escaping. It tells a person or the cloud's console who the camera is; a device
  never applies it.
Parsing never raises anything but QrPayloadError, whose message says what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from agent.errors import QrPayloadError, TokenError
from agent.token_codec import MAX_TOKEN_LEN, split_token

PayloadType = Literal["wifi", "token", "combined", "label", "url", "text"]
# What a device may carry out; everything else is shown, never applied.
APPLICABLE: frozenset[str] = frozenset({"wifi", "token", "combined"})
SECURITIES = {
    "WPA": "WPA",
    "WPA2": "WPA",
    "WPA3": "SAE",
    "SAE": "SAE",
    "WEP": "WEP",
    "NOPASS": "nopass",
    "": "nopass",
}
MAX_SSID_BYTES = 32
MAX_LABEL_PASSWORD = 256  # as identity.MAX_PASSWORD_LEN: what a password file may hold
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
# A sealed token: base64(nonce12 || AES-GCM ciphertext of a token || tag16). A token holds
# at least a payload character, "." and an 86-character Ed25519 signature.
_SEALED_RE = re.compile(r"^(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
MIN_SEALED_BYTES = 12 + 16 + 88
MAX_SEALED_LEN = 4 * -(-(12 + 16 + MAX_TOKEN_LEN) // 3)
_SPECIAL = '\\;,:"'


@dataclass(frozen=True)
class WifiNetwork:
    ssid: str
    password: str = ""
    security: str = "nopass"  # "WPA" (WPA/WPA2 personal) | "SAE" (WPA3) | "WEP" | "nopass"
    hidden: bool = False


@dataclass(frozen=True)
class Label:
    device_id: str
    password: str


@dataclass(frozen=True)
class Payload:
    type: PayloadType
    text: str
    wifi: WifiNetwork | None = None
    token: str = ""
    label: Label | None = None

    def to_json(self) -> dict[str, str]:
        described = {"text": self.text, "type": self.type}
        if self.label is not None:
            described["device_id"] = self.label.device_id
        return described


def parse(text: str) -> Payload:
    """Classify and parse one decoded text. Raises QrPayloadError for a broken WIFI:."""
    stripped = text.strip()
    upper = stripped[:9].upper()
    if upper.startswith("WIFI:"):
        wifi, token = _parse_wifi(stripped)
        return Payload("combined" if token else "wifi", text, wifi, token)
    if upper.startswith("CAMAGENT:"):
        return _parse_camagent(stripped, text)
    if _looks_like_token(stripped):
        return Payload("token", text, token=stripped)
    if re.match(r"^https?://\S+$", stripped, re.I):
        return Payload("url", text)
    return Payload("text", text)


def _looks_like_token(text: str) -> bool:
    """A signed token (`payload.signature`) or one sealed for a camera."""
    return _looks_like_signed(text) or _looks_like_sealed(text)


def _looks_like_signed(text: str) -> bool:
    if len(text) > MAX_TOKEN_LEN or not _TOKEN_RE.match(text):
        return False
    try:
        split_token(text)
    except TokenError:
        return False
    return True


def _looks_like_sealed(text: str) -> bool:
    if len(text) > MAX_SEALED_LEN or not _SEALED_RE.match(text):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) >= MIN_SEALED_BYTES
    except binascii.Error:
        return False


def _split_fields(body: str) -> list[tuple[str, str]]:
    """`K:v;K:v;;` with backslash escapes → [(K, v)], escapes resolved.

    A value wholly inside *unescaped* double quotes loses them (`S:"123"` is the SSID
    `123`); escaped quotes are characters like any other (`P:\\"abcdefgh\\"` keeps them).
    """
    fields: list[tuple[str, str]] = []
    name: str | None = None
    value: list[str] = []
    quotes: list[int] = []  # indexes in `value` of unescaped '"'
    i = 0

    def finish() -> str:
        if len(value) >= 2 and quotes[:1] == [0] and quotes[-1:] == [len(value) - 1]:
            return "".join(value[1:-1])
        return "".join(value)

    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body):
                raise QrPayloadError("WIFI: payload ends in a lone backslash")
            value.append(body[i + 1])
            i += 2
            continue
        if name is None and ch == ":":
            name = "".join(value).strip().upper()
            value, quotes = [], []
        elif ch == ";":
            if name is None:
                if "".join(value).strip():
                    raise QrPayloadError(f"WIFI: field {''.join(value)!r} has no ':'")
            else:
                fields.append((name, finish()))
            name, value, quotes = None, [], []
        else:
            if ch == '"':
                quotes.append(len(value))
            value.append(ch)
        i += 1
    if name is not None:  # last field without its ';' (truncated, or a sloppy generator)
        fields.append((name, finish()))
    return fields


def _parse_wifi(text: str) -> tuple[WifiNetwork, str]:
    fields = _split_fields(text[5:])
    seen: dict[str, str] = {}
    for name, value in fields:
        if name in seen:
            raise QrPayloadError(f"WIFI: field {name}: appears twice")
        seen[name] = value
    wpa3_form = "R" in seen or "K" in seen
    decode = unquote if wpa3_form else (lambda v: v)
    ssid = decode(seen.get("S", ""))
    if not ssid:
        raise QrPayloadError("WIFI: payload has no network name (S:)")
    if len(ssid.encode()) > MAX_SSID_BYTES:
        raise QrPayloadError(f"WIFI: network name is longer than {MAX_SSID_BYTES} bytes")
    password = decode(seen.get("P", ""))
    for what, value in (("network name", ssid), ("password", password)):
        if found := control_character(value):
            raise QrPayloadError(f"WIFI: the {what} holds {found}")
    raw_security = seen.get("T", "").strip().upper()
    if raw_security not in SECURITIES:
        raise QrPayloadError(
            f"WIFI: security {seen.get('T')!r} is not WPA, WPA2, WPA3, SAE, WEP or nopass"
        )
    security = SECURITIES[raw_security]
    if security == "WPA" and "R" in seen:
        security = "SAE" if seen["R"].strip() not in ("", "0") else "WPA"
    if security == "nopass" and password and raw_security == "":
        security = "WPA"  # a password without T: is a WPA network in practice
    if security != "nopass" and not password:
        raise QrPayloadError(f"WIFI: a {security} network needs a password (P:)")
    if (
        security == "WPA"
        and not 8 <= len(password) <= 63
        and not re.fullmatch(r"[0-9A-Fa-f]{64}", password)
    ):
        raise QrPayloadError("WIFI: a WPA password has 8 to 63 characters (or 64 hex digits)")
    hidden_text = seen.get("H", "false").strip().lower()
    if hidden_text not in ("true", "false", ""):
        raise QrPayloadError(f"WIFI: H: must be true or false, not {seen['H']!r}")
    if "R" in seen:
        try:
            int(seen["R"].strip() or "0", 16)
        except ValueError:
            raise QrPayloadError(f"WIFI: R: must be a hex number, not {seen['R']!r}") from None
    token = seen.get("CT", "").strip()
    if token and not _looks_like_token(token):
        raise QrPayloadError("WIFI: CT: does not hold a camagent token")
    # `R:` only decides WPA3 above; `K:` (the SAE-PK public key) is read and not used:
    # neither nmcli nor wpa_cli here can pin it, and the password alone still joins.
    return WifiNetwork(ssid, password, security, hidden_text == "true"), token


def _parse_camagent(stripped: str, text: str) -> Payload:
    fields = dict(_split_fields(stripped[len("CAMAGENT:") :]))
    if "ID" in fields or "PW" in fields:
        return Payload("label", text, label=_parse_label(fields))
    return Payload("token", text, token=_parse_token_field(fields))


def _parse_label(fields: dict[str, str]) -> Label:
    from agent.errors import WireError
    from agent.provisioning.wire import normalize_device_id

    try:
        device_id = normalize_device_id(fields.get("ID", ""))
    except WireError as exc:
        raise QrPayloadError(f"CAMAGENT: label ID: {exc}") from None
    password = fields.get("PW", "")
    if not password:
        raise QrPayloadError("CAMAGENT: label has no password (PW:)")
    if len(password) > MAX_LABEL_PASSWORD:
        raise QrPayloadError(
            f"CAMAGENT: label password is longer than {MAX_LABEL_PASSWORD} characters"
        )
    if has_control_characters(password):
        raise QrPayloadError("CAMAGENT: label password holds control characters")
    return Label(device_id, password)


def _parse_token_field(fields: dict[str, str]) -> str:
    token = fields.get("T", "").strip()
    if not token:
        raise QrPayloadError("CAMAGENT: payload has no token (T:)")
    if not _looks_like_token(token):
        raise QrPayloadError("CAMAGENT: T: does not hold a camagent token")
    return token


def escape(value: str) -> str:
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in value)


def wifi_payload(network: WifiNetwork, token: str = "") -> str:
    """The standard WIFI: text (plus `CT:` for the combined card)."""
    parts = [
        f"T:{network.security if network.security != 'nopass' else 'nopass'}",
        f"S:{escape(network.ssid)}",
    ]
    if network.security != "nopass":
        parts.append(f"P:{escape(network.password)}")
    if network.hidden:
        parts.append("H:true")
    if token:
        parts.append(f"CT:{token}")
    return "WIFI:" + ";".join(parts) + ";;"


def token_payload(token: str) -> str:
    return f"CAMAGENT:T:{token};;"


def label_payload(label: Label) -> str:
    """The text of a camera label's QR code (read back by `parse` as type "label")."""
    return f"CAMAGENT:ID:{escape(label.device_id)};PW:{escape(label.password)};;"


_CONTROL_NAMES = {"\x00": "a NUL", "\n": "a newline", "\r": "a carriage return", "\t": "a tab"}


def control_character(value: str) -> str | None:
    """One rule for every path a network name or password comes in by (a QR card, the
    LAN's /v1/wifi): C0 and C1 controls and DEL are refused — a WPA passphrase is
    printable by definition, and nmcli and wpa_supplicant cannot carry them. Returns the
    first one, named for people, or None."""
    for ch in value:
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            return f"{_CONTROL_NAMES.get(ch, 'a control character')} (U+{ord(ch):04X})"
    return None


def has_control_characters(value: str) -> bool:
    return control_character(value) is not None
