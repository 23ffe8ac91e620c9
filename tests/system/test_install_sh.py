"""The one-liner on a booted Debian 12: `curl … /install.sh | sh -s -- …` against a mock
cloud on the host that serves the script and the package. Slow: `pytest -m slow`."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import identity
from agent.config import Config
from cloud_mock import sandbox
from tests.system.conftest import copy_in
from tests.system.container import Container

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_cloud(tmp_path_factory: pytest.TempPathFactory, deb: Path) -> Iterator[sandbox.Cloud]:
    packages = tmp_path_factory.mktemp("packages")
    shutil.copyfile(deb, packages / deb.name)
    cloud = sandbox.start_cloud(tmp_path_factory.mktemp("cloud"), packages=packages)
    yield cloud
    cloud.stop()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, served_cloud) -> Iterator[Container]:
    booted = Container(tmp_path_factory.mktemp("installbox") / "root", name="installbox")
    booted.boot()
    copy_in(booted, served_cloud.ca_file, "/root/cloud-ca.pem")
    yield booted
    booted.shutdown()


def one_liner(box: Container, cloud: sandbox.Cloud, *options: str, timeout: float = 300):
    """Exactly what a server admin pastes (with the mock's CA, which no system trusts)."""
    command = (
        f"curl -fsSL --cacert /root/cloud-ca.pem {cloud.url}/install.sh"
        f" | sh -s -- {' '.join(options)}"
    )
    return box.run(["sh", "-c", command], check=False, timeout=timeout)


def installed(box: Container) -> bool:
    result = box.run(["dpkg-query", "-W", "-f=${Status}", "camagent"], check=False)
    return result.stdout.strip() == "install ok installed"


def test_dry_run_changes_nothing(box, served_cloud):
    result = one_liner(box, served_cloud, "--nvr", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "apt-get" in result.stdout + result.stderr
    assert not installed(box)
    assert not box.path("/etc/camagent/agent.toml").exists()


def test_nvr_one_liner_prints_its_code_and_connects_once_activated(box, served_cloud):
    started = time.monotonic()
    result = one_liner(box, served_cloud, "--nvr")
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert installed(box)
    status = json.loads(box.run(["camagent", "status", "--json"]).stdout)
    assert status["state"] == "awaiting_activation"
    code = status["activation"]["code"]
    assert code in output
    assert status["activation"]["activation_url"] in output
    assert "▀" in output or "▄" in output  # the terminal QR code
    assert took < 120
    session = served_cloud.login()
    registrator = served_cloud.request(
        "POST",
        "/v1/registrators",
        {"name": "installed by one-liner", "device": "virtual"},
        session=session,
    )[1]
    status_code, body = served_cloud.request(
        "POST",
        f"/v1/registrators/{registrator['id']}/activate",
        {"code": code},
        session=session,
    )
    assert status_code == 200, body
    box.run(["camagent", "poll-now"], check=False)  # in case the fast phase is over
    deadline = time.monotonic() + 30
    while json.loads(box.run(["camagent", "status", "--json"]).stdout)["state"] != "connected":
        assert time.monotonic() < deadline, "the activated NVR did not connect"
        time.sleep(0.2)


def test_running_it_again_changes_nothing(box, served_cloud):
    pid = box.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout
    config = box.path("/etc/camagent/agent.toml").read_text()
    result = one_liner(box, served_cloud, "--nvr")
    assert result.returncode == 0, result.stdout + result.stderr
    assert box.path("/etc/camagent/agent.toml").read_text() == config
    assert box.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout == pid


def test_uninstall_then_a_camera_with_a_token_connects(box, served_cloud):
    result = one_liner(box, served_cloud, "--uninstall", "--purge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not installed(box)
    session = served_cloud.login()
    # The same machine becomes a camera: the cloud forgets the NVR first.
    for registrator in served_cloud.request("GET", "/v1/registrators", session=session)[1][
        "registrators"
    ]:
        served_cloud.request("DELETE", f"/v1/registrators/{registrator['id']}", session=session)
    # The container shares the host's network, so its default device ID (the MAC of the
    # first interface) is the host's.
    device_id = identity.device_id(Config())
    camera = served_cloud.add_camera(session, device_id, "irrelevant-here", "door")
    result = one_liner(box, served_cloud, "--token", camera["token"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    status = json.loads(box.run(["camagent", "status", "--json"]).stdout)
    assert status["state"] == "connected", output
    assert status["token"]["jti"]
