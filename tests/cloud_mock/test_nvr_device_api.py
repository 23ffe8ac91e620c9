"""The NVR's own calls: activation codes collected by long-poll, registration tokens."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.nvr import activation_code
from cloud_mock.keys import STORE
from cloud_mock.nvr_device import CODE_GRACE_S
from cloud_mock.provisioning import WAITERS
from cloud_mock.server import RunningMock
from cloud_mock.testing import running_mock_cloud
from tests.cloud_mock.conftest import client_for
from tests.cloud_mock.helpers import login, verify_token
from tests.cloud_mock.nvr_helpers import (
    CHECKS,
    NVR_ID,
    PASSWORDS,
    Nvr,
    add_registrator,
    call,
    registration_token,
    unseal_with,
)
from tests.eventually import eventually_async
from tests.examples import examples

DAY = 86_400


async def test_register_code_answers_code_expiry_and_url(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    nvr = Nvr("AA-BB-CC-00-00-01")  # normalized like any device ID
    code = activation_code.generate()
    typed = code.replace("-", "").lower()
    status, answer = await nvr.register_code(client, code=typed)
    assert status == 201, answer
    assert answer == {
        "code": code,
        "expires_at": pytest.approx(mock.clock.now() + DAY, abs=5),
        "activation_url": f"{mock.url}/registrators/activate?code={code}",
    }
    stored = mock.app[STORE].registrators.get_activation(code)
    assert stored is not None
    assert (stored.device_id, stored.name, stored.version) == (NVR_ID, "NVR in the rack", "0.9.0")
    assert stored.checks == CHECKS


async def test_activation_hands_the_token_to_the_held_poll_of_that_nvr_only(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    nvr = Nvr()
    code = await nvr.code(client)
    secret = nvr.secrets[code]
    registrator = await add_registrator(client, auth)

    held = asyncio.create_task(nvr.poll(client, secret, wait=10))
    other = asyncio.create_task(nvr.poll(client, b"\x07" * 32, wait=1))
    waiters = mock.app[WAITERS]
    await eventually_async(lambda: len(waiters), until=lambda n: n >= 2, what="both polls held")
    assert not held.done()
    status, linked = await call(
        client, "POST", f"/v1/registrators/{registrator['id']}/activate", auth, {"code": code}
    )
    activated_at = time.monotonic()
    assert status == 200, linked
    assert linked["device_id"] == NVR_ID
    assert linked["checks"] == CHECKS
    assert linked["linked_at"] is not None

    status, body, _ = await asyncio.wait_for(held, 5)
    assert time.monotonic() - activated_at < 0.1
    assert status == 200
    token = unseal_with(secret, NVR_ID, body["sealed_token"])
    claims = verify_token(token, mock.data_dir / "token-signing.pub.pem")
    assert claims["kind"] == "nvr"
    assert claims["sub"] == NVR_ID
    assert claims["org"] == "demo"
    assert claims["api"] == mock.url
    assert claims["rid"] == registrator["id"]
    assert claims["v"] == 1
    # A poll keyed with any other secret gets nothing, even for the same device ID.
    assert (await other)[0] == 204
    assert (await nvr.poll(client, b"\x08" * 32))[0] == 204
    assert (await nvr.poll(client, secret))[0] == 200


async def test_code_conflicts_renewals_and_the_five_newest(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    nvr, intruder = Nvr(), Nvr("aa:bb:cc:00:00:99")
    code = await nvr.code(client)
    secret = nvr.secrets[code]
    # Live for another registration: refused (another device, or another secret).
    assert await intruder.register_code(client, code=code) == (
        409,
        {"error": "code already in use"},
    )
    assert (await nvr.register_code(client, code=code, secret=os.urandom(32)))[0] == 409
    # The same NVR sending it again (a retry) updates its details, not its expiry.
    first = mock.app[STORE].registrators.get_activation(code)
    assert first is not None
    mock.clock.advance(3600)
    status, again = await nvr.register_code(client, code=code, secret=secret, name="renamed")
    assert status == 201
    assert (again["code"], again["expires_at"]) == (code, first.expires_at)
    assert mock.app[STORE].registrators.get_activation(code).name == "renamed"  # type: ignore[union-attr]
    # Expired, it stays expired, whoever registers it: its text is free again only once
    # the code is forgotten (an hour later).
    mock.clock.advance(first.expires_at - mock.clock.now() + 1)
    for who in (nvr, intruder):
        assert await who.register_code(client, code=code, secret=who.secret) == (
            409,
            {"error": "code expired: register a new one"},
        )
    mock.clock.advance(CODE_GRACE_S)
    assert (await intruder.register_code(client, code=code))[0] == 201

    codes = [await nvr.code(client) for _ in range(7)]
    kept = [a.code for a in mock.app[STORE].registrators.activations_of(NVR_ID)]
    assert kept == codes[-5:]


async def test_code_ttl_comes_from_the_environment(tmp_path: Path) -> None:
    def run() -> tuple[int, Any, float]:
        with running_mock_cloud(
            tmp_path / "cloud", env={"CAMAGENT_MOCK_CODE_TTL_S": "120"}
        ) as cloud:
            body = {
                "device_id": NVR_ID,
                "code": activation_code.generate(),
                "secret": base64.b64encode(b"s" * 32).decode(),
            }
            status, answer = cloud.request("POST", "/v1/nvr/activations", body)
            return status, answer, time.time()

    status, answer, now = await asyncio.to_thread(run)
    assert status == 201, answer
    assert answer["expires_at"] == pytest.approx(now + 120, abs=5)


GOOD_CODE_BODY: dict[str, Any] = {
    "device_id": NVR_ID,
    "code": "0000-0000-0000",
    "secret": base64.b64encode(b"s" * 32).decode(),
    "name": "n",
    "version": "1",
    "checks": CHECKS,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"device_id": "not a device"}, "device ID"),
        ({"code": "ABCD"}, "12 characters"),
        ({"code": "0000-0000-0001"}, "mistyped"),
        ({"code": 12}, "code"),
        ({"secret": "c2hvcnQ="}, "32"),
        ({"secret": "not base64!"}, "base64"),
        ({"name": "x" * 129}, "name"),
        ({"version": 3}, "version"),
        ({"checks": {"name": "x"}}, "checks"),
        ({"checks": [{"name": "x", "status": "bad"}]}, "status"),
        ({"checks": [{"status": "ok"}]}, "name"),
        ({"checks": [{"name": "x", "status": "ok", "detail": 5}]}, "detail"),
        ({"checks": [{"name": "x", "status": "ok"}] * 21}, "20"),
        ({"checks": [{"name": "x", "status": "ok", "detail": "d" * 1024}] * 4}, "4096 bytes"),
    ],
)
async def test_malformed_code_registration_is_400(
    client: aiohttp.ClientSession, change: dict[str, Any], message: str
) -> None:
    assert activation_code.parse(GOOD_CODE_BODY["code"]) == "0000-0000-0000"
    async with client.post("/v1/nvr/activations", json={**GOOD_CODE_BODY, **change}) as response:
        assert response.status == 400
        assert message in (await response.json())["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def _near(good: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies with each field either right or replaced by random JSON (or left out)."""
    return st.fixed_dictionaries(
        {}, optional={key: json_values | st.just(value) for key, value in good.items()}
    )


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.binary(max_size=100)
    | json_values.map(lambda v: json.dumps(v).encode())
    | _near(GOOD_CODE_BODY).map(lambda v: json.dumps(v).encode())
    | _near({"token": "rt_x", "device_id": NVR_ID, "checks": CHECKS}).map(
        lambda v: json.dumps(v).encode()
    ),
    path=st.sampled_from(["/v1/nvr/activations", "/v1/nvr/register"]),
)
async def test_random_device_bodies_never_500(
    client: aiohttp.ClientSession, body: bytes, path: str
) -> None:
    async with client.post(path, data=body) as response:
        # 429: valid registrations from this one address beyond its rate.
        assert response.status in (201, 400, 404, 409, 429), await response.text()


