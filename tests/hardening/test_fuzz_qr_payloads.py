"""Fuzzing what a QR code says: any text classifies, or is a QrPayloadError with a reason.

A card shown to the camera is outside input like any other: it may set WiFi and offer a
token, and the token still has to open under the camera's K and verify
(tests/hardening/test_fuzz_token.py).
"""

from __future__ import annotations

import base64
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import QrPayloadError
from agent.qr.payloads import (
    MAX_SSID_BYTES,
    MIN_SEALED_BYTES,
    WifiNetwork,
    parse,
    token_payload,
    wifi_payload,
)
from agent.token_codec import sign_token
from tests.examples import examples
from tests.hardening.strategies import refusal

TOKEN = sign_token(
    {
        "v": 1,
        "sub": "aa:bb:cc:dd:ee:ff",
        "kind": "camera",
        "org": "o",
        "api": "https://c",
        "iat": 1,
        "jti": "j",
    },
    Ed25519PrivateKey.generate(),
)

wifi_alphabet = st.sampled_from([*list('WIFI:T;S:P:H:R:K:CT:\\;,:"" ab%20\n\t'), "WPA", "nopass"])
wifi_ish = st.builds(lambda parts: "WIFI:" + "".join(parts), st.lists(wifi_alphabet, max_size=60))
camagent_ish = st.builds(lambda t: "CAMAGENT:" + t, st.text(max_size=80))
any_text = st.one_of(st.text(max_size=200), wifi_ish, camagent_ish)


@settings(max_examples=examples(600))
@given(any_text)
def test_any_text_is_a_payload_or_a_clear_refusal(text: str) -> None:
    message = refusal(parse, text, allowed=QrPayloadError)
    if message:
        assert message.startswith(("WIFI:", "CAMAGENT:"))
        return
    payload = parse(text)
    assert payload.type in ("wifi", "token", "combined", "url", "text")
    assert payload.text == text
    if payload.wifi is not None:
        assert payload.wifi.ssid
        assert len(payload.wifi.ssid.encode()) <= MAX_SSID_BYTES
        assert payload.wifi.security in ("WPA", "SAE", "WEP", "nopass")
    if payload.type in ("token", "combined"):
        assert payload.token  # still only a candidate: it must verify like any token


# Control characters are refused on every path (payloads.control_character), so the cards
# the tools make never hold them; surrogates are no text at all (they cannot be encoded).
printable = st.characters(blacklist_categories=("Cc", "Cs"))
ssids = st.text(printable, min_size=1, max_size=32).filter(
    lambda s: len(s.encode()) <= MAX_SSID_BYTES and s.strip() == s
)


@st.composite
def networks(draw: st.DrawFn) -> WifiNetwork:
    security = draw(st.sampled_from(["WPA", "SAE", "WEP", "nopass"]))
    password = ""
    if security == "WPA":
        password = draw(st.text(printable, min_size=8, max_size=63))
    elif security != "nopass":
        password = draw(st.text(printable, min_size=1, max_size=63))
    return WifiNetwork(draw(ssids), password, security, draw(st.booleans()))


@settings(max_examples=examples(400))
@given(networks(), st.booleans())
def test_cards_the_tools_make_read_back_the_same(network: WifiNetwork, with_token: bool) -> None:
    # Quotes are escaped by the tools, so even a value in surrounding quotes reads back.
    payload = parse(wifi_payload(network, TOKEN if with_token else ""))
    assert payload.wifi is not None
    assert payload.wifi.ssid == network.ssid
    assert payload.wifi.password == network.password
    assert payload.wifi.security == network.security
    assert payload.wifi.hidden == network.hidden
    assert payload.type == ("combined" if with_token else "wifi")
    assert payload.token == (TOKEN if with_token else "")


def test_token_cards_read_back() -> None:
    assert parse(token_payload(TOKEN)).token == TOKEN
    assert parse(TOKEN).token == TOKEN


@settings(max_examples=examples(200))
@given(st.text(max_size=60))
def test_ct_or_t_fields_hold_only_token_shaped_text(junk: str) -> None:
    """A card cannot smuggle arbitrary text in as a token: only token-shaped candidates."""
    for text in (f"WIFI:S:net;T:nopass;CT:{junk};;", f"CAMAGENT:T:{junk};;"):
        if refusal(parse, text, allowed=QrPayloadError):
            continue
        token = parse(text).token
        if not token:  # an empty CT: is a plain WiFi card
            continue
        assert _signed_shape(token) or _sealed_shape(token), token


def _signed_shape(token: str) -> bool:
    return token.count(".") == 1 and all(c.isascii() and (c.isalnum() or c in "-_.") for c in token)


def _sealed_shape(token: str) -> bool:
    if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", token) or len(token) % 4:
        return False
    return len(base64.b64decode(token)) >= MIN_SEALED_BYTES


@settings(max_examples=examples(200))
@given(st.binary(min_size=MIN_SEALED_BYTES, max_size=1200))
def test_any_sealed_token_rides_every_card_form(blob: bytes) -> None:
    """A camera's card holds its sealed token (docs/design.md §2.9): whatever its bytes,
    the bare text, `CAMAGENT:T:` and a combined WiFi card read back the same token."""
    sealed = base64.b64encode(blob).decode()
    network = WifiNetwork("site", "password1", "WPA")
    for text in (sealed, token_payload(sealed), wifi_payload(network, sealed)):
        payload = parse(text)
        assert payload.token == sealed
        assert payload.type == ("combined" if text.startswith("WIFI:") else "token")


@settings(max_examples=examples(200))
@given(st.binary(max_size=MIN_SEALED_BYTES - 1))
def test_short_base64_is_text_not_a_token(blob: bytes) -> None:
    """Base64 too short to hold a sealed token is shown as text, never offered as one."""
    assert parse(base64.b64encode(blob).decode()).type == "text"
