"""What a QR code says (DESIGN §6): WiFi, a token, both, a URL, or just text.

- WiFi: `WIFI:T:WPA;S:<ssid>;P:<pass>;H:true;;`, fields in any order, `\\` escaping of
  `\\ ; , : "`, optional double quotes around a value, T: WPA/WPA2/WPA3/SAE/WEP/nopass.
  WPA3's form (with `R:` transition-disable and/or `K:` public-key fields) percent-encodes
  the SSID and password; it is read too.
- Combined: a WiFi payload with one more field `CT:<token>` (phones ignore it).
- Token: the bare token, or `CAMAGENT:T:<token>;;`.
Parsing never raises anything but QrPayloadError, whose message says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from agent.errors import QrPayloadError, TokenError
from agent.token_codec import MAX_TOKEN_LEN, split_token

PayloadType = Literal["wifi", "token", "combined", "url", "text"]
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
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_SPECIAL = '\\;,:"'


@dataclass(frozen=True)
class WifiNetwork:
    ssid: str
    password: str = ""
    security: str = "nopass"  # "WPA" (WPA/WPA2 personal) | "SAE" (WPA3) | "WEP" | "nopass"
    hidden: bool = False
    transition_disable: int | None = None  # WPA3 `R:`
    public_key: str = ""  # WPA3 `K:` (SAE-PK)


@dataclass(frozen=True)
class Payload:
    type: PayloadType
    text: str
    wifi: WifiNetwork | None = None
    token: str = ""

    def to_json(self) -> dict[str, str]:
        return {"text": self.text, "type": self.type}


def parse(text: str) -> Payload:
    """Classify and parse one decoded text. Raises QrPayloadError for a broken WIFI:."""
    stripped = text.strip()
    upper = stripped[:9].upper()
    if upper.startswith("WIFI:"):
        wifi, token = _parse_wifi(stripped)
        return Payload("combined" if token else "wifi", text, wifi, token)
    if upper.startswith("CAMAGENT:"):
        return Payload("token", text, token=_parse_camagent(stripped))
    if _looks_like_token(stripped):
        return Payload("token", text, token=stripped)
    if re.match(r"^https?://\S+$", stripped, re.I):
        return Payload("url", text)
    return Payload("text", text)


def _looks_like_token(text: str) -> bool:
    if len(text) > MAX_TOKEN_LEN or not _TOKEN_RE.match(text):
        return False
    try:
        split_token(text)
    except TokenError:
        return False
    return True


def _split_fields(body: str) -> list[tuple[str, str]]:
    """`K:v;K:v;;` with backslash escapes → [(K, v)], values still escaped-free."""
    fields: list[tuple[str, str]] = []
    name: str | None = None
    value: list[str] = []
    i = 0
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
            value = []
        elif ch == ";":
            if name is None:
                if "".join(value).strip():
                    raise QrPayloadError(f"WIFI: field {''.join(value)!r} has no ':'")
            else:
                fields.append((name, "".join(value)))
            name, value = None, []
        else:
            value.append(ch)
        i += 1
    if name is not None:  # last field without its ';' (truncated, or a sloppy generator)
        fields.append((name, "".join(value)))
    return fields


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _parse_wifi(text: str) -> tuple[WifiNetwork, str]:
    fields = _split_fields(text[5:])
    seen: dict[str, str] = {}
    for name, value in fields:
        if name in seen:
            raise QrPayloadError(f"WIFI: field {name}: appears twice")
        seen[name] = value
    wpa3_form = "R" in seen or "K" in seen
    decode = unquote if wpa3_form else (lambda v: v)
    ssid = decode(_unquote(seen.get("S", "")))
    if not ssid:
        raise QrPayloadError("WIFI: payload has no network name (S:)")
    if len(ssid.encode()) > MAX_SSID_BYTES:
        raise QrPayloadError(f"WIFI: network name is longer than {MAX_SSID_BYTES} bytes")
    password = decode(_unquote(seen.get("P", "")))
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
    transition = None
    if "R" in seen:
        try:
            transition = int(seen["R"].strip() or "0", 16)
        except ValueError:
            raise QrPayloadError(f"WIFI: R: must be a hex number, not {seen['R']!r}") from None
    token = seen.get("CT", "").strip()
    if token and not _looks_like_token(token):
        raise QrPayloadError("WIFI: CT: does not hold a camagent token")
    network = WifiNetwork(
        ssid, password, security, hidden_text == "true", transition, seen.get("K", "").strip()
    )
    return network, token


def _parse_camagent(text: str) -> str:
    fields = dict(_split_fields(text[len("CAMAGENT:") :]))
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
