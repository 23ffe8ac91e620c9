"""Wire format v1 (docs/design.md §2.12), checked against values computed here independently."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import CamagentError, WireError
from agent.provisioning.wire import (
    MAX_TS,
    PollRequest,
    derive_key,
    new_nonce,
    normalize_device_id,
    poll_proof,
    proof_matches,
    seal_token,
    unseal_token,
)
from tests.examples import examples

DEVICE = "aa:bb:cc:dd:ee:ff"


def independent_key(password: str, device_id: str) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=b"camagent-provisioning-v1|" + device_id.encode(),
        n=2**14,
        r=8,
        p=1,
        dklen=32,
        maxmem=64 * 1024 * 1024,
    )


def independent_proof(key: bytes, device_id: str, ts: int, nonce: str) -> str:
    digest = hmac.new(key, f"{device_id}\n{ts}\n{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def independent_seal(key: bytes, device_id: str, token: bytes, nonce12: bytes) -> bytes:
    return base64.b64encode(nonce12 + AESGCM(key).encrypt(nonce12, token, device_id.encode()))


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


# -- device IDs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "aa:bb:cc:dd:ee:ff",
        "AA:BB:CC:DD:EE:FF",
        "aa-bb-cc-dd-ee-ff",
        "AA-BB-CC-DD-EE-FF",
        "aabbccddeeff",
        "AABBCCDDEEFF",
        "Aa:bB:cC:Dd:eE:fF",
        "  aa:bb:cc:dd:ee:ff\n",
    ],
)
def test_mac_forms_normalize_to_lower_case_colons(raw: str) -> None:
    assert normalize_device_id(raw) == "aa:bb:cc:dd:ee:ff"


def test_normalizing_is_idempotent() -> None:
    for raw in ("01-23-45-67-89-AB", "cam-01", "0123456789ab"):
        once = normalize_device_id(raw)
        assert normalize_device_id(once) == once
    assert normalize_device_id("01-23-45-67-89-AB") == "01:23:45:67:89:ab"


@pytest.mark.parametrize("raw", ["aa:bb-cc:dd:ee:ff", "aa:bbcc:dd:ee:ff", "AA-BB-CC:DD:EE:FF"])
def test_mixed_separators_are_not_taken_for_a_mac(raw: str) -> None:
    # Either refused or kept verbatim as an explicit ID, never silently "fixed" into a MAC.
    try:
        result = normalize_device_id(raw)
    except WireError:
        return
    assert result == raw


@pytest.mark.parametrize(
    "raw",
    [
        "aa:bb:cc:dd:ee",  # 5 octets
        "aa:bb:cc:dd:ee:ff:00",  # 7 octets
        "aa-bb-cc-dd-ee-f",  # a digit short
        "aa:bb:cc:dd:ee:fff",
        "aa:bb-cc:dd:ee:ff",  # separators mixed
        "1:2:3:4:5:6",
    ],
)
def test_a_mac_looking_id_must_be_six_octets(raw: str) -> None:
    with pytest.raises(WireError, match="6 octets") as info:
        normalize_device_id(raw)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    "raw", ["cam-01", "Camera.Lobby_2", "serial@factory", "x", "SN:12:AB", "a" * 128]
)
def test_explicit_ids_are_kept_as_given(raw: str) -> None:
    assert normalize_device_id(raw) == raw


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "-leading-dash", "has space", "a/b", "caméra", "semi;colon", "a" * 129, "é"],
)
def test_invalid_ids_raise_a_clear_wire_error(raw: str) -> None:
    with pytest.raises(WireError) as info:
        normalize_device_id(raw)
    message = str(info.value)
    assert repr(raw) in message
    assert "MAC" in message
    assert isinstance(info.value, CamagentError)


# -- key derivation and proof ------------------------------------------------------------


def test_derive_key_is_the_scrypt_of_the_design() -> None:
    key = derive_key("label-pass 42", DEVICE)
    assert len(key) == 32
    assert key == independent_key("label-pass 42", DEVICE)
    # The device ID is part of the salt: the same password elsewhere gives another key.
    assert key != independent_key("label-pass 42", "aa:bb:cc:dd:ee:00")


def test_poll_proof_is_hmac_sha256_of_id_ts_nonce(key: bytes) -> None:
    nonce = base64.b64encode(os.urandom(16)).decode()
    proof = poll_proof(key, DEVICE, 1_700_000_000, nonce)
    assert proof == independent_proof(key, DEVICE, 1_700_000_000, nonce)
    assert len(base64.b64decode(proof, validate=True)) == 32
    assert proof_matches(key, DEVICE, 1_700_000_000, nonce, proof)
    assert not proof_matches(key, DEVICE, 1_700_000_001, nonce, proof)
    assert not proof_matches(os.urandom(32), DEVICE, 1_700_000_000, nonce, proof)
    assert not proof_matches(key, "aa:bb:cc:dd:ee:00", 1_700_000_000, nonce, proof)


def test_new_nonce_is_base64_of_16_fresh_bytes() -> None:
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    assert all(len(base64.b64decode(n, validate=True)) == 16 for n in nonces)


def test_poll_request_build_carries_a_valid_proof(key: bytes) -> None:
    request = PollRequest.build(key, DEVICE, 1234567890, 50)
    body = request.to_json()
    assert set(body) == {"device_id", "ts", "nonce", "proof", "wait"}
    assert (body["device_id"], body["ts"], body["wait"]) == (DEVICE, 1234567890, 50)
    assert len(base64.b64decode(body["nonce"], validate=True)) == 16
    assert body["proof"] == independent_proof(key, DEVICE, 1234567890, body["nonce"])
    assert PollRequest.parse(json.dumps(body).encode()) == request


# -- sealed tokens -----------------------------------------------------------------------


def test_seal_opens_with_aesgcm_directly(key: bytes) -> None:
    sealed = seal_token(key, DEVICE, "the.token")
    blob = base64.b64decode(sealed, validate=True)
    assert AESGCM(key).decrypt(blob[:12], blob[12:], DEVICE.encode()) == b"the.token"
    assert seal_token(key, DEVICE, "the.token") != sealed  # a fresh nonce every time


def test_seal_unseal_round_trip(key: bytes) -> None:
    token = "eyJ2IjoxfQ.c2lnbmF0dXJl" * 20
    assert unseal_token(key, DEVICE, seal_token(key, DEVICE, token)) == token


def test_unseal_opens_an_independently_sealed_blob(key: bytes) -> None:
    sealed = independent_seal(key, DEVICE, "päyload.sig".encode(), os.urandom(12))
    assert unseal_token(key, DEVICE, sealed.decode()) == "päyload.sig"


def test_unseal_with_a_wrong_key_says_the_password_differs(key: bytes) -> None:
    sealed = seal_token(key, DEVICE, "tok")
    with pytest.raises(WireError, match="does not open with this device's key") as info:
        unseal_token(os.urandom(32), DEVICE, sealed)
    assert "password" in str(info.value)


def test_unseal_for_another_device_fails(key: bytes) -> None:
    sealed = seal_token(key, "aa:bb:cc:dd:ee:00", "tok")  # aad is the other device's ID
    with pytest.raises(WireError, match="does not open"):
        unseal_token(key, DEVICE, sealed)


def test_unseal_of_a_flipped_bit_fails(key: bytes) -> None:
    blob = bytearray(base64.b64decode(seal_token(key, DEVICE, "tok")))
    blob[-1] ^= 1
    with pytest.raises(WireError, match="does not open"):
        unseal_token(key, DEVICE, base64.b64encode(bytes(blob)).decode())


@pytest.mark.parametrize("keep", [0, 5, 12, 27])
def test_unseal_of_a_truncated_blob_is_too_short(key: bytes, keep: int) -> None:
    blob = base64.b64decode(seal_token(key, DEVICE, "tok"))
    with pytest.raises(WireError, match="too short"):
        unseal_token(key, DEVICE, base64.b64encode(blob[:keep]).decode())


def test_unseal_of_a_blob_cut_after_the_nonce_fails(key: bytes) -> None:
    blob = base64.b64decode(seal_token(key, DEVICE, "a longer token"))
    with pytest.raises(WireError, match="does not open"):
        unseal_token(key, DEVICE, base64.b64encode(blob[:-3]).decode())


@pytest.mark.parametrize("sealed", ["not base64!", "QUJD$", "QUJDRA", "äöü"])
def test_unseal_of_non_base64_says_so(key: bytes, sealed: str) -> None:
    with pytest.raises(WireError, match="sealed_token is not valid base64"):
        unseal_token(key, DEVICE, sealed)


@pytest.mark.parametrize("sealed", [None, 42, ["QUJD"], {"a": 1}])
def test_unseal_of_a_non_string_says_so(key: bytes, sealed: object) -> None:
    with pytest.raises(WireError, match="must be a base64 string"):
        unseal_token(key, DEVICE, sealed)  # type: ignore[arg-type]


def test_unseal_of_non_utf8_plaintext_says_so(key: bytes) -> None:
    sealed = independent_seal(key, DEVICE, b"\xff\xfe\xfd", os.urandom(12))
    with pytest.raises(WireError, match="not text"):
        unseal_token(key, DEVICE, sealed.decode())


# -- PollRequest.parse -------------------------------------------------------------------


def valid_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "device_id": DEVICE,
        "ts": 1_700_000_000,
        "nonce": base64.b64encode(b"n" * 16).decode(),
        "proof": base64.b64encode(b"p" * 32).decode(),
        "wait": 50,
    }
    body.update(changes)
    return body


def test_parse_a_valid_body() -> None:
    body = valid_body()
    request = PollRequest.parse(json.dumps(body).encode())
    assert request == PollRequest(DEVICE, 1_700_000_000, body["nonce"], body["proof"], 50)  # type: ignore[arg-type]
    assert request.to_json() == body


def test_parse_takes_integral_numbers_as_json_schema_does() -> None:
    """The document says integer; JSON Schema's integers include 1.7e9 and 50.0."""
    request = PollRequest.parse(json.dumps(valid_body(ts=1.7e9, wait=50.0)).encode())
    assert (request.ts, request.wait) == (1_700_000_000, 50)
    assert type(request.ts) is int
    assert type(request.wait) is int
    for bad in ({"ts": 1.7e9 + 0.5}, {"wait": 0.5}, {"ts": True}, {"wait": False}):
        with pytest.raises(WireError, match="must be an integer"):
            PollRequest.parse(json.dumps(valid_body(**bad)).encode())


