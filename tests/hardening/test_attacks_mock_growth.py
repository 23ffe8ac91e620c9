"""What unauthenticated requests can make the mock keep (issue 25, items 3 and 5), played
as the outside attack test played M4: 1,500 requests to each route that stores anything,
the database's size before and after (the WAL checkpointed into it first).

The M4 attack itself took the database from 0.5 to 98 MB with 1,500 registrations
(any device ID, 5 codes each, 50 checks of 1 KB). In-process mock, real TLS; extra client
addresses are 127.0.0.x (every loopback address reaches the mock). Each test prints its
figures (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.nvr import activation_code
from agent.provisioning.wire import PollRequest
from cloud_mock.keys import STORE
from cloud_mock.nvr_device import CODE_GRACE_S, GUARD, prune
from cloud_mock.server import RunningMock, start
from cloud_mock.store import DB_NAME
from cloud_mock.users import LOGIN_STATE
from tests.cloud_mock.conftest import mock_options

ATTACK = 1_500
CONCURRENCY = 16
MB = 1_000_000


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[RunningMock]:
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        yield running
    finally:
        await running.stop()


def database_bytes(mock: RunningMock) -> int:
    """The database file once the WAL is written into it (what stays on disk)."""
    mock.app[STORE].database.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = mock.data_dir / DB_NAME
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def client_from(mock: RunningMock, address: str = "127.0.0.1") -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(mock.data_dir / "ca.pem"))
    connector = aiohttp.TCPConnector(ssl=context, local_addr=(address, 0), limit=CONCURRENCY)
    return aiohttp.ClientSession(base_url=mock.url, connector=connector)


async def send_all(mock: RunningMock, requests: list[tuple[str, str, str, Any]]) -> dict[int, int]:
    """(address, method, path, json body) each; the statuses counted."""
    statuses: dict[int, int] = {}
    sessions: dict[str, aiohttp.ClientSession] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(address: str, method: str, path: str, body: Any) -> None:
        # made once per address (`setdefault` would make, and leave unclosed, one per request)
        if address not in sessions:
            sessions[address] = client_from(mock, address)
        session = sessions[address]
        async with gate, session.request(method, path, json=body) as response:
            await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1

    try:
        await asyncio.gather(*(one(*request) for request in requests))
    finally:
        for session in sessions.values():
            await session.close()
    return statuses


def figure(name: str, before: int, after: int, statuses: dict[int, int]) -> None:
    print(
        f"\n{name}: database {before / MB:.2f} MB -> {after / MB:.2f} MB "
        f"(+{(after - before) / 1000:.0f} kB), answers {dict(sorted(statuses.items()))}"
    )


def heavy_code(device_id: str) -> dict[str, Any]:
    """The M4 body: as many bytes of checks as the mock takes (4 KiB of JSON)."""
    checks = [{"name": f"c{n}", "status": "warn", "detail": "d" * 900, "fix": ""} for n in range(4)]
    return {
        "device_id": device_id,
        "code": activation_code.generate(),
        "secret": base64.b64encode(os.urandom(32)).decode(),
        "name": "n" * 128,
        "version": "v" * 128,
        "checks": checks,
    }


def m4_requests(addresses: list[str]) -> list[tuple[str, str, str, Any]]:
    """1,500 registrations: any device ID, 5 codes per ID, spread over `addresses`."""
    return [
        (
            addresses[n % len(addresses)],
            "POST",
            "/v1/nvr/activations",
            heavy_code(f"02:25:00:00:{n // 5 // 256:02x}:{n // 5 % 256:02x}"),
        )
        for n in range(ATTACK)
    ]


async def test_m4_from_one_address_stores_what_one_nvr_site_would(mock: RunningMock) -> None:
    before = database_bytes(mock)
    statuses = await send_all(mock, m4_requests(["127.0.0.2"]))
    after = database_bytes(mock)
    figure("M4, 1,500 registrations from one address", before, after, statuses)
    per_client = mock.app[GUARD].limits.per_client
    assert statuses == {201: per_client, 429: ATTACK - per_client}
    assert after - before < 1 * MB


async def test_m4_from_many_addresses_is_bounded_in_all_and_pruned(mock: RunningMock) -> None:
    limits = mock.app[GUARD].limits
    addresses = [f"127.0.1.{n}" for n in range(1, ATTACK // limits.per_client + 1)]
    before = database_bytes(mock)
    statuses = await send_all(mock, m4_requests(addresses))
    after = database_bytes(mock)
    figure(f"M4, 1,500 registrations from {len(addresses)} addresses", before, after, statuses)
    assert statuses == {201: ATTACK}
    assert after - before < 12 * MB

    # Filling the mock: 5,000 unused codes at most, from as many addresses as it takes.
    more = [f"127.0.2.{n}" for n in range(1, (limits.unused_codes - ATTACK) // 30 + 6)]
    requests = [
        (
            more[n % len(more)],
            "POST",
            "/v1/nvr/activations",
            heavy_code(f"02:26:00:00:00:{n % 256:02x}"),
        )
        for n in range(len(more) * limits.per_client)
    ]
    statuses = await send_all(mock, requests)
    full = database_bytes(mock)
    figure(f"filled: {len(requests)} more from {len(more)} addresses", after, full, statuses)
    assert mock.app[STORE].registrators.unused_codes() == limits.unused_codes
    assert statuses[503] > 0
    assert full < 30 * MB

    # A day and an hour later the codes are forgotten; a second wave reuses their pages.
    mock.clock.advance(86_400 + CODE_GRACE_S + 1)
    assert prune(mock.app[STORE], mock.clock.now()) == limits.unused_codes
    assert mock.app[STORE].registrators.unused_codes() == 0
    mock.clock.advance(limits.window_s)
    statuses = await send_all(mock, m4_requests(addresses))
    again = database_bytes(mock)
    figure("a day later, the 1,500 again", full, again, statuses)
    assert again <= full


async def test_registration_tokens_made_up_store_nothing(mock: RunningMock) -> None:
    body = {"token": "rt_guess", "device_id": "02:25:00:00:00:01"}
    requests = [
        (
            f"127.0.3.{n % 50 + 1}",
            "POST",
            "/v1/nvr/register",
            {**body, "token": f"rt_{n}", "secret": base64.b64encode(os.urandom(32)).decode()},
        )
        for n in range(ATTACK)
    ]
    before = database_bytes(mock)
    statuses = await send_all(mock, requests)
    after = database_bytes(mock)
    figure("POST /v1/nvr/register, 1,500 made-up tokens", before, after, statuses)
    assert statuses == {404: ATTACK}
    assert after == before


async def test_polls_for_made_up_devices_leave_nonces_for_five_minutes(mock: RunningMock) -> None:
    now = int(mock.clock.now())
    requests = [
        (
            "127.0.0.2",
            "POST",
            "/v1/provisioning/poll",
            PollRequest.build(
                os.urandom(32), f"02:25:00:01:{n // 256:02x}:{n % 256:02x}", now, 0
            ).to_json(),
        )
        for n in range(ATTACK)
    ]
    before = database_bytes(mock)
    statuses = await send_all(mock, requests)
    after = database_bytes(mock)
    figure("POST /v1/provisioning/poll, 1,500 made-up devices", before, after, statuses)
    assert statuses == {204: ATTACK}
    nonces = mock.app[STORE].database.db.execute("SELECT COUNT(*) FROM nonces").fetchone()[0]
    log_rows = mock.app[STORE].devices.poll_log_rows()
    print(f"  {nonces} nonces (kept 300 s), {log_rows} poll-log row(s)")
    assert nonces == ATTACK
    assert log_rows <= 2
    assert after - before < 1 * MB


async def test_wrong_logins_and_captchas_store_nothing_on_disk(mock: RunningMock) -> None:
    requests: list[tuple[str, str, str, Any]] = [
        (
            f"127.0.4.{n % 5 + 1}",  # 30 failures an address, then 429 (no scrypt)
            "POST",
            "/v1/auth/login",
            {"login": f"user{n}", "password": "wrong"},
        )
        for n in range(ATTACK)
    ]
    before = database_bytes(mock)
    statuses = await send_all(mock, requests)
    after = database_bytes(mock)
    figure("POST /v1/auth/login, 1,500 wrong logins", before, after, statuses)
    assert after == before
    captchas = [(f"127.0.5.{n % 50 + 1}", "GET", "/v1/auth/captcha", None) for n in range(ATTACK)]
    statuses = await send_all(mock, captchas)
    final = database_bytes(mock)
    state = mock.app[LOGIN_STATE]
    figure("GET /v1/auth/captcha, 1,500 from 50 addresses", after, final, statuses)
    print(f"  {len(state.captchas)} captchas live in memory")
    assert final == after
    assert len(state.captchas) <= 50 * 8
