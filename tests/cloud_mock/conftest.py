"""An in-process mock on 127.0.0.1 (real TLS, real sockets) and a client trusting its CA."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cloud_mock.server import Options, RunningMock, start
from tests.cloud_mock.contract_plugin import contract_checked  # noqa: F401 (autouse)
from tests.cloud_mock.helpers import login


def mock_options(data_dir: Path, **overrides: object) -> Options:
    defaults: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "test_hooks": True,
        "heartbeat_s": 5,
        "command_timeout_s": 0.5,
    }
    defaults.update(overrides)
    return Options(**defaults)  # type: ignore[arg-type]


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[RunningMock]:
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        yield running
    finally:
        await running.stop()


def client_for(mock: RunningMock) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(mock.data_dir / "ca.pem"))
    return aiohttp.ClientSession(base_url=mock.url, connector=aiohttp.TCPConnector(ssl=context))


@pytest.fixture
async def client(mock: RunningMock) -> AsyncIterator[aiohttp.ClientSession]:
    async with client_for(mock) as session:
        yield session


@pytest.fixture
async def auth(client: aiohttp.ClientSession, mock: RunningMock) -> dict[str, str]:
    return await login(client, mock.data_dir)


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[RunningMock]:
    """A mock with the users and orgs of nvr_helpers.TEAM_FIXTURES (and admin of demo)."""
    from tests.cloud_mock.nvr_helpers import write_team_fixtures

    fixtures = write_team_fixtures(tmp_path / "team.json")
    running = await start(mock_options(tmp_path / "team", fixtures=fixtures))
    try:
        yield running
    finally:
        await running.stop()