def test_parse_without_wait_means_a_plain_poll() -> None:
    body = valid_body()
    del body["wait"]
    assert PollRequest.parse(json.dumps(body).encode()).wait == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"{}", "missing field(s): device_id, nonce, proof, ts"),
        (json.dumps({k: v for k, v in valid_body().items() if k != "proof"}), "proof"),
        (json.dumps(valid_body(device_id="")), "device_id"),
        (json.dumps(valid_body(device_id=5)), "device_id"),
        (json.dumps(valid_body(device_id="a" * 129)), "device_id"),
        (json.dumps(valid_body(ts="1700000000")), "ts must be an integer"),
        (json.dumps(valid_body(ts=True)), "ts must be an integer"),
        (json.dumps(valid_body(ts=1.5)), "ts must be an integer"),
        (json.dumps(valid_body(ts=10**309)), "ts must be an integer from 0 to"),
        (json.dumps(valid_body(ts=-1)), "ts must be an integer from 0 to"),
        (json.dumps(valid_body(ts=2**34 + 1)), "ts must be an integer from 0 to"),
        (json.dumps(valid_body(wait=-1)), "wait must be an integer from 0 to 300"),
        (json.dumps(valid_body(wait=301)), "wait must be an integer from 0 to 300"),
        (json.dumps(valid_body(wait=False)), "wait must be an integer"),
        (json.dumps(valid_body(wait="50")), "wait must be an integer"),
        (json.dumps(valid_body(nonce="short")), "nonce is not valid base64"),
        (json.dumps(valid_body(nonce=base64.b64encode(b"x" * 15).decode())), "16 bytes"),
        (json.dumps(valid_body(nonce=7)), "nonce must be a base64 string"),
        (json.dumps(valid_body(proof=base64.b64encode(b"x" * 31).decode())), "32 bytes"),
        (json.dumps(valid_body(proof="***")), "proof is not valid base64"),
    ],
)
def test_parse_names_the_first_problem(body: bytes | str, words: str) -> None:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(WireError) as info:
        PollRequest.parse(raw)
    assert words in str(info.value)


