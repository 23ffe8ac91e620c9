"""Issue 25, items 3 and 5: no one but the owner links an NVR (in-process mock, real TLS).

- M3: an activation code lives its first lifetime whatever registers it again, and codes
  of other secrets keep no NVR from registering its own;
- M5: naming a device ID (by token or by code) in one organization holds nothing against
  another, answers the same as for a free ID, and in its own organization a link stays
  with the secret of the NVR that made it;
- the provisioning service offers one NVR secret per device ID: tokens of several
  organizations' activations take turns, so none can keep another's from its NVR;
- M4: registrations are bounded per client address and in all, and expired codes go.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from agent.provisioning.wire import PollRequest
from cloud_mock import nvr_device
from cloud_mock.client_address import client_key
from cloud_mock.keys import STORE
from cloud_mock.nvr import NVR_TOKEN_TURN_S
from cloud_mock.nvr_device import (
    CODE_GRACE_S,
    GUARD,
    HOUSEKEEPING,
    DeviceCallGuard,
    DeviceCallLimits,
)
from cloud_mock.provisioning import WAITERS
from cloud_mock.server import RunningMock
from tests.cloud_mock.conftest import client_for
from tests.cloud_mock.helpers import add_camera, login, verify_token
from tests.cloud_mock.nvr_helpers import (
    NVR_ID,
    PASSWORDS,
    Nvr,
    add_registrator,
    call,
    nvr_channel,
    registration_token,
    unseal_with,
)
from tests.eventually import eventually_async

HOUR = 3600.0
DAY = 86_400.0


async def poll(
    client: aiohttp.ClientSession, mock: RunningMock, key: bytes, wait: int = 0
) -> tuple[int, Any]:
    """A poll as the NVR holding `key`, its `ts` from the mock clock (tests move it)."""
    body = PollRequest.build(key, NVR_ID, int(mock.clock.now()), wait).to_json()
    async with client.post("/v1/provisioning/poll", json=body) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None


def token_of(answer: Any, key: bytes) -> str:
    return unseal_with(key, NVR_ID, answer["sealed_token"])


async def activate(
    client: aiohttp.ClientSession, auth: dict[str, str], code: str, name: str = "Rack"
) -> tuple[str, int, Any]:
    rid = (await add_registrator(client, auth, name=name))["id"]
    status, body = await call(
        client, "POST", f"/v1/registrators/{rid}/activate", auth, {"code": code}
    )
    return rid, status, body


@pytest.fixture
async def orgs(
    team: RunningMock,
) -> AsyncIterator[tuple[aiohttp.ClientSession, dict[str, str], dict[str, str]]]:
    """A client, the owner's session (admin of demo) and a squatter's (gus of globex)."""
    async with client_for(team) as client:
        owner = await login(client, team.data_dir)
        squatter = await login(client, team.data_dir, login_name="gus", password=PASSWORDS["gus"])
        yield client, owner, squatter


# --- M3: a code's lifetime, and codes of other secrets ---------------------------------------


async def test_a_squatter_refreshing_its_code_for_days_keeps_no_nvr_out(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    """The attack: a code registered for the NVR's ID under the squatter's secret, sent
    again every 23 h (the NVR's registrations were refused at 23, 46 and 69 h)."""
    squatter, nvr = Nvr(), Nvr()
    held = await squatter.code(client)
    first = mock.app[STORE].registrators.get_activation(held)
    assert first is not None
    rid = (await add_registrator(client, auth, name="late"))["id"]
    for hour in (23, 46, 69):
        mock.clock.advance(23 * HOUR)
        if hour == 23:  # within its lifetime: the same code, the same expiry
            status, again = await squatter.register_code(client, code=held)
            assert (status, again["expires_at"]) == (201, first.expires_at)
            mock.clock.advance(HOUR + 1)  # and at 24 h it has expired, refreshed or not
            status, body = await call(
                client, "POST", f"/v1/registrators/{rid}/activate", auth, {"code": held}
            )
            assert status == 410, body
            status, body = await squatter.register_code(client, code=held)
            assert (status, body["error"]) == (409, "code expired: register a new one")
            mock.clock.advance(-HOUR - 1)
        await squatter.code(client)  # and new codes all along
        status, answer = await nvr.register_code(client)
        assert status == 201, f"the NVR refused at {hour} h: {answer}"
    # The owner activates the code its NVR shows; the NVR collects the token.
    code = list(nvr.secrets)[-1]
    _, status, body = await activate(client, auth, code)
    assert status == 200, body
    status, answer = await poll(client, mock, nvr.secret)
    assert status == 200
    assert verify_token(token_of(answer, nvr.secret), mock.data_dir / "token-signing.pub.pem")


async def test_expired_codes_are_forgotten_after_an_hour_and_used_ones_kept(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    nvr, other = Nvr(), Nvr("aa:bb:cc:00:00:02")
    unused = await nvr.code(client)
    used = await other.code(client)
    rid, status, _ = await activate(client, auth, used)
    assert status == 200
    path = f"/v1/registrators/{rid}/activation"
    store, housekeeping = mock.app[STORE], mock.app[HOUSEKEEPING]
    mock.clock.advance(DAY + 1)
    housekeeping.tick()
    assert store.registrators.get_activation(unused) is not None  # says "expired" for a while
    other_rid = (await add_registrator(client, auth, name="other"))["id"]
    status, _ = await call(
        client, "GET", f"/v1/registrators/{other_rid}/activation", auth, params={"code": unused}
    )
    assert status == 410
    mock.clock.advance(CODE_GRACE_S)
    assert nvr_device.prune(store, mock.clock.now()) == 1
    assert store.registrators.get_activation(unused) is None
    assert store.registrators.get_activation(used) is not None
    assert (await call(client, "GET", path, auth, params={"code": used}))[0] == 200


# --- M5: whoever names an ID first holds nothing ----------------------------------------------


async def test_a_squatters_token_link_keeps_neither_the_owners_code_nor_its_token(
    orgs: tuple[aiohttp.ClientSession, dict[str, str], dict[str, str]], team: RunningMock
) -> None:
    """M5 by token: `{token, device_id}` linked any ID to the token's org, and the ID was
    refused to every other org by token and by activation."""
    client, owner, squatter = orgs
    fake, nvr = Nvr(), Nvr()
    code = await nvr.code(client)  # the real NVR shows its code
    made = await registration_token(client, squatter)
    status, held = await fake.register(client, made["token"])
    assert status == 201, held
    assert team.app[STORE].registrators.get_activation(code) is not None  # the NVR's code stays
    rid, status, body = await activate(client, owner, code)
    assert status == 200, body
    status, answer = await poll(client, team, nvr.secret)
    assert status == 200
    token = token_of(answer, nvr.secret)
    claims = verify_token(token, team.data_dir / "token-signing.pub.pem")
    assert (claims["org"], claims["rid"]) == ("demo", rid)
    # Both connect, each to its own registrator; neither knocks the other off.
    async with nvr_channel(client, token), nvr_channel(client, held["token"]):
        for auth, registrator_id in ((owner, rid), (squatter, held["registrator_id"])):
            status, body = await call(client, "GET", f"/v1/registrators/{registrator_id}", auth)
            assert (status, body["status"]) == (200, "online")


async def test_another_org_hears_the_same_for_a_free_a_held_and_a_camera_id(
    orgs: tuple[aiohttp.ClientSession, dict[str, str], dict[str, str]],
) -> None:
    """Answers used to say "belongs to a camera" or "linked to a registrator of another
    organization" about other organizations' devices."""
    client, owner, squatter = orgs
    # For each way in: an ID nobody has, one linked in demo, one that is demo's camera.
    ways = {
        "token": ("aa:bb:cc:00:00:10", "aa:bb:cc:00:00:11", "aa:bb:cc:00:00:12"),
        "code": ("aa:bb:cc:00:00:20", "aa:bb:cc:00:00:21", "aa:bb:cc:00:00:22"),
    }
    for _, held, camera in ways.values():
        made = await registration_token(client, owner)
        assert (await Nvr(held).register(client, made["token"]))[0] == 201
        await add_camera(client, owner, device_id=camera, password="label-password")

    by_token = []
    for device_id in ways["token"]:
        made = await registration_token(client, squatter)
        status, body = await Nvr(device_id).register(client, made["token"])
        by_token.append((status, sorted(body)))
    assert by_token == [(201, ["registrator_id", "token"])] * 3
    by_code = []
    for device_id in ways["code"]:
        code = await Nvr(device_id).code(client)
        _, status, body = await activate(client, squatter, code, name=device_id)
        by_code.append((status, tuple(sorted(body))))
    assert len(set(by_code)) == 1
    assert by_code[0][0] == 200
    # In its own organization, a caller is told what its organization holds.
    made = await registration_token(client, owner)
    status, body = await Nvr(ways["token"][2]).register(client, made["token"])
    assert status == 409
    assert "belongs to a camera of 'demo'" in body["error"]


async def test_in_its_organization_a_link_stays_with_the_nvrs_secret(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    nvr = Nvr()
    first_rid, status, _ = await activate(client, auth, await nvr.code(client), name="first")
    assert status == 200
    status, answer = await poll(client, mock, nvr.secret)
    first_token = token_of(answer, nvr.secret)
    # A code of another NVR claiming the same ID (another secret) does not take it ...
    other = Nvr()
    _, status, body = await activate(client, auth, await other.code(client), name="other")
    assert status == 409
    assert "linked to registrator 'first'" in body["error"]
    assert "delete that registrator first" in body["error"]
    # ... a code of the same NVR moves it: the old link lets go, its token revoked.
    second_rid, status, _ = await activate(client, auth, await nvr.code(client), name="second")
    assert status == 200
    status, first = await call(client, "GET", f"/v1/registrators/{first_rid}", auth)
    assert (first["device_id"], first["status"]) == (None, "pending")
    # ... and says why it is left over, not "Continue setup" for ever.
    assert first["let_go"].startswith(f"its NVR {NVR_ID} registered again")
    assert first["let_go"].endswith("nothing left to set up; delete it")
    async with client.ws_connect(
        "/v1/devices/ws", headers={"Authorization": f"Bearer {first_token}"}, autoclose=False
    ) as ws:
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4401)
    status, answer = await poll(client, mock, nvr.secret)
    claims = verify_token(token_of(answer, nvr.secret), mock.data_dir / "token-signing.pub.pem")
    assert claims["rid"] == second_rid
    status, second = await call(client, "GET", f"/v1/registrators/{second_rid}", auth)
    assert second["let_go"] == ""
    # Deleted, it holds nothing: another NVR's code links.
    assert (await call(client, "DELETE", f"/v1/registrators/{second_rid}", auth))[0] == 204
    _, status, body = await activate(client, auth, await other.code(client), name="third")
    assert status == 200, body


async def test_a_link_made_before_secrets_were_recorded_holds_nothing(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    made = await registration_token(client, auth)
    status, old = await Nvr().register(client, made["token"])
    assert status == 201
    store = mock.app[STORE]
    store.database.db.execute(  # as the migration leaves a link of an earlier mock
        "UPDATE registrators SET secret_hash = NULL WHERE id = ?", (old["registrator_id"],)
    )
    again = await registration_token(client, auth)
    status, new = await Nvr().register(client, again["token"])
    assert status == 201, new
    linked = store.registrators.registrator_of("demo", NVR_ID)
    assert linked is not None
    assert linked.id == new["registrator_id"]
    was = store.registrators.get_registrator(old["registrator_id"])
    assert was is not None
    assert was.device_id is None


# --- one NVR secret at the poll: tokens take turns ------------------------------------------


async def test_a_later_activation_elsewhere_never_takes_the_owners_waiting_token(
    orgs: tuple[aiohttp.ClientSession, dict[str, str], dict[str, str]], team: RunningMock
) -> None:
    """The owner activates while its NVR is offline; a squatter activates its own code
    for that ID meanwhile: the owner's token stays offered to the owner's NVR."""
    client, owner, squatter = orgs
    nvr, fake = Nvr(), Nvr()
    owner_rid, status, _ = await activate(client, owner, await nvr.code(client))
    assert status == 200
    _, status, _ = await activate(client, squatter, await fake.code(client))
    assert status == 200
    team.clock.advance(NVR_TOKEN_TURN_S - 1)
    team.app[HOUSEKEEPING].tick()
    assert (await poll(client, team, fake.secret))[0] == 204
    status, answer = await poll(client, team, nvr.secret)
    assert status == 200
    token = token_of(answer, nvr.secret)
    assert verify_token(token, team.data_dir / "token-signing.pub.pem")["rid"] == owner_rid
    # Once the owner's NVR connects, its token waits no more: the next one is offered.
    async with nvr_channel(client, token):
        await eventually_async(
            lambda: poll(client, team, fake.secret),
            until=lambda answer: answer[0] == 200,
            what="the squatter's token offered after the owner's NVR connected",
        )


async def test_a_token_nobody_collects_keeps_the_poll_for_one_turn_at_most(
    orgs: tuple[aiohttp.ClientSession, dict[str, str], dict[str, str]], team: RunningMock
) -> None:
    """A squatter activates its code for the NVR's ID first and never collects: the
    owner's token is offered when the squatter's turn is over, to the NVR's held poll."""
    client, owner, squatter = orgs
    nvr, fake = Nvr(), Nvr()
    _, status, _ = await activate(client, squatter, await fake.code(client))
    assert status == 200
    owner_rid, status, _ = await activate(client, owner, await nvr.code(client))
    assert status == 200
    assert (await poll(client, team, nvr.secret))[0] == 204  # the squatter's turn
    held = asyncio.create_task(poll(client, team, nvr.secret, wait=30))
    waiters = team.app[WAITERS]
    await eventually_async(lambda: len(waiters), until=lambda n: n >= 1, what="the poll held")
    team.clock.advance(NVR_TOKEN_TURN_S)
    team.app[HOUSEKEEPING].tick()
    status, answer = await asyncio.wait_for(held, 10)
    assert status == 200
    claims = verify_token(token_of(answer, nvr.secret), team.data_dir / "token-signing.pub.pem")
    assert claims["rid"] == owner_rid
    # Turns go on while both wait.
    team.clock.advance(NVR_TOKEN_TURN_S)
    team.app[HOUSEKEEPING].tick()
    assert (await poll(client, team, fake.secret))[0] == 200
    assert (await poll(client, team, nvr.secret))[0] == 204


async def test_deleting_a_squatters_registrator_leaves_the_owners_token_offered(
    orgs: tuple[aiohttp.ClientSession, dict[str, str], dict[str, str]], team: RunningMock
) -> None:
    client, owner, squatter = orgs
    nvr, fake = Nvr(), Nvr()
    owner_rid, status, _ = await activate(client, owner, await nvr.code(client))
    assert status == 200
    squatter_rid, status, _ = await activate(client, squatter, await fake.code(client))
    assert status == 200
    status, _ = await call(client, "DELETE", f"/v1/registrators/{squatter_rid}", squatter)
    assert status == 204
    assert (await poll(client, team, nvr.secret))[0] == 200
    # The other way round: deleting the owner's registrator offers the next waiting one.
    _, status, _ = await activate(client, squatter, await fake.code(client))
    assert status == 200
    assert (await poll(client, team, fake.secret))[0] == 204
    status, _ = await call(client, "DELETE", f"/v1/registrators/{owner_rid}", owner)
    assert status == 204
    assert (await poll(client, team, nvr.secret))[0] == 204
    assert (await poll(client, team, fake.secret))[0] == 200


# --- M4: what an address, and everybody, may make the mock keep ------------------------------


def client_from(mock: RunningMock, address: str) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(mock.data_dir / "ca.pem"))
    connector = aiohttp.TCPConnector(ssl=context, local_addr=(address, 0))
    return aiohttp.ClientSession(base_url=mock.url, connector=connector)


async def test_registrations_are_rate_limited_per_client_address(mock: RunningMock) -> None:
    limits = mock.app[GUARD].limits
    async with client_from(mock, "127.0.0.2") as attacker, client_from(mock, "127.0.0.3") as nvr:
        for n in range(limits.per_client):
            assert (await Nvr(f"02:00:00:00:00:{n:02x}").register_code(attacker))[0] == 201
        status, body = await Nvr("02:00:00:00:01:00").register_code(attacker)
        assert (status, body["error"]) == (429, "rate_limited")
        assert body["retry_after"] > 0
        auth = await login(attacker, mock.data_dir)
        made = await registration_token(attacker, auth)
        assert (await Nvr().register(attacker, made["token"]))[0] == 429  # tokens count too
        assert (await Nvr().register_code(nvr))[0] == 201  # another address is not touched
        mock.clock.advance(limits.window_s)
        assert (await Nvr().register_code(attacker))[0] == 201


async def test_an_address_holds_a_bounded_number_of_live_codes(mock: RunningMock) -> None:
    mock.app[GUARD].limits = DeviceCallLimits(per_client=1000, live_codes_per_client=3)
    async with client_from(mock, "127.0.0.2") as attacker, client_from(mock, "127.0.0.3") as nvr:
        for n in range(3):
            assert (await Nvr(f"02:00:00:00:00:{n:02x}").register_code(attacker))[0] == 201
        status, body = await Nvr("02:00:00:00:00:09").register_code(attacker)
        assert (status, body["error"]) == (429, "rate_limited")
        assert "3 live activation codes" in body["message"]
        assert (await Nvr().register_code(nvr))[0] == 201
        mock.clock.advance(DAY)  # they expired: room again
        assert (await Nvr("02:00:00:00:00:09").register_code(attacker))[0] == 201


async def test_unused_codes_together_are_bounded_until_the_expired_go(
    mock: RunningMock,
) -> None:
    mock.app[GUARD].limits = DeviceCallLimits(unused_codes=4)
    addresses = [f"127.0.0.{n}" for n in range(2, 7)]
    answers = []
    for address in addresses:
        async with client_from(mock, address) as client:
            answers.append(await Nvr(f"02:00:00:00:00:{address[-1]}0").register_code(client))
    assert [status for status, _ in answers] == [201] * 4 + [503]
    assert answers[-1][1]["error"] == "codes_full"
    mock.clock.advance(DAY + CODE_GRACE_S + 1)  # expired and past their grace: pruned
    async with client_from(mock, addresses[-1]) as client:
        assert (await Nvr("02:00:00:00:00:99").register_code(client))[0] == 201
    assert mock.app[STORE].registrators.unused_codes() == 1


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, "unknown"),
        ("not an address", "not an address"),
    ],
)
def test_an_ipv6_client_counts_as_its_64(remote: str | None, key: str) -> None:
    assert client_key(remote) == key


def test_the_rate_limits_table_is_bounded() -> None:
    guard = DeviceCallGuard(DeviceCallLimits(clients=100))
    for n in range(1000):
        guard.admit(f"198.51.100.{n}", 1000.0)
    assert len(guard) == 100
