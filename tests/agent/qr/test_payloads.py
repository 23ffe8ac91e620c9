"""QR payloads: WiFi escaping, field orders, WPA3 forms, tokens, combined cards, and
hostile or truncated text — never anything but a clear QrPayloadError."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import CamagentError, QrPayloadError
from agent.qr import make
from agent.qr.payloads import WifiNetwork, escape, parse, token_payload, wifi_payload
from tests.agent.tokens import sealed, signed

TOKEN = "eyJhbGciOiJFZERTQSJ9." + "A" * 86
SEALED = sealed(signed())  # a camera's card: its token sealed under its K (§2.9)


def _wifi(text: str) -> WifiNetwork:
    """The network of a card that must hold one."""
    wifi = parse(text).wifi
    assert wifi is not None, text
    return wifi


@pytest.mark.parametrize(
    ("text", "ssid", "password", "security", "hidden"),
    [
        ("WIFI:T:WPA;S:mynetwork;P:mypass123;;", "mynetwork", "mypass123", "WPA", False),
        ("WIFI:S:mynetwork;T:WPA;P:mypass123;H:true;;", "mynetwork", "mypass123", "WPA", True),
        ("WIFI:P:mypass123;H:false;S:mynetwork;T:WPA2;;", "mynetwork", "mypass123", "WPA", False),
        ("WIFI:T:nopass;S:open cafe;;", "open cafe", "", "nopass", False),
        ("WIFI:S:open;;", "open", "", "nopass", False),
        ("WIFI:T:WEP;S:old;P:0123456789;;", "old", "0123456789", "WEP", False),
        ("WIFI:T:SAE;S:new;P:longpassword;;", "new", "longpassword", "SAE", False),
        ("WIFI:T:WPA3;S:new;P:longpassword;;", "new", "longpassword", "SAE", False),
        (
            r"WIFI:T:WPA;S:a\;b\,c\:d\"e\\f;P:p\;q\,r\:s\"t\\u;;",
            'a;b,c:d"e\\f',
            'p;q,r:s"t\\u',
            "WPA",
            False,
        ),
        ('WIFI:T:WPA;S:"123";P:"quoted pass";;', "123", "quoted pass", "WPA", False),
        ("wifi:t:wpa;s:lower;p:password1;;", "lower", "password1", "WPA", False),
        (
            "WIFI:T:WPA;S:Caf\u00e9 \u2615;P:m\u00f6t\u00f6rhead;;",
            "Caf\u00e9 \u2615",
            "m\u00f6t\u00f6rhead",
            "WPA",
            False,
        ),
        ("WIFI:T:WPA;S:trunc;P:password1", "trunc", "password1", "WPA", False),  # no ;;
    ],
)
def test_wifi_cards(text: str, ssid: str, password: str, security: str, hidden: bool) -> None:
    payload = parse(text)
    assert payload.type == "wifi"
    assert payload.wifi == WifiNetwork(ssid, password, security, hidden)


def test_wpa3_percent_encoded_form() -> None:
    payload = parse("WIFI:T:WPA;R:1;S:my%3Bnet%20%F0%9F%93%B7;P:pa%25ss%3Aword;K:MDkwEwYH;;")
    assert payload.wifi is not None
    assert payload.wifi.ssid == "my;net \U0001f4f7"
    assert payload.wifi.password == "pa%ss:word"
    assert payload.wifi.security == "SAE"
    # R:0 keeps WPA2 compatibility on: still a WPA network
    assert _wifi("WIFI:T:WPA;R:0;S:x;P:password1;;").security == "WPA"


def test_combined_and_token_cards() -> None:
    combined = parse(f"WIFI:T:WPA;S:site;P:password1;CT:{TOKEN};;")
    assert combined.type == "combined"
    assert combined.token == TOKEN
    assert combined.wifi is not None
    assert combined.wifi.ssid == "site"
    assert parse(TOKEN) == parse(TOKEN)
    assert parse(TOKEN).type == "token"
    assert parse(TOKEN).token == TOKEN
    assert parse(f"CAMAGENT:T:{TOKEN};;").token == TOKEN
    assert parse(f"  {TOKEN}\n").token == TOKEN


def test_a_cameras_sealed_token_is_a_token_on_every_card() -> None:
    for text in (
        SEALED,
        f"  {SEALED}\n",
        f"CAMAGENT:T:{SEALED};;",
        f"WIFI:T:WPA;S:site;P:password1;CT:{SEALED};;",
    ):
        assert parse(text).token == SEALED
    assert parse(SEALED).type == "token"
    # Base64 too short to hold a token, or not canonical, is text.
    assert parse("SGVsbG8gd29ybGQ=").type == "text"
    assert parse(SEALED[:-4] + "A").type == "text"
    with pytest.raises(QrPayloadError, match="does not hold a camagent token"):
        parse("CAMAGENT:T:SGVsbG8gd29ybGQ=;;")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("https://cloud.example.com/x?y=1", "url"),
        ("HTTP://A.B", "url"),
        ("MEBKM:URL:http\\://en.wikipedia.org;;", "text"),
        ("hello world", "text"),
        ("a.b.c", "text"),
        ("", "text"),
        ("ftp://x", "text"),
    ],
)
def test_everything_else_is_url_or_text(text: str, kind: str) -> None:
    assert parse(text).type == kind


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("WIFI:T:WPA;P:password1;;", "no network name"),
        ("WIFI:T:WPA;S:x;;", "needs a password"),
        ("WIFI:T:WPA;S:x;P:short;;", "8 to 63"),
        ("WIFI:T:WPA9;S:x;P:password1;;", "is not WPA"),
        ("WIFI:T:WPA;S:x;P:password1;H:maybe;;", "H:"),
        ("WIFI:T:WPA;S:x;S:y;P:password1;;", "appears twice"),
        ("WIFI:T:WPA;S:x;P:password1\\", "lone backslash"),
        ("WIFI:T:WPA;S:" + "x" * 33 + ";P:password1;;", "32 bytes"),
        ("WIFI:T:WPA;S:x;P:password1;CT:not-a-token;;", "CT:"),
        ("WIFI:T:WPA;R:zz;S:x;P:password1;;", "R:"),
        ("WIFI:garbage;;", "has no ':'"),
        ("CAMAGENT:T:;;", "no token"),
        ("CAMAGENT:T:nope;;", "does not hold"),
    ],
)
def test_malformed_payloads_say_why(text: str, words: str) -> None:
    with pytest.raises(QrPayloadError, match=words.replace("\\", "\\\\")):
        parse(text)


@given(st.text(max_size=300))
def test_any_text_parses_or_is_a_clear_error(text: str) -> None:
    try:
        payload = parse(text)
    except QrPayloadError as exc:
        message = str(exc)
        assert message.startswith(("WIFI:", "CAMAGENT:"))
    else:
        assert payload.type in ("wifi", "token", "combined", "url", "text")


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_truncated_wifi_payloads_never_crash(tail: str) -> None:
    for cut in range(0, len(tail) + 1, 7):
        with contextlib.suppress(QrPayloadError):
            parse("WIFI:" + tail[:cut])


HOSTILE = st.text(
    alphabet=st.sampled_from(list(';,:"\\ aZ\u00e9\u4e2d\U0001f4f7')), min_size=1, max_size=12
)


@given(
    ssid=HOSTILE,
    password=st.text(
        alphabet=st.sampled_from(list(';,:"\\ aZ\u00e9\u4e2d')), min_size=8, max_size=40
    ),
    hidden=st.booleans(),
    security=st.sampled_from(["WPA", "SAE", "WEP"]),
)
def test_make_then_parse_round_trips_any_network(
    ssid: str, password: str, hidden: bool, security: str
) -> None:
    if len(ssid.encode()) > 32 or ssid.strip() != ssid:
        return
    network = WifiNetwork(ssid, password, security, hidden)
    for token in ("", TOKEN):
        payload = parse(wifi_payload(network, token))
        assert payload.wifi == network
        assert payload.token == token
        assert payload.type == ("combined" if token else "wifi")


def test_escape_and_token_payload() -> None:
    assert escape('a;b,c:d"e\\f') == 'a\\;b\\,c\\:d\\"e\\\\f'
    assert token_payload(TOKEN) == f"CAMAGENT:T:{TOKEN};;"


def _args(**kw: object) -> argparse.Namespace:
    base = {
        "qr_kind": "wifi",
        "ssid": "x",
        "password": "",
        "security": None,
        "hidden": False,
        "token": "",
        "png": None,
    }
    return argparse.Namespace(**{**base, **kw})


def test_qr_make_builds_what_was_asked_and_refuses_bad_cards(tmp_path: Path) -> None:
    assert _wifi(make.payload_from_args(_args(password="password1"))).security == "WPA"
    assert _wifi(make.payload_from_args(_args())).security == "nopass"
    combined = make.payload_from_args(_args(password="password1", token=TOKEN))
    assert parse(combined).type == "combined"
    assert make.payload_from_args(argparse.Namespace(qr_kind="token", token=TOKEN)) == (
        f"CAMAGENT:T:{TOKEN};;"
    )
    assert make.payload_from_args(argparse.Namespace(qr_kind="token", token=SEALED)) == (
        f"CAMAGENT:T:{SEALED};;"
    )
    assert parse(make.payload_from_args(_args(password="password1", token=SEALED))).token == (
        SEALED
    )
    with pytest.raises(CamagentError, match="8 to 63"):
        make.payload_from_args(_args(password="short"))
    with pytest.raises(CamagentError, match="would read as text"):
        make.payload_from_args(argparse.Namespace(qr_kind="url", url="not a url"))
    with pytest.raises(CamagentError, match="does not hold a camagent token"):
        make.payload_from_args(argparse.Namespace(qr_kind="token", token="garbage"))
    drawing = make.terminal(combined)
    assert max(len(line) for line in drawing.splitlines()) <= 80
    png = tmp_path / "card.png"
    make.write_png(combined, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("CAMAGENT:ID:cam1;;", "no password"),
        ("CAMAGENT:PW:secret;;", "label ID"),
        ("CAMAGENT:ID:bad id;PW:secret;;", "label ID"),
        ("CAMAGENT:ID:cam1;PW:a\x07b;;", "control characters"),
    ],
)
def test_broken_labels_say_why(text: str, words: str) -> None:
    with pytest.raises(QrPayloadError, match=words):
        parse(text)


def test_a_label_is_never_applicable() -> None:
    from agent.qr.payloads import APPLICABLE, Label, label_payload

    payload = parse(label_payload(Label("00:11:22:33:44:55", "UH4YH-BEMUV-THWDS")))
    assert payload.type == "label"
    assert payload.type not in APPLICABLE


# ZXing's WifiParsedResultTestCase (core/src/test/java/com/google/zxing/client/result/,
# zxing/zxing at e4ff7d9b; Copyright 2007 ZXing authors, Apache License 2.0): its inputs
# and expected SSID/password/type, as a table. ZXing only parses; a joining device must
# also refuse what no network accepts, so two rows differ on purpose (see `refused`).
ZXING_WIFI_CASES = [
    # (payload, ssid, password, zxing type, our security or the reason we refuse)
    ("WIFI:S:NoPassword;P:;T:;;", "NoPassword", "", "nopass", "nopass"),
    ("WIFI:S:No Password;P:;T:;;", "No Password", "", "nopass", "nopass"),
    ("WIFI:S:TenChars;P:0123456789;T:WEP;;", "TenChars", "0123456789", "WEP", "WEP"),
    ("WIFI:S:TenChars;P:abcde56789;T:WEP;;", "TenChars", "abcde56789", "WEP", "WEP"),
    ("WIFI:S:TenChars;P:hellothere;T:WEP;;", "TenChars", "hellothere", "WEP", "WEP"),
    (r"WIFI:S:Ten\;\;Chars;P:0123456789;T:WEP;;", "Ten;;Chars", "0123456789", "WEP", "WEP"),
    (r"WIFI:S:Ten\:\:Chars;P:0123456789;T:WEP;;", "Ten::Chars", "0123456789", "WEP", "WEP"),
    ("WIFI:S:TenChars;P:wow;T:WPA;;", "TenChars", "wow", "WPA", "refused: 8 to 63"),
    (
        "WIFI:S:TenChars;P:space is silent;T:WPA;;",
        "TenChars",
        "space is silent",
        "WPA",
        "WPA",
    ),
    (r"WIFI:S:TenChars;P:hello\;there;T:WEP;;", "TenChars", "hello;there", "WEP", "WEP"),
    (r"WIFI:S:TenChars;P:hello\:there;T:WEP;;", "TenChars", "hello:there", "WEP", "WEP"),
    (r"WIFI:T:WPA;S:test;P:my_password\\;;", "test", "my_password\\", "WPA", "WPA"),
]


@pytest.mark.parametrize(("text", "ssid", "password", "zxing_type", "ours"), ZXING_WIFI_CASES)
def test_zxing_wifi_cases(text: str, ssid: str, password: str, zxing_type: str, ours: str) -> None:
    if ours.startswith("refused: "):
        with pytest.raises(QrPayloadError, match=ours.removeprefix("refused: ")):
            parse(text)
        return
    wifi = parse(text).wifi
    assert wifi is not None
    assert (wifi.ssid, wifi.password, wifi.security) == (ssid, password, ours)
    assert ours == {"nopass": "nopass", "WEP": "WEP", "WPA": "WPA"}[zxing_type]


@pytest.mark.parametrize(
    ("text", "ssid", "password"),
    [
        (r"WIFI:T:WPA;S:net;P:\"abcdefgh\";;", "net", '"abcdefgh"'),  # escaped: kept
        ('WIFI:T:WPA;S:net;P:"abcdefgh";;', "net", "abcdefgh"),  # unescaped: stripped
        (r'WIFI:T:WPA;S:net;P:"abc\"defgh";;', "net", 'abc"defgh'),
        (r'WIFI:T:WPA;S:net;P:\"abcdefgh";;', "net", '"abcdefgh"'),  # one escaped end
        (r"WIFI:T:WPA;S:\"q\";P:password1;;", '"q"', "password1"),
        ('WIFI:T:WPA;S:a"b;P:pass"word;;', 'a"b', 'pass"word'),
        ('WIFI:T:WPA;S:";P:password1;;', '"', "password1"),  # a lone quote is a character
    ],
)
def test_only_unescaped_surrounding_quotes_are_stripped(
    text: str, ssid: str, password: str
) -> None:
    wifi = parse(text).wifi
    assert wifi is not None
    assert (wifi.ssid, wifi.password) == (ssid, password)


def test_a_quoted_password_made_by_qr_make_round_trips() -> None:
    network = WifiNetwork("net", '"abcdefgh"', "WPA")
    assert parse(wifi_payload(network)).wifi == network


@pytest.mark.parametrize("bad", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9f"])
def test_control_characters_are_refused_by_one_rule_on_qr_and_lan(bad: str) -> None:
    from agent.local_api import bodies

    ssid, password = f"net{bad}x", f"pass{bad}word1"
    with pytest.raises(QrPayloadError, match="network name holds"):
        parse(f"WIFI:T:WPA;S:{escape(ssid)};P:password1;;")
    with pytest.raises(QrPayloadError, match="password holds"):
        parse(f"WIFI:T:WPA;S:net;P:{escape(password)};;")
    with pytest.raises(bodies.ApiError, match="ssid holds"):
        bodies.wifi({"ssid": ssid, "password": "password1"})
    with pytest.raises(bodies.ApiError, match="password holds"):
        bodies.wifi({"ssid": "net", "password": password})
    # What is not a control character passes both: a space, non-ASCII letters, an emoji.
    fine = WifiNetwork("Caf\u00e9 \U0001f4f7", "p\u00e4ss w\u00f6rd", "WPA")
    assert parse(wifi_payload(fine)).wifi == fine
    assert bodies.wifi({"ssid": fine.ssid, "password": fine.password}) == fine


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # No T: but a password: a WPA network in practice.
        ("WIFI:S:net;P:password1;;", WifiNetwork("net", "password1", "WPA")),
        ("WIFI:S:net;T:;P:password1;;", WifiNetwork("net", "password1", "WPA")),
        # T:nopass is taken at its word, whatever P: holds.
        ("WIFI:T:nopass;S:net;P:password1;;", WifiNetwork("net", "password1", "nopass")),
        # A WPA key as 64 hex digits, not a passphrase.
        ("WIFI:T:WPA;S:net;P:" + "aF0" * 21 + "9;;", WifiNetwork("net", "aF0" * 21 + "9", "WPA")),
        # K: alone is WPA3's form too: values are percent-encoded.
        ("WIFI:T:WPA;S:a%20b;P:pass%3Bword;K:abc;;", WifiNetwork("a b", "pass;word", "WPA")),
        # Without R: or K: a percent sign is a character.
        ("WIFI:T:WPA;S:a%20b;P:password1;;", WifiNetwork("a%20b", "password1", "WPA")),
        ("WIFI:T:WPA;R:;S:net;P:password1;;", WifiNetwork("net", "password1", "WPA")),
        ("WIFI:T:WPA;R: a ;S:net;P:password1;;", WifiNetwork("net", "password1", "SAE")),
        # R: decides only for WPA: WEP stays WEP.
        ("WIFI:T:WEP;R:1;S:net;P:password1;;", WifiNetwork("net", "password1", "WEP")),
        ("WIFI:T:WPA;S:net;P:password1;H: TRUE ;;", WifiNetwork("net", "password1", "WPA", True)),
        ("WIFI:T:WPA;S:net;P:password1;H:;;", WifiNetwork("net", "password1", "WPA")),
        # 32 bytes exactly (16 two-byte letters) is a network name.
        ("WIFI:T:WPA;S:" + "é" * 16 + ";P:password1;;", WifiNetwork("é" * 16, "password1", "WPA")),
    ],
)
def test_how_each_field_is_read(text: str, expected: WifiNetwork) -> None:
    payload = parse(text)
    assert (payload.type, payload.wifi) == ("wifi", expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("WIFI:T:WEP;S:x;;", "WIFI: a WEP network needs a password (P:)"),
        ("WIFI:T:WPA3;S:x;;", "WIFI: a SAE network needs a password (P:)"),
        ("WIFI:T:WPA;R:1;S:x;;", "WIFI: a SAE network needs a password (P:)"),
        ("WIFI:T:WPA;S:" + "é" * 17 + ";P:password1;;", "network name is longer than 32 bytes"),
        ("WIFI:T:WPA;S:x;P:" + "0" * 64 + "0;;", "8 to 63 characters"),
        ("WIFI:T:WPA;S:x;P:" + "g" * 64 + ";;", "8 to 63 characters"),
        ("WIFI:T:WPA;R:1;S:x;P:%0apassword;;", "the password holds a newline (U+000A)"),
        # Several faults: the first in a fixed order is the one reported.
        ("WIFI:T:bad;P:x;H:maybe;;", "no network name"),
        ("WIFI:T:bad;S:x;H:maybe;;", "security 'bad' is not WPA"),
        ("WIFI:T:WPA;S:x;P:short;H:maybe;;", "8 to 63"),
        ("WIFI:T:WPA;S:x;P:password1;H:maybe;R:zz;;", "H: must be true or false, not 'maybe'"),
        ("WIFI:T:WPA;S:x;P:password1;R:zz;CT:nope;;", "R: must be a hex number, not 'zz'"),
        ("WIFI:T:WPA;S:x;S:x;T:bad;;", "field S: appears twice"),
    ],
)
def test_the_first_fault_of_a_card_is_the_one_told(text: str, message: str) -> None:
    with pytest.raises(QrPayloadError) as caught:
        parse(text)
    assert message in str(caught.value)
