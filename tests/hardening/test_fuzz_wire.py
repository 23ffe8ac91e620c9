"""Fuzzing the provisioning wire format: poll bodies (the cloud side) and sealed tokens and
device IDs (the device side). Anything malformed is a WireError that names the problem."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import WireError
from agent.provisioning.wire import (
    MAX_TS,
    MAX_WAIT_S,
    NONCE_BYTES,
    PollRequest,
    normalize_device_id,
    seal_token,
    unseal_token,
)
from tests.examples import examples
from tests.hardening.strategies import deep_nesting, json_bytes, json_values, refusal

KEY = bytes(range(32))
DEVICE = "aa:bb:cc:dd:ee:ff"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


field_values = st.one_of(
    json_values,
    st.builds(b64, st.binary(max_size=40)),
    st.integers(-10, MAX_WAIT_S + 10),
    st.just(DEVICE),
)
poll_bodies = st.dictionaries(
    st.sampled_from(["device_id", "ts", "nonce", "proof", "wait", "extra"]), field_values
)


@settings(max_examples=examples(600))
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(json_bytes, json_values),
        st.builds(json_bytes, poll_bodies),
        st.sampled_from([deep_nesting(100_000), b"{" * 50_000, b"\xff\xfe{}", b"NaN"]),
    )
)
def test_any_poll_body_parses_or_is_a_wire_error(body: bytes) -> None:
    if refusal(PollRequest.parse, body, allowed=WireError):
        return
    request = PollRequest.parse(body)
    assert isinstance(request.device_id, str)
    assert request.device_id
    assert isinstance(request.ts, int)
    assert 0 <= request.wait <= MAX_WAIT_S
    assert len(base64.b64decode(request.nonce)) == NONCE_BYTES
    assert len(base64.b64decode(request.proof)) == 32


@settings(max_examples=examples(100))
@given(st.integers(0, MAX_TS), st.integers(0, MAX_WAIT_S))
def test_a_built_poll_parses_back(ts: int, wait: int) -> None:
    request = PollRequest.build(KEY, DEVICE, ts, wait)
    assert PollRequest.parse(json.dumps(request.to_json()).encode()) == request


@settings(max_examples=examples(400))
@given(st.one_of(json_values, st.builds(b64, st.binary(max_size=120))))
def test_any_sealed_token_opens_or_is_a_wire_error(sealed: object) -> None:
    refusal(unseal_token, KEY, DEVICE, sealed, allowed=WireError)


@settings(max_examples=examples(200))
@given(st.text(max_size=200), st.integers(0, 200))
def test_a_sealed_token_opens_only_with_its_key_and_device(token: str, flip: int) -> None:
    sealed = seal_token(KEY, DEVICE, token)
    assert unseal_token(KEY, DEVICE, sealed) == token
    with pytest.raises(WireError):
        unseal_token(bytes(32), DEVICE, sealed)
    with pytest.raises(WireError):
        unseal_token(KEY, "11:22:33:44:55:66", sealed)
    raw = bytearray(base64.b64decode(sealed))
    raw[flip % len(raw)] ^= 0x01
    with pytest.raises(WireError):
        unseal_token(KEY, DEVICE, b64(bytes(raw)))


@settings(max_examples=examples(400))
@given(st.one_of(st.text(max_size=150), st.text("0123456789abcdefABCDEF:-", max_size=20)))
def test_any_device_id_normalizes_or_is_refused(raw: str) -> None:
    if refusal(normalize_device_id, raw, allowed=WireError):
        return
    canonical = normalize_device_id(raw)
    assert normalize_device_id(canonical) == canonical
    assert 0 < len(canonical) <= 128
    assert "\n" not in canonical  # it goes into the HMAC message line by line
