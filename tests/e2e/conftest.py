"""End-to-end fixtures: the mock cloud and camagent daemons as real subprocesses."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_mock import sandbox

_ids = itertools.count(1)

# What the fixtures below hand a test
AddCamera = Callable[..., dict[str, Any]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[sandbox.Cloud]:
    c = sandbox.start_cloud(tmp_path / "cloud")
    yield c
    c.stop()


@pytest.fixture
def session(cloud: sandbox.Cloud) -> str:
    return cloud.login()


class Fleet:
    """Starts agents for a test and stops every one of them afterwards."""

    def __init__(self, root: Path, cloud: sandbox.Cloud) -> None:
        self.root = root
        self.cloud = cloud
        self.agents: list[sandbox.Agent] = []

    def configure(self, name: str | None = None, **options: Any) -> tuple[Path, str, str]:
        """Write a config; return (path, device_id, password)."""
        n = next(_ids)
        device_id = options.pop("device_id", f"02:00:00:00:{n // 256:02x}:{n % 256:02x}")
        password = options.pop("password", f"label-password-{n}")
        path = sandbox.write_agent_config(
            self.root / (name or f"device-{n}"),
            self.cloud,
            device_id=device_id,
            password=password,
            **options,
        )
        return path, device_id, password

    def start(self, config: Path, **kwargs: Any) -> sandbox.Agent:
        agent = sandbox.start_agent(config, **kwargs)
        self.agents.append(agent)
        return agent

    def stop_all(self) -> None:
        for agent in self.agents:
            agent.stop()


@pytest.fixture
def fleet(tmp_path: Path, cloud: sandbox.Cloud) -> Iterator[Fleet]:
    f = Fleet(tmp_path / "devices", cloud)
    yield f
    f.stop_all()


@pytest.fixture
def add_camera(cloud: sandbox.Cloud, session: str) -> AddCamera:
    def add(device_id: str, password: str, name: str = "test camera") -> dict[str, Any]:
        status, body = cloud.request(
            "POST",
            "/v1/cameras",
            {"device_id": device_id, "password": password, "name": name},
            session=session,
        )
        assert status == 201, body
        return dict(body)

    return add


def polls(cloud: sandbox.Cloud, device_id: str) -> list[dict[str, Any]]:
    status, body = cloud.request("GET", f"/v1/test/provisioning/log?device_id={device_id}")
    assert status == 200, body
    return list(body["polls"])


@pytest.fixture
def run_cli() -> RunCli:
    def run(config: Path | None, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "agent"]
        if config is not None:
            argv += ["--config", str(config)]
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=60, check=False, **kwargs
        )

    return run
