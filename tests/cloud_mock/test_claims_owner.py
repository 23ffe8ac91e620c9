"""Issue 25, "No one but the owner": what other organizations' claims can and cannot do
to an owner's claim, through the API of an in-process mock.

- M1: eight proven claims and one more add dropped the owner's claim, proven and
  connected; now a proven or connected claim keeps its place, and the add answers the
  same whether it got one or not;
- a PATCH does not renew an unproven claim;
- a claim's history shows only the polls that proved its K;
- a claim's poll-log rows are bounded by its own count, never by anyone else's polls;
- a poll does the same work whatever the claims (the figures: benchmarks/claims_bench.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.provisioning import wire
from agent.provisioning.wire import PollRequest
from cloud_mock import claims, provisioning
from cloud_mock.claims import MAX_OPEN_CLAIMS, PROOF_SLOTS
from cloud_mock.clock import MockClock
from cloud_mock.devices_ws import CHANNELS, Channels
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.provisioning import POLL_LOG
from cloud_mock.server import RunningMock, start
from cloud_mock.store import Camera, Store
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import MAC, PASSWORD, login, poll_body, unseal
from tests.cloud_mock.test_devices_ws import device, hello

ORGS = [f"org{i}" for i in range(1, MAX_OPEN_CLAIMS + 3)]  # the owner, 8 others, 1 more
OTHER_MAC = "aa:bb:cc:dd:ee:77"


@pytest.fixture
async def orgs(tmp_path: Path) -> AsyncIterator[RunningMock]:
    fixtures = {
        "orgs": [{"name": org, "business": False} for org in ORGS],
        "users": [
            {"login": f"{org}-owner", "password": f"{org}-pass", "org": org, "role": "owner"}
            for org in ORGS
        ],
    }
    path = tmp_path / "orgs.json"
    path.write_text(json.dumps(fixtures))
    # A long heartbeat: the owner's channel stays open, unread, through many scrypt adds.
    running = await start(mock_options(tmp_path / "cloud", fixtures=path, heartbeat_s=600))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def client(orgs: RunningMock) -> AsyncIterator[aiohttp.ClientSession]:
    async with client_for(orgs) as session:
        yield session


async def owner(client: aiohttp.ClientSession, mock: RunningMock, org: str) -> dict[str, str]:
    return await login(client, mock.data_dir, login_name=f"{org}-owner", password=f"{org}-pass")


async def add(
    client: aiohttp.ClientSession, auth: dict[str, str], password: str, device_id: str = MAC
) -> tuple[int, dict[str, Any]]:
    async with client.post(
        "/v1/cameras", headers=auth, json={"device_id": device_id, "password": password}
    ) as response:
        return response.status, await response.json()


async def poll(
    client: aiohttp.ClientSession,
    password: str,
    device_id: str = MAC,
    *,
    key: bytes | None = None,
    ts: int | None = None,
) -> str | None:
    """The token this poll gets (unsealed with `password`), or None (204)."""
    body = poll_body(device_id, password, key=key, ts=ts)
    async with client.post("/v1/provisioning/poll", json=body) as response:
        if response.status == 204:
            return None
        assert response.status == 200, await response.text()
        return unseal((await response.json())["sealed_token"], password, device_id)


async def view(client: aiohttp.ClientSession, auth: dict[str, str], camera_id: str) -> Any:
    async with client.get(f"/v1/cameras/{camera_id}", headers=auth) as response:
        assert response.status == 200
        return await response.json()


async def settle(mock: RunningMock) -> None:
    """Write what the poll log holds (it writes after the answers, on the next step)."""
    mock.app[POLL_LOG].flush()


def shape(value: Any) -> Any:
    """The keys and value types of an answer, not its values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


@pytest.mark.parametrize("used", ["proven", "connected by hello"])
async def test_a_used_claim_keeps_its_place_whatever_other_orgs_add(
    client: aiohttp.ClientSession, orgs: RunningMock, used: str
) -> None:
    """M1. Before: with the owner's claim and seven others, each proven by a poll with its
    org's own password, the next add dropped the oldest live claim, the owner's: online in
    the console, then 204 forever after a reset. (`connected by hello`: a camera set up by
    a LAN push, which never polled, was dropped by any eight adds.)"""
    owner_auth = await owner(client, orgs, "org1")
    status, own = await add(client, owner_auth, PASSWORD)
    assert status == 201
    if used == "proven":
        assert await poll(client, PASSWORD) == own["token"]
    async with device(client, own["token"]) as ws:
        await hello(ws)
        others = {}
        for org in ORGS[1:MAX_OPEN_CLAIMS]:  # seven more orgs, each proving its own claim
            auth = await owner(client, orgs, org)
            others[org] = (auth, (await add(client, auth, f"pw-{org}"))[1])
            if used == "proven":
                assert await poll(client, f"pw-{org}") == others[org][1]["token"]
        # All eight places hold proven claims now (or seven unproven + the owner's).
        for org in ORGS[MAX_OPEN_CLAIMS : MAX_OPEN_CLAIMS + 2]:
            auth = await owner(client, orgs, org)
            status, late = await add(client, auth, f"pw-{org}")
            assert status == 201
            others[org] = (auth, late)
        assert (await view(client, owner_auth, own["camera_id"]))["status"] == "online"
    # The camera is reset: its next poll, with the label password, goes to its owner.
    assert await poll(client, PASSWORD) == own["token"]
    mine = await view(client, owner_auth, own["camera_id"])
    assert (mine["status"], mine["moved_at"]) == ("offline", None)
    # The adds that found no place (all eight used, or seven used and a newer add) are
    # not told: they look like any waiting claim, and their password gets nothing yet.
    for org in ORGS[MAX_OPEN_CLAIMS : MAX_OPEN_CLAIMS + 2]:
        auth, late = others[org]
        late_view = await view(client, auth, late["camera_id"])
        assert (late_view["status"], late_view["polls"]) == ("waiting", [])
    if used == "proven":
        assert await poll(client, f"pw-{ORGS[MAX_OPEN_CLAIMS]}") is None