def check_parse(body: bytes) -> None:
    try:
        result = PollRequest.parse(body)
    except WireError:
        return
    assert isinstance(result, PollRequest)


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=400))
def test_parse_fuzz_bytes(body: bytes) -> None:
    check_parse(body)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(
        [
            base64.b64encode(b"n" * 16).decode(),
            base64.b64encode(b"p" * 32).decode(),
            DEVICE,
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["device_id", "ts", "nonce", "proof", "wait", "extra"]),
        json_values,
    )
    | json_values
)
def test_parse_fuzz_json_values(value: object) -> None:
    check_parse(json.dumps(value).encode())


@settings(max_examples=examples(200), deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "device_id": st.text(min_size=1, max_size=128),
            "ts": st.integers(0, MAX_TS),
            "nonce": st.binary(min_size=16, max_size=16).map(
                lambda b: base64.b64encode(b).decode()
            ),
            "proof": st.binary(min_size=32, max_size=32).map(
                lambda b: base64.b64encode(b).decode()
            ),
            "wait": st.integers(0, 300),
        }
    )
)
def test_parse_accepts_every_well_formed_body(body: dict[str, object]) -> None:
    request = PollRequest.parse(json.dumps(body).encode())
    assert request.to_json() == body


def test_parse_of_deeply_nested_json_is_a_wire_error() -> None:
    # json.loads raises RecursionError here, not ValueError
    with pytest.raises(WireError, match="nested too deeply"):
        PollRequest.parse(b"[" * 5000 + b"]" * 5000)


