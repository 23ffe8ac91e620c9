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
from collections.abc import Callable
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
_HEX_KEY_RE = re.compile(r"[0-9A-Fa-f]{64}")  # a WPA key as 64 hex digits, not a passphrase
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


@dataclass(frozen=True)
class _WifiFields:
    """A WIFI: payload's fields, each once; S: and P: as meant (WPA3's form, the one with
    `R:` or `K:`, percent-encodes them)."""

    fields: dict[str, str]
    ssid: str
    password: str

    @classmethod
    def read(cls, text: str) -> _WifiFields:
        fields: dict[str, str] = {}
        for name, value in _split_fields(text[5:]):
            if name in fields:
                raise QrPayloadError(f"WIFI: field {name}: appears twice")
            fields[name] = value
        wpa3_form = "R" in fields or "K" in fields
        decode = unquote if wpa3_form else str
        return cls(fields, decode(fields.get("S", "")), decode(fields.get("P", "")))

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    @property
    def raw_security(self) -> str:
        return self.get("T").strip().upper()

    @property
    def security(self) -> str:
        """What T: means with the other fields: once T: is known to be in SECURITIES."""
        security = SECURITIES[self.raw_security]
        for written, applies, meant in _SECURITY_READINGS:
            if security == written and applies(self):
                security = meant
        return security

    @property
    def hidden(self) -> str:
        return self.get("H", "false").strip().lower()

    @property
    def token(self) -> str:
        return self.get("CT").strip()


# T: as written, and what it means when the rest of the card says so, tried in order.
_SECURITY_READINGS: tuple[tuple[str, Callable[[_WifiFields], bool], str], ...] = (
    # WPA3's form: a transition-disable bit in R: makes it a WPA3-only network.
    ("WPA", lambda f: f.get("R").strip() not in ("", "0"), "SAE"),
    # A password without T: is a WPA network in practice.
    ("nopass", lambda f: bool(f.password) and f.raw_security == "", "WPA"),
)


def _no_ssid(f: _WifiFields) -> str | None:
    return None if f.ssid else "WIFI: payload has no network name (S:)"


def _long_ssid(f: _WifiFields) -> str | None:
    if len(f.ssid.encode()) > MAX_SSID_BYTES:
        return f"WIFI: network name is longer than {MAX_SSID_BYTES} bytes"
    return None


def _controls(f: _WifiFields) -> str | None:
    for what, value in (("network name", f.ssid), ("password", f.password)):
        if found := control_character(value):
            return f"WIFI: the {what} holds {found}"
    return None


def _unknown_security(f: _WifiFields) -> str | None:
    if f.raw_security in SECURITIES:
        return None
    return f"WIFI: security {f.fields.get('T')!r} is not WPA, WPA2, WPA3, SAE, WEP or nopass"


def _no_password(f: _WifiFields) -> str | None:
    if f.security != "nopass" and not f.password:
        return f"WIFI: a {f.security} network needs a password (P:)"
    return None


def _bad_wpa_password(f: _WifiFields) -> str | None:
    if f.security != "WPA" or 8 <= len(f.password) <= 63 or _HEX_KEY_RE.fullmatch(f.password):
        return None
    return "WIFI: a WPA password has 8 to 63 characters (or 64 hex digits)"


def _bad_hidden(f: _WifiFields) -> str | None:
    if f.hidden in ("true", "false", ""):
        return None
    return f"WIFI: H: must be true or false, not {f.fields['H']!r}"


def _bad_r(f: _WifiFields) -> str | None:
    if "R" not in f.fields:
        return None
    try:
        int(f.fields["R"].strip() or "0", 16)
    except ValueError:
        return f"WIFI: R: must be a hex number, not {f.fields['R']!r}"
    return None


def _bad_token(f: _WifiFields) -> str | None:
    if f.token and not _looks_like_token(f.token):
        return "WIFI: CT: does not hold a camagent token"
    return None


# The rules a WiFi card must pass, in the order its faults are reported: each may rely on
# the ones before it (the security is read only once T: is known).
_WIFI_RULES: tuple[Callable[[_WifiFields], str | None], ...] = (
    _no_ssid,
    _long_ssid,
    _controls,
    _unknown_security,
    _no_password,
    _bad_wpa_password,
    _bad_hidden,
    _bad_r,
    _bad_token,
)


def _parse_wifi(text: str) -> tuple[WifiNetwork, str]:
    card = _WifiFields.read(text)
    for rule in _WIFI_RULES:
        if fault := rule(card):
            raise QrPayloadError(fault)
    # `R:` only decides WPA3 above; `K:` (the SAE-PK public key) is read and not used:
    # neither nmcli nor wpa_cli here can pin it, and the password alone still joins.
    network = WifiNetwork(card.ssid, card.password, card.security, card.hidden == "true")
    return network, card.token


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
