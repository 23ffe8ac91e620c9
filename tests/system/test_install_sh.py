"""The one-liner on a booted Debian 12 and 13: `curl … /install.sh | sh -s -- …` against a
mock cloud on the host that serves the script and the package built on that release.
Slow: `pytest -m slow`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import identity
from agent.config import Config
from cloud_mock import sandbox
from tests.eventually import eventually
from tests.system.conftest import ROOT, copy_in
from tests.system.container import Container

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def served_cloud(tmp_path_factory: pytest.TempPathFactory, deb: Path) -> Iterator[sandbox.Cloud]:
    packages = tmp_path_factory.mktemp("packages")
    shutil.copyfile(deb, packages / deb.name)
    cloud = sandbox.start_cloud(tmp_path_factory.mktemp("cloud"), packages=packages)
    yield cloud
    cloud.stop()


@pytest.fixture(scope="module", autouse=True)
def with_the_clouds_ca(box: Container, served_cloud: sandbox.Cloud) -> None:
    copy_in(box, served_cloud.ca_file, "/root/cloud-ca.pem")


def one_liner(
    box: Container,
    cloud: sandbox.Cloud,
    *options: str,
    token: str = "",
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Exactly what a server admin pastes (with the mock's CA, which no system trusts);
    a token goes in the environment (`export CAMAGENT_TOKEN=…` first), never on a
    command line."""
    command = (
        f"curl -fsSL --cacert /root/cloud-ca.pem {cloud.url}/install.sh"
        f" | sh -s -- {' '.join(options)}"
    )
    env = {"CAMAGENT_TOKEN": token} if token else {}
    return box.run(["sh", "-c", command], check=False, timeout=timeout, env=env)


def installed(box: Container) -> bool:
    result = box.run(["dpkg-query", "-W", "-f=${Status}", "camagent"], check=False)
    return result.stdout.strip() == "install ok installed"


def test_dry_run_changes_nothing(box: Container, served_cloud: sandbox.Cloud) -> None:
    result = one_liner(box, served_cloud, "--nvr", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "apt-get" in result.stdout + result.stderr
    assert not installed(box)
    assert not box.path("/etc/camagent/agent.toml").exists()


def test_nvr_one_liner_prints_its_code_and_connects_once_activated(
    box: Container, served_cloud: sandbox.Cloud
) -> None:
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
    eventually(
        lambda: json.loads(box.run(["camagent", "status", "--json"]).stdout)["state"],
        until=lambda state: state == "connected",
        timeout=30,
        interval=0.2,
        what="the activated NVR connecting",
    )


def test_running_it_again_changes_nothing(box: Container, served_cloud: sandbox.Cloud) -> None:
    pid = box.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout
    config = box.path("/etc/camagent/agent.toml").read_text()
    result = one_liner(box, served_cloud, "--nvr")
    assert result.returncode == 0, result.stdout + result.stderr
    assert box.path("/etc/camagent/agent.toml").read_text() == config
    assert box.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout == pid


def test_uninstall_then_a_camera_with_a_token_connects(
    box: Container, served_cloud: sandbox.Cloud
) -> None:
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
    result = one_liner(box, served_cloud, token=camera["token"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert camera["token"] not in output
    assert "warning" not in output
    status = json.loads(box.run(["camagent", "status", "--json"]).stdout)
    assert status["state"] == "connected", output
    assert status["token"]["jti"]


@pytest.fixture(scope="module")
def wheel_cloud(
    box: Container, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sandbox.Cloud]:
    """A cloud that serves the agent's wheel and no .deb (as for other distributions);
    one per release (through `box`), as the device's ID is the same on both."""
    packages = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(packages), ROOT],
        check=True,
        capture_output=True,
        timeout=300,
    )
    cloud = sandbox.start_cloud(tmp_path_factory.mktemp("wheel-cloud"), packages=packages)
    yield cloud
    cloud.stop()


def test_without_a_deb_the_venv_uses_debians_libraries_and_connects(
    box: Container, served_cloud: sandbox.Cloud, wheel_cloud: sandbox.Cloud
) -> None:
    assert one_liner(box, served_cloud, "--uninstall", "--purge").returncode == 0
    copy_in(box, wheel_cloud.ca_file, "/root/wheel-cloud-ca.pem")
    camera = wheel_cloud.add_camera(
        wheel_cloud.login(), identity.device_id(Config()), "irrelevant-here", "venv"
    )
    command = f"curl -fsSL --cacert /root/wheel-cloud-ca.pem {wheel_cloud.url}/install.sh | sh"
    # No package index at all: every library the agent needs is Debian's.
    env = {"CAMAGENT_TOKEN": camera["token"], "PIP_NO_INDEX": "1"}
    result = box.run(["sh", "-c", command], check=False, timeout=600, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "installing into a Python virtual environment" in output
    assert not installed(box)
    status = json.loads(box.run(["/usr/local/bin/camagent", "status", "--json"]).stdout)
    assert status["state"] == "connected", output
    main_pid = box.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout
    command_line = box.run(["cat", f"/proc/{main_pid.strip()}/cmdline"]).stdout
    assert command_line.startswith("/opt/camagent/bin/"), command_line
    where = box.run(
        [
            "/opt/camagent/bin/python",
            "-c",
            "import aiohttp, cryptography, zeroconf\n"
            "for m in (aiohttp, cryptography, zeroconf): print(m.__file__)",
        ]
    ).stdout.split()
    assert len(where) == 3
    assert all(path.startswith("/usr/lib/python3/dist-packages/") for path in where), where
    # Any cloud's script uninstalls; the venv goes with it.
    assert one_liner(box, served_cloud, "--uninstall", "--purge").returncode == 0
    assert not box.path("/opt/camagent").exists()