async def test_an_add_answers_the_same_with_or_without_a_place(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    """Eight proven claims hold the places: a ninth org's add waits outside. Its answer
    and its camera look exactly like those of an add of a device nobody claimed."""
    for org in ORGS[:MAX_OPEN_CLAIMS]:
        auth = await owner(client, orgs, org)
        token = (await add(client, auth, f"pw-{org}"))[1]["token"]
        assert await poll(client, f"pw-{org}") == token
    late_auth = await owner(client, orgs, ORGS[MAX_OPEN_CLAIMS])
    outside_status, outside = await add(client, late_auth, "pw")
    fresh_status, fresh = await add(client, late_auth, "pw", OTHER_MAC)
    assert outside_status == fresh_status == 201
    assert shape(outside) == shape(fresh)
    outside_view = await view(client, late_auth, outside["camera_id"])
    fresh_view = await view(client, late_auth, fresh["camera_id"])
    assert shape(outside_view) == shape(fresh_view)
    for key in ("status", "polls", "last_seen", "moved_at"):
        assert outside_view[key] == fresh_view[key]


async def test_a_password_change_does_not_renew_an_unproven_claim(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    """Before: `claimed_at` moved with every PATCH, so a PATCH every 29 days kept an
    unproven claim (a squatter's) alive forever. Its expiry counts from the add."""
    auth = await owner(client, orgs, "org1")
    async with client.post("/v1/test/settings", json={"claim_ttl_s": 100}) as response:
        assert response.status == 200
    cam = (await add(client, auth, "typo"))[1]
    path = f"/v1/cameras/{cam['camera_id']}"
    clock = orgs.app[CLOCK]
    clock.advance(90)
    async with client.patch(path, headers=auth, json={"password": PASSWORD}) as response:
        assert response.status == 200
    assert (await view(client, auth, cam["camera_id"]))["status"] == "waiting"
    clock.advance(11)  # 101 s after the add, 11 s after the PATCH
    assert (await view(client, auth, cam["camera_id"]))["status"] == "expired"
    assert await poll(client, PASSWORD, ts=int(clock.now())) is None
    async with client.patch(path, headers=auth, json={"password": PASSWORD}) as response:
        assert response.status == 409


async def test_a_claims_history_shows_only_the_polls_that_proved_its_key(
    client: aiohttp.ClientSession, orgs: RunningMock
) -> None:
    """Before: a squatter's claim showed a row for every poll of the device (when the real
    camera polled; `held_s` said when the owner's add woke it), and an owner a row for
    each wrong-proof poll anyone made."""
    squatter, owner_auth = await owner(client, orgs, "org1"), await owner(client, orgs, "org2")
    squat = (await add(client, squatter, "made-up"))[1]
    own = (await add(client, owner_auth, PASSWORD))[1]
    for n in range(5):  # anyone's wrong proofs, for the MAC
        assert await poll(client, f"guess-{n}", key=bytes([n]) * 32) is None
    assert await poll(client, PASSWORD) == own["token"]  # the real camera
    assert await poll(client, "made-up") == squat["token"]  # the squatter, as the device
    await settle(orgs)
    own_polls = (await view(client, owner_auth, own["camera_id"]))["polls"]
    squat_polls = (await view(client, squatter, squat["camera_id"]))["polls"]
    assert [p["result"] for p in own_polls] == ["token"]
    assert [p["result"] for p in squat_polls] == ["token"]
    assert own_polls[0]["at"] < squat_polls[0]["at"]  # each its own poll, nothing else
    # The other polls are nobody's: counted for the operator, per result and minute.
    aggregated = orgs.app[STORE].devices.aggregated_polls()
    assert sum(r.count for r in aggregated if r.result == "bad_proof") == 5
    assert {r.device_id for r in aggregated} == {""}


async def test_nobodys_polls_evict_no_history_and_a_claim_bounds_only_its_own_rows(
    client: aiohttp.ClientSession, orgs: RunningMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: 12,600 wrong-proof polls for one claimed MAC wrote rows for every claim of
    it and pushed every org's history out of the global 100,000-row log. Now wrong proofs
    are aggregated (the nobody's rows have their own bound), and a claim keeps its newest
    `POLL_LOG_ROWS_PER_CLAIM` rows whoever else polls."""
    monkeypatch.setattr(provisioning, "POLL_LOG_MAX_ROWS", 3)
    monkeypatch.setattr(provisioning, "POLL_LOG_ROWS_PER_CLAIM", 4)
    monkeypatch.setattr(provisioning, "POLL_LOG_PRUNE_EVERY_S", 0.0)
    owner_auth, squatter = await owner(client, orgs, "org1"), await owner(client, orgs, "org2")
    other_auth = await owner(client, orgs, "org3")
    own = (await add(client, owner_auth, PASSWORD))[1]
    squat = (await add(client, squatter, "made-up"))[1]
    other = (await add(client, other_auth, "pw-3", OTHER_MAC))[1]
    assert await poll(client, PASSWORD) == own["token"]
    assert await poll(client, "pw-3", OTHER_MAC) == other["token"]
    await settle(orgs)
    store = orgs.app[STORE]
    for n in range(300):  # the flood: wrong proofs for the claimed MAC
        assert await poll(client, "x", key=n.to_bytes(32, "big")) is None
    for _ in range(3 * 4):  # the squatter's own claim, proven again and again
        assert await poll(client, "made-up") == squat["token"]
    await settle(orgs)
    assert [p.result for p in store.devices.polls(own["camera_id"])] == ["token"]
    assert [p.result for p in store.devices.polls(other["camera_id"])] == ["token"]
    assert len(store.devices.polls(squat["camera_id"])) == 4
    assert store.devices.poll_rows_of_device(MAC) == 1 + 4  # the owner's row and the squatter's
    assert len(store.devices.aggregated_polls()) <= 3


@pytest.fixture
def bench_app(tmp_path: Path) -> web.Application:
    """The poll's check over a real store, without a server (as the benchmark runs it)."""
    app = web.Application()
    app[STORE], app[CLOCK], app[CHANNELS] = Store.open_in(tmp_path), MockClock(), Channels()
    return app


def _claim(store: Store, device_id: str, n: int, now: float, **changes: Any) -> None:
    org = f"org{n}"
    store.accounts.upsert_org(org, False)
    camera = Camera(
        f"{device_id}-{n}", org, device_id, "cam", now + n, f"{device_id}-j{n}", None, None,
        bytes([n + 1]) * 32, "token", now + n,
    )  # fmt: skip
    store.devices.insert_camera(camera)
    if changes.get("proven"):
        store.devices.mark_proven(camera.camera_id, now + n)


def test_a_poll_does_the_same_work_whatever_the_claims(
    bench_app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the check read the device's claim rows, judged and sorted them, and wrote
    expiries, so its cost grew with the claims (+61 and +64 µs for 8 claims over none,
    over HTTP). Now, for a wrong proof, a device nobody claimed, one with one claim,
    eight, more than eight, proven or expired: the same SQL statements (none reads a
    claim), PROOF_SLOTS HMACs and the same liveness tests."""
    store, now = bench_app[STORE], bench_app[CLOCK].now()
    devices = {"unknown": "02:c1:00:00:00:00"}
    counts = {"1 claim": 1, "8 claims": 8, "11 claims": 11, "8 proven": 8, "3 expired": 3}
    for i, (case, count) in enumerate(counts.items(), start=1):
        devices[case] = device_id = f"02:c1:00:00:00:{i:02x}"
        at = now - 40 * 86_400 if case == "3 expired" else now
        for n in range(count):
            _claim(store, device_id, n, at, proven=case == "8 proven")
    statements: list[str] = []
    hmacs: list[int] = []
    real_match = wire.proof_matches

    def counting_match(key: bytes, *args: Any) -> bool:
        hmacs.append(len(key))
        return real_match(key, *args)

    monkeypatch.setattr(claims, "proof_matches", counting_match)
    work = {}
    for case, device_id in devices.items():
        statements.clear()
        hmacs.clear()

        def trace(sql: str, device_id: str = device_id) -> None:
            statements.append(sql.replace(device_id, "?"))

        store.database.db.set_trace_callback(trace)
        outcome = provisioning._check(
            bench_app, PollRequest.build(b"w" * 32, device_id, int(time.time()), 0)
        )
        store.database.db.set_trace_callback(None)
        assert outcome.sealed is None
        work[case] = (list(statements), len(hmacs))
    assert len({json.dumps(w) for w in work.values()}) == 1, work
    assert work["unknown"][1] == PROOF_SLOTS
    assert not any("cameras" in s for s in work["unknown"][0])
