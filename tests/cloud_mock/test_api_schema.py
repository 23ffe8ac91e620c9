"""The schema and the server agree (issue 23): what docs/api/openapi.yaml allows for the
device ID, the poll's nonce and proof, an NVR's secret, an activation code and an integer
is what the server takes, no more and no less."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import WireError
from agent.nvr import activation_code
from agent.provisioning.wire import b64decode_strict, json_integer, normalize_device_id
from cloud_mock.api import ApiError, get_int
from cloud_mock.conformance.documents import openapi_document
from cloud_mock.provisioning import parse_poll

SCHEMAS: dict[str, Any] = openapi_document()["components"]["schemas"]
DEVICE_ID = re.compile(SCHEMAS["DeviceId"]["pattern"])
NONCE = re.compile(SCHEMAS["PollRequest"]["properties"]["nonce"]["pattern"])
PROOF = re.compile(SCHEMAS["PollRequest"]["properties"]["proof"]["pattern"])
SECRET = re.compile(SCHEMAS["RegisterCode"]["properties"]["secret"]["pattern"])
CODE = SCHEMAS["ActivationCode"]
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
GOOD_NONCE = base64.b64encode(bytes(16)).decode()
GOOD_PROOF = base64.b64encode(bytes(32)).decode()


def _server_takes_id(text: str) -> bool:
    try:
        normalize_device_id(text)
    except WireError:
        return False
    return True


MISTYPED_MACS = [
    "02:AA:BB:CC:DD:O7",  # the letter O
    "O2-CA-FE-00-00-01",
    "02:aa:bb:cc:dd:0g",
    "02:aa:bb:cc:dd:ee:",  # a trailing separator
    "02aabbccddee.",
    "02ca.fe00.0001",  # the dotted form
    "02:aa:bb:cc:dd",  # five octets
    "02:aa:bb:cc:dd:ee:ff",  # seven
    "2:aa:bb:cc:dd:ee",
    "02:aa-bb:cc:dd:ee",  # two separators
    "02aabbccddOe",  # twelve, a lookalike
    "I2aabbccddee",
]
GOOD_IDS = [
    "02:77:31:d1:af:ae",
    "02-77-31-D1-AF-AE",
    "027731d1afae",
    "cam-lobby-01",
    "SN0001234567890",
    "0123456789abcdef",  # hex, not 12 long: a serial number
    "camera@site.example",
    "a",
    "A" * 128,
]


@pytest.mark.parametrize("text", MISTYPED_MACS + GOOD_IDS + ["", "-cam", "a" * 129, "cam one"])
def test_device_id_pattern_takes_what_the_server_takes(text: str) -> None:
    assert bool(DEVICE_ID.fullmatch(text)) == _server_takes_id(text), text
    assert _server_takes_id(text) == (text in GOOD_IDS), text


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFoOiIlLgGzZ:-._@ ", max_size=20))
def test_device_id_pattern_is_the_grammar(text: str) -> None:
    # White space around an ID is the one thing the server forgives and the pattern not.
    assert bool(DEVICE_ID.fullmatch(text)) == (_server_takes_id(text) and text == text.strip())


@settings(max_examples=300, deadline=None)
@given(st.from_regex(DEVICE_ID, fullmatch=True))
def test_every_id_the_pattern_generates_is_taken(text: str) -> None:
    assert _server_takes_id(text.strip()), text


def _poll_with(**fields: Any) -> bytes:
    body = {"device_id": "cam-1", "ts": 1_800_000_000, "nonce": GOOD_NONCE, "proof": GOOD_PROOF}
    body.update(fields)
    return json.dumps(body).encode()


def _poll_accepted(**fields: Any) -> bool:
    try:
        parse_poll(_poll_with(**fields))
    except WireError:
        return False
    return True


PADDING = st.sampled_from(["", "=", "==", "===", "=A", "A="])
# Strings near each pattern's length, padded or not, and some of anything base64-like.
base64ish = st.one_of(
    st.builds(str.__add__, st.text(alphabet=B64, min_size=41, max_size=45), PADDING),
    st.builds(str.__add__, st.text(alphabet=B64, min_size=20, max_size=24), PADDING),
    st.text(alphabet=B64 + "=", min_size=18, max_size=48),
)


@settings(max_examples=800, deadline=None)
@given(base64ish)
def test_proof_and_nonce_patterns_take_what_the_poll_takes(text: str) -> None:
    assert bool(PROOF.fullmatch(text)) == _poll_accepted(proof=text), text
    assert bool(NONCE.fullmatch(text)) == _poll_accepted(nonce=text), text


def test_a_proof_of_31_bytes_in_44_characters_is_refused_by_both() -> None:
    short = base64.b64encode(bytes(31)).decode()
    assert len(short) == 44
    assert not PROOF.fullmatch(short)
    assert not _poll_accepted(proof=short)
    assert PROOF.fullmatch(GOOD_PROOF)
    assert _poll_accepted(proof=GOOD_PROOF)


@settings(max_examples=500, deadline=None)
@given(base64ish)
def test_secret_pattern_is_base64_of_32_bytes(text: str) -> None:
    try:
        size: int | None = len(b64decode_strict(text, "secret"))
    except WireError:
        size = None
    assert bool(SECRET.fullmatch(text)) == (size == 32), text


def test_the_activation_code_schema_is_the_12_characters() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **CODE}
    validator = jsonschema.Draft202012Validator(schema)
    for example in CODE["examples"]:
        assert validator.is_valid(example)
        assert activation_code.parse(example) == example.upper()
    generated = activation_code.generate()
    for spelling in (generated, generated.replace("-", ""), generated.lower()):
        assert validator.is_valid(spelling), spelling
        assert activation_code.parse(spelling) == generated
    for wrong in ("ABCD-EFGH-JK1", "ABCD-EFGH-JK133", "ABCD-EFGH-JKU3", "ABCD--EFGH-JK13"):
        assert not validator.is_valid(wrong), wrong
    assert CODE["minLength"] == 12
    assert CODE["maxLength"] == 14


@pytest.mark.parametrize(
    ("value", "expected"),
    [(98, 98), (98.0, 98), (1e2, 100), (-0.0, 0), (98.5, None), (True, None), ("98", None)],
)
def test_integers_are_what_json_schema_calls_integers(value: object, expected: int | None) -> None:
    assert json_integer(value) == expected
    schema = {"type": "integer"}
    assert jsonschema.Draft202012Validator(schema).is_valid(value) == (expected is not None)


def test_get_int_takes_an_integral_float_and_still_checks_the_range() -> None:
    assert get_int({"days": 30.0}, "days", minimum=1, maximum=365) == 30
    assert isinstance(get_int({"days": 30.0}, "days", minimum=1, maximum=365), int)
    with pytest.raises(ApiError, match="must be an integer"):
        get_int({"days": 30.5}, "days", minimum=1, maximum=365)
    with pytest.raises(ApiError, match="from 1 to 365"):
        get_int({"days": 1e3}, "days", minimum=1, maximum=365)
    with pytest.raises(ApiError, match="must be an integer"):
        get_int({"days": float("inf")}, "days", minimum=1, maximum=365)


def test_a_poll_takes_integral_floats_for_ts_and_wait() -> None:
    poll = parse_poll(_poll_with(ts=1.8e9, wait=30.0))
    assert (poll.ts, poll.wait) == (1_800_000_000, 30)
    assert isinstance(poll.ts, int)
    assert isinstance(poll.wait, int)
    with pytest.raises(WireError, match="ts must be an integer"):
        parse_poll(_poll_with(ts=1.8e9 + 0.5))
    with pytest.raises(WireError, match="wait must be an integer"):
        parse_poll(_poll_with(wait=1.5))
    with pytest.raises(WireError, match="wait must be an integer"):
        parse_poll(_poll_with(wait=301.0))