# Near misses of a MAC (issue 23): refused with the rule, never kept as explicit IDs.
@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("02:AA:BB:CC:DD:O7", "'O' is a letter, not the digit 0"),
        ("O2-CA-FE-00-00-01", "'O' is a letter, not the digit 0"),
        ("02:aa:bb:cc:dd:ee:", "separator at the start or the end"),
        (":02:aa:bb:cc:dd:ee", "separator at the start or the end"),
        ("02ca.fe00.0001", "dotted form"),
        ("02:aa:bb:cc:dd:0g", "'g' is not a hex digit"),
        ("02:aa:bb:cc:dd:I7", "'I' is a letter, not the digit 1"),
        ("02:aa:bb:cc:dd:l7", "'l' is a letter, not the digit 1"),
        ("02aabbccddO7", "'O' is a letter, not the digit 0"),
    ],
)
def test_mac_near_misses_are_refused_naming_the_rule(raw: str, hint: str) -> None:
    with pytest.raises(WireError) as info:
        normalize_device_id(raw)
    message = str(info.value)
    assert repr(raw) in message
    assert hint in message
    assert "exactly 6 octets of two hex digits" in message


@given(
    st.lists(st.integers(0, 255), min_size=6, max_size=6),
    st.sampled_from([":", "-", ""]),
    st.booleans(),
    st.integers(0, 11),
    st.sampled_from("OoIlgGzZ"),
)
@settings(max_examples=examples(200))
def test_one_wrong_character_in_a_mac_never_makes_an_id(
    octets: list[int], sep: str, upper: bool, where: int, wrong: str
) -> None:
    digits = list("".join(f"{o:02x}" for o in octets))
    digits[where] = wrong
    text = "".join(digits)
    text = sep.join(text[i : i + 2] for i in range(0, 12, 2))
    text = text.upper() if upper else text
    if sep == "" and wrong.lower() not in "oil":
        return  # twelve characters without separators may be a serial number
    with pytest.raises(WireError, match="6 octets"):
        normalize_device_id(text)


@given(st.lists(st.integers(0, 255), min_size=6, max_size=6), st.sampled_from([":", "-", ""]))
@settings(max_examples=examples(100))
def test_every_mac_spelling_has_one_canonical_form(octets: list[int], sep: str) -> None:
    canonical = ":".join(f"{o:02x}" for o in octets)
    for spelling in (canonical.replace(":", sep), canonical.replace(":", sep).upper()):
        assert normalize_device_id(spelling) == canonical
