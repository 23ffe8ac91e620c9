"""Body validation: every bad body is one clear ApiError, never anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.local_api import bodies
from agent.local_api.bodies import ApiError
from agent.qr.payloads import WifiNetwork

JSON = "application/json"


def status_of(raw: bytes, content_type: str = JSON, *, required: bool = True) -> int:
    try:
        bodies.json_object(raw, content_type, required=required)
    except ApiError as exc:
        return exc.status
    return 200


def test_statuses() -> None:
    assert status_of(b'{"token": "x"}') == 200
    assert status_of(b'{"token": "x"}', "application/json; charset=utf-8") == 200
    assert status_of(b"", required=False) == 200
    assert status_of(b"") == 400
    assert status_of(b"{x") == 400
    assert status_of(b"[]") == 400
    assert status_of(b"\xff") == 400
    assert status_of(b"{}", "text/plain") == 415
    assert status_of(b"x" * (bodies.MAX_BODY_BYTES + 1)) == 413


def test_deep_nesting_is_a_400() -> None:
    assert status_of(b"[" * 8000 + b"]" * 8000) == 400


def test_token_body() -> None:
    assert bodies.token({"token": "  a.b \n"}) == "a.b"
    for bad in ({}, {"token": 1}, {"token": " "}, {"token": "x", "more": 1}, {"token": "x" * 9000}):
        with pytest.raises(ApiError) as caught:
            bodies.token(bad)
        assert caught.value.status == 400


def test_wifi_body() -> None:
    assert bodies.wifi({"ssid": "home", "password": "12345678"}) == WifiNetwork(
        "home", "12345678", "WPA", False
    )
    assert bodies.wifi({"ssid": "cafe", "security": "nopass", "hidden": True}) == WifiNetwork(
        "cafe", "", "nopass", True
    )
    assert bodies.wifi({"ssid": "w", "password": "abcde", "security": "WEP"}).security == "WEP"
    assert bodies.wifi({"ssid": "s", "password": "x", "security": "SAE"}).security == "SAE"
    assert bodies.wifi({"ssid": "h", "password": "a" * 64}).password == "a" * 64


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"password": "12345678"}, "ssid is missing"),
        ({"ssid": ""}, "ssid is empty"),
        ({"ssid": "é" * 17}, "32 bytes"),
        ({"ssid": "a", "password": "short"}, "8 to 63"),
        ({"ssid": "a", "password": "g" * 64}, "8 to 63"),
        ({"ssid": "a", "password": "x", "security": "nopass"}, "takes no password"),
        ({"ssid": "a", "security": "WPA"}, "needs a password"),
        ({"ssid": "a", "password": "abcdef", "security": "WEP"}, "WEP key"),
        ({"ssid": "a", "security": "WPA2", "password": "12345678"}, "one of"),
        ({"ssid": "a", "hidden": "yes"}, "true or false"),
        ({"ssid": "a", "pasword": "12345678"}, "unknown field"),
        ({"ssid": "a", "password": "1234567\n8"}, "newline"),
    ],
)
def test_wifi_refusals_say_why(body: dict[str, object], words: str) -> None:
    with pytest.raises(ApiError) as caught:
        bodies.wifi(body)
    assert caught.value.status == 400
    assert words in caught.value.message


@given(st.binary(max_size=300), st.sampled_from([JSON, "text/plain", ""]))
def test_any_bytes_give_an_object_or_an_api_error(raw: bytes, content_type: str) -> None:
    try:
        data: object = bodies.json_object(raw, content_type, required=False)
    except ApiError as exc:
        data = exc.status
    assert isinstance(data, dict) or data in (400, 413, 415)


@given(st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.integers() | st.text()))
def test_any_object_gives_a_network_or_an_api_error(data: dict[str, object]) -> None:
    try:
        outcome: object = bodies.wifi(json.loads(json.dumps(data))).ssid
    except ApiError as exc:
        outcome = exc.status
    assert outcome == 400 or (isinstance(outcome, str) and outcome)