# --- registration tokens ----------------------------------------------------------------------


async def test_registration_token_links_once(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    made = await registration_token(client, auth, title="Rack 7", note="2nd floor")
    assert made["token"].startswith("rt_")
    assert len(made["token"]) >= 32
    assert made["expires_at"] == pytest.approx(mock.clock.now() + 6 * 3600, abs=5)
    assert (made["title"], made["note"]) == ("Rack 7", "2nd floor")

    nvr = Nvr()
    status, answer = await nvr.register(client, made["token"], name="nvr-7")
    assert status == 201, answer
    assert set(answer) == {"registrator_id", "token"}
    claims = verify_token(answer["token"], mock.data_dir / "token-signing.pub.pem")
    assert (claims["kind"], claims["sub"], claims["org"]) == ("nvr", NVR_ID, "demo")
    assert claims["rid"] == answer["registrator_id"]

    status, registrator = await call(
        client, "GET", f"/v1/registrators/{answer['registrator_id']}", auth
    )
    assert status == 200
    # Named after the NVR; the token's title (and note) kept as its note.
    assert (registrator["name"], registrator["note"]) == ("nvr-7", "Rack 7 — 2nd floor")
    assert registrator["device_name"] == "nvr-7"
    assert registrator["device_id"] == NVR_ID
    assert registrator["checks"] == CHECKS
    assert registrator["status"] == "pending"

    assert await nvr.register(client, made["token"]) == (
        409,
        {"error": "registration token already used"},
    )
    status, listing = await call(client, "GET", "/v1/registrator-tokens", auth)
    assert status == 200
    [listed] = listing["tokens"]
    assert listed["used"] is True
    assert listed["registrator_id"] == answer["registrator_id"]
    assert "token" not in listed
    assert made["token"] not in json.dumps(listing)


async def test_without_a_title_the_nvr_names_itself(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    made = await registration_token(client, auth)
    status, answer = await Nvr().register(client, made["token"], name="nvr-8")
    assert status == 201, answer
    status, registrator = await call(
        client, "GET", f"/v1/registrators/{answer['registrator_id']}", auth
    )
    assert registrator["name"] == "nvr-8"


async def test_a_reset_nvr_registered_again_keeps_its_registrator(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    """After `camagent reset` the same NVR (its secret) registers with a new token: its
    registrator is linked anew, not left "pending" for ever beside a new one."""
    nvr = Nvr()
    first = await registration_token(client, auth, title="Rack 7")
    status, answer = await nvr.register(client, first["token"], name="nvr-7")
    assert status == 201, answer
    rid = answer["registrator_id"]
    status, renamed = await call(
        client, "PATCH", f"/v1/registrators/{rid}", auth, {"name": "Server room"}
    )
    assert status == 200, renamed
    again = await registration_token(client, auth, title="Rack 7, again")
    status, second = await nvr.register(client, again["token"], name="nvr-7")
    assert status == 201, second
    assert second["registrator_id"] == rid
    claims = verify_token(second["token"], mock.data_dir / "token-signing.pub.pem")
    assert claims["rid"] == rid
    status, listing = await call(client, "GET", "/v1/registrators", auth)
    assert status == 200
    [row] = listing["registrators"]
    assert (row["id"], row["name"], row["device_id"]) == (rid, "Server room", NVR_ID)
    # The old token is revoked; both registration tokens are spent on this registrator.
    async with client.ws_connect(
        "/v1/devices/ws", headers={"Authorization": f"Bearer {answer['token']}"}, autoclose=False
    ) as ws:
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4401)
    status, tokens = await call(client, "GET", "/v1/registrator-tokens", auth)
    assert [(t["used"], t["registrator_id"]) for t in tokens["tokens"]] == [(True, rid)] * 2
    # Another NVR (another secret) of the same ID still takes nothing from it.
    third = await registration_token(client, auth)
    status, body = await Nvr().register(client, third["token"])
    assert status == 409
    assert "delete that registrator first" in body["error"]


async def test_registration_token_unknown_and_expired(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    nvr = Nvr()
    assert await nvr.register(client, "rt_nope") == (404, {"error": "unknown registration token"})
    made = await registration_token(client, auth)
    mock.clock.advance(6 * 3600 + 1)
    assert await nvr.register(client, made["token"]) == (
        410,
        {"error": "registration token expired (valid 6 hours)"},
    )


async def test_concurrent_uses_of_one_token_link_exactly_once(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    made = await registration_token(client, auth)
    nvrs = [Nvr(f"aa:bb:cc:00:01:{i:02x}") for i in range(8)]
    answers = await asyncio.gather(*(n.register(client, made["token"]) for n in nvrs))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * 7
    assert len(mock.app[STORE].registrators.registrators_of("demo")) == 1


async def test_registration_refused_when_its_maker_or_org_lost_the_right(
    client: aiohttp.ClientSession, team: RunningMock
) -> None:
    async with client_for(team) as client:
        max_ = await login(client, team.data_dir, login_name="max", password=PASSWORDS["max"])
        first = await registration_token(client, max_)
        second = await registration_token(client, max_)
        store = team.app[STORE]
        user = store.accounts.get_user("max")
        assert user is not None
        store.accounts.upsert_user(dataclasses.replace(user, role="viewer"))
        status, answer = await Nvr().register(client, first["token"])
        assert status == 403
        assert "'max'" in answer["error"]
        assert "may no longer add NVRs" in answer["error"]

        store.accounts.upsert_user(user)
        store.accounts.upsert_org("demo", False)
        status, answer = await Nvr().register(client, second["token"])
        assert status == 403
        assert "business account" in answer["error"]
        store.accounts.upsert_org("demo", True)
        # Refusals do not use the token up.
        assert (await Nvr().register(client, second["token"]))[0] == 201


async def test_a_device_linked_in_another_org_blocks_nothing_and_says_nothing(
    team: RunningMock,
) -> None:
    """Issue 25 (M5): a registration token links the device ID in its own organization
    whoever else holds it; in that organization, the link stays with the NVR's secret."""
    async with client_for(team) as client:
        admin = await login(client, team.data_dir)
        gus = await login(client, team.data_dir, login_name="gus", password=PASSWORDS["gus"])
        squatter, owner = Nvr(), Nvr()  # one device ID, two secrets
        theirs = await registration_token(client, gus)
        status, held = await squatter.register(client, theirs["token"])
        assert status == 201, held
        ours = await registration_token(client, admin)
        status, answer = await owner.register(client, ours["token"])
        assert status == 201, answer
        assert set(answer) == {"registrator_id", "token"}  # as for a free ID
        store = team.app[STORE]
        assert store.registrators.registrator_of("globex", NVR_ID).id == held["registrator_id"]  # type: ignore[union-attr]
        assert store.registrators.registrator_of("demo", NVR_ID).id == answer["registrator_id"]  # type: ignore[union-attr]

        # In demo, another secret cannot take the NVR from its registrator ...
        again = await registration_token(client, admin)
        status, refused = await Nvr().register(client, again["token"])
        assert status == 409
        assert "another secret" in refused["error"]
        assert "delete that registrator first" in refused["error"]
        # ... the same NVR (its secret) moves the link to the new registrator.
        status, moved = await owner.register(client, again["token"])
        assert status == 201, moved
        linked = [r for r in store.registrators.registrators_of("demo") if r.device_id]
        assert [r.id for r in linked] == [moved["registrator_id"]]
        assert store.registrators.registrator_of("globex", NVR_ID) is not None  # untouched
