"""Fuzzing the device's local HTTPS API, the one surface open to anyone on the LAN.

In-process: the Digest header parser and verifier, the body readers and the lockout file
reader take any input and answer with a verdict, a value or an ApiError. Then a real
daemon (subprocess, local API on 127.0.0.1, certificate pinned by its fingerprint, aiohttp's
Digest client) gets random bodies, content types and Authorization headers on every
route: every answer is below 500 and JSON `{error, message}`, and the daemon and its state
survive. The daemon runs with an empty PATH so that no WiFi tool can be reached.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.local_api import bodies, digest, lockout
from agent.local_api.bodies import ApiError
from benchmarks.crash_bench import Daemon, Device, Harness
from tests.examples import examples
from tests.hardening.strategies import deep_nesting, json_values, refusal

ROUTES = ["/v1/token", "/v1/reset", "/v1/poll-now", "/v1/wifi", "/v1/cloud-registration"]
NOW = 1_700_000_000.0

digest_params = st.dictionaries(
    st.sampled_from(
        ["username", "realm", "nonce", "uri", "qop", "nc", "cnonce", "response", "algorithm",
         "userhash", "opaque", "x"]
    ),
    st.one_of(st.text(max_size=30), st.sampled_from(["admin", "SHA-256", "auth", "00000001"])),
)  # fmt: skip
headers = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.builds(
        lambda params, quote: (
            "Digest " + ", ".join(f'{k}="{v}"' if quote else f"{k}={v}" for k, v in params.items())
        ),
        digest_params,
        st.booleans(),
    ),
)


@settings(max_examples=examples(500))
@given(headers, st.sampled_from(["POST", "GET"]), st.text(max_size=20))
def test_any_authorization_header_gets_a_verdict(
    header: str | None, method: str, target: str
) -> None:
    book = digest.NonceBook.for_this_boot()
    verdict = digest.verify(header, digest.Request(method, target), "password", book, NOW)
    assert verdict is not digest.Verdict.OK  # nothing random knows the password and nonce


def test_a_good_answer_with_a_forged_nonce_is_not_accepted() -> None:
    book, other = digest.NonceBook.for_this_boot(), digest.NonceBook.for_this_boot()
    nonce = other.make(NOW)  # right shape, signed by another boot
    response = digest.expected_response(
        username="admin", realm=digest.REALM, password="pw", method="POST",
        uri="/v1/reset", nonce=nonce, nc="00000001", cnonce="c",
    )  # fmt: skip
    header = (
        f'Digest username="admin", realm="{digest.REALM}", nonce="{nonce}", uri="/v1/reset", '
        f'qop=auth, nc=00000001, cnonce="c", response="{response}", algorithm=SHA-256'
    )
    verdict = digest.verify(header, digest.Request("POST", "/v1/reset"), "pw", book, NOW)
    assert verdict is digest.Verdict.UNKNOWN_NONCE


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(["token", "ssid", "password", "security", "hidden", "x"]), json_values
        ),
    ),
    st.sampled_from([deep_nesting(50_000), b"\xff", b" ", b"{}" * 9000]),
)


@settings(max_examples=examples(500))
@given(raw_bodies, st.sampled_from(["application/json", "text/plain", "", "application/JSON"]))
def test_any_body_is_a_value_or_an_api_error(raw: bytes, content_type: str) -> None:
    def read(required: bool) -> None:
        data = bodies.json_object(raw, content_type, required=required)
        for reader in (bodies.token, bodies.wifi, bodies.no_fields):
            refusal(reader, data, allowed=ApiError)

    for required in (True, False):
        message = refusal(read, required, allowed=ApiError)
        if message:
            assert len(message) < 300  # short enough for a person reading the answer


@settings(max_examples=examples(200))
@given(st.one_of(st.binary(max_size=100), st.builds(lambda v: json.dumps(v).encode(), json_values)))
def test_any_lockout_file_reads_as_a_state(content: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "lockout.json"
        path.write_bytes(content)
        policy = lockout.LockoutPolicy()
        table = lockout.Lockout(path, policy, clock=lambda: NOW)
        assert len(table.addresses) <= policy.max_addresses
        for address in [*table.addresses, "192.0.2.1"]:
            assert 0 <= table.retry_after(address, NOW) <= policy.max_s


# -- a real daemon ------------------------------------------------------------------------


class Lan:
    def __init__(self, device: Device, daemon: Daemon) -> None:
        self.device, self.daemon = device, daemon
        self.loop = asyncio.new_event_loop()
        local = daemon.local_api()
        self.base = f"https://127.0.0.1:{local['port']}"
        self.pin = aiohttp.Fingerprint(bytes.fromhex(local["fp"]))

        async def make() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

        self.session = self.loop.run_until_complete(make())

    def post(self, path: str, data: bytes, headers: dict[str, str], auth: bool) -> Any:
        async def go() -> tuple[int, str, bytes]:
            middlewares = (aiohttp.DigestAuthMiddleware("admin", self.device.password),)
            async with self.session.post(
                self.base + path,
                data=data,
                headers=headers,
                ssl=self.pin,
                middlewares=middlewares if auth else (),
            ) as answer:
                return answer.status, answer.content_type, await answer.read()

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    harness = Harness(tmp_path_factory.mktemp("fuzz-lan"), random.Random(0))
    device = harness.device("lan", local_api=True)
    device.set_token_directly(device.mint())
    daemon = Daemon(device, PATH="/nonexistent")
    daemon.start()
    lan = Lan(device, daemon)
    try:
        yield lan
    finally:
        lan.close()
        daemon.stop()


def test_the_fuzzer_gets_past_authentication(lan: Lan) -> None:
    """Not vacuous: with the password the requests reach the handlers."""
    json_type = {"Content-Type": "application/json"}
    status, _, answer = lan.post("/v1/token", b'{"token": "a.b"}', json_type, auth=True)
    assert status == 400
    assert json.loads(answer)["error"] == "token_refused"
    status, _, _ = lan.post("/v1/token", b'{"token": "a.b"}', json_type, auth=False)
    assert status == 401


@settings(
    max_examples=examples(150),
    deadline=None,  # each example is a real HTTPS (and Digest) round trip to a subprocess
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(ROUTES),
    body=raw_bodies,
    content_type=st.sampled_from(["application/json", "text/plain", None]),
    auth=st.one_of(st.just(True), headers),
)
def test_any_request_is_answered_below_500_with_json(
    lan: Lan, path: str, body: bytes, content_type: str | None, auth: bool | str | None
) -> None:
    sent: dict[str, str] = {} if content_type is None else {"Content-Type": content_type}
    if isinstance(auth, str) and auth.isascii() and auth.isprintable():
        sent["Authorization"] = auth
    status, kind, answer = lan.post(path, body, sent, auth is True)
    assert status < 500, (path, body[:100], answer[:300])
    assert kind == "application/json"
    data = json.loads(answer)
    if status >= 400:
        assert isinstance(data["error"], str)
        assert data["message"].strip()
    if auth is not True:
        assert status in (400, 401, 413, 415, 429), (status, data)  # never a change


def test_the_daemon_and_its_state_survive_the_fuzzing(lan: Lan) -> None:
    assert lan.daemon.answers()
    assert lan.daemon.process is not None
    assert lan.daemon.process.poll() is None
    lan.device.store().load()  # reads back (raises if not)
    assert "Traceback" not in lan.daemon.tail()
