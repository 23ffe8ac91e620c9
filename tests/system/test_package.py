"""The Debian package on a booted systemd (Debian 12 and 13, each with the package built on
it): install, run as a hardened service, survive crashes and hangs, connect to the cloud,
purge. Slow: run alone with `pytest -m slow`."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cloud_mock import sandbox
from cloud_mock.test_camera import running_test_camera
from cloud_mock.video.viewer import watch_sync
from tests.eventually import eventually
from tests.system.conftest import ROOT, copy_in
from tests.system.container import Container

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEVICE_IDS = {"bookworm": "02:5e:00:00:00:01", "trixie": "02:5e:00:00:00:02"}
PASSWORD = "system-test-label-password"


def main_pid(container: Container) -> int:
    return int(
        container.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout.strip()
    )


def wait_active(container: Container, timeout: float = 30, not_pid: int = 0) -> int:
    def active_pid() -> int:
        state = container.run(["systemctl", "is-active", "camagent"], check=False).stdout.strip()
        pid = main_pid(container)
        return pid if state == "active" and pid != not_pid else 0

    try:
        return eventually(active_pid, timeout=timeout, interval=0.2, what="camagent active")
    except AssertionError as failure:
        log = container.run(["journalctl", "-u", "camagent", "--no-pager", "-n", "40"], check=False)
        raise AssertionError(f"{failure} (again, not pid {not_pid}):\n{log.stdout}") from None


def status(container: Container) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(container.run(["camagent", "status", "--json"]).stdout)
    return answer


def wait_state(container: Container, state: str, timeout: float = 20) -> dict[str, Any]:
    return eventually(
        lambda: status(container),
        until=lambda current: current["state"] == state,
        timeout=timeout,
        interval=0.2,
        what=f"state {state!r}",
    )


def test_static_checks_of_the_package_and_unit(deb: Path) -> None:
    contents = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    assert "/dist-packages/agent/" in contents
    assert "cloud_mock" not in contents
    lintian = subprocess.run(
        ["lintian", "--allow-root", str(deb)], capture_output=True, text=True, check=False
    )
    assert not re.search(r"^[EW]:", lintian.stdout, re.M), lintian.stdout
    security = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--no-pager",
            str(ROOT / "packaging" / "camagent.service"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    exposure = re.search(r"Overall exposure level for camagent\.service: ([\d.]+)", security.stdout)
    assert exposure, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0


def test_install_starts_a_hardened_service_that_verifies_clean(box: Container, deb: Path) -> None:
    copy_in(box, deb, "/root/camagent.deb")
    box.run(["apt-get", "install", "-y", "/root/camagent.deb"], timeout=300)
    assert box.run(["systemctl", "is-enabled", "camagent"]).stdout.strip() == "enabled"
    verify = box.run(["systemd-analyze", "verify", "camagent.service"], check=False)
    assert verify.stdout + verify.stderr == ""
    assert box.run(["id", "-u", "camagent"]).stdout.strip() != "0"
    # The default config points at cloud.example.com: the service runs (provisioning).
    pid = wait_active(box)
    uid = box.run(["id", "-u", "camagent"]).stdout.strip()
    proc = box.run(["cat", f"/proc/{pid}/status"]).stdout
    assert re.search(rf"^Uid:\s+{uid}\s", proc, re.M), "the daemon does not run as camagent"
    assert re.search(r"^CapEff:\s+0+$", proc, re.M), "the daemon holds capabilities"
    assert re.search(r"^NoNewPrivs:\s+1$", proc, re.M)
    limits = box.run(["cat", f"/proc/{pid}/limits"]).stdout
    assert re.search(r"^Max open files\s+4096\s+4096\s", limits, re.M), limits
    owner = box.run(["stat", "-c", "%U %a", "/var/lib/camagent"]).stdout.split()
    assert owner == ["camagent", "700"]


def test_the_service_connects_to_the_cloud_on_the_host(
    box: Container, host_cloud: sandbox.Cloud
) -> None:
    device_id = DEVICE_IDS[box.release]
    copy_in(box, host_cloud.ca_file, "/etc/camagent/ca.pem")
    copy_in(box, host_cloud.signing_key_file, "/etc/camagent/cloud-keys.pem")
    box.path("/etc/camagent/password").write_text(PASSWORD + "\n")
    box.run(["chown", "root:camagent", "/etc/camagent/password"])
    box.run(["chmod", "0640", "/etc/camagent/password"])
    box.path("/etc/camagent/agent.toml").write_text(
        f'[device]\nid = "{device_id}"\n'
        f'[cloud]\nurl = "{host_cloud.url}"\nca_file = "/etc/camagent/ca.pem"\n'
        'trust_keys = ["/etc/camagent/cloud-keys.pem"]\n'
        "[provisioning]\nfast_interval = 3\nlong_poll = 2\n"
    )
    box.run(["systemctl", "restart", "camagent"])
    wait_active(box)
    wait_state(box, "provisioning")
    session = host_cloud.login()
    host_cloud.add_camera(session, device_id, PASSWORD, "system test camera")
    connected = wait_state(box, "connected")
    assert connected["token"]["present"] is True
    fields = box.run(
        ["journalctl", "-u", "camagent", "-o", "json", "--no-pager", "STATE=connected"]
    ).stdout.splitlines()
    assert fields, "no journal entry carries STATE=connected"
    assert json.loads(fields[-1])["DEVICE_ID"] == device_id


def test_the_service_relays_live_video_through_its_tunnel(
    box: Container, host_cloud: sandbox.Cloud
) -> None:
    """The tunnel under the shipped unit's sandbox: the service reaches the camera's RTSP
    server (on the host: the container shares its network) and relays it to the cloud."""
    device_id = DEVICE_IDS[box.release]
    config = box.path("/etc/camagent/agent.toml")
    plain = config.read_text()
    with running_test_camera() as camera:
        config.write_text(plain + f'[video]\nmain = "{camera.main}"\n')
        # Not counted against the unit's start limit (5 in 10 s): the next tests restart it.
        box.run(["systemctl", "reset-failed", "camagent"], check=False)
        box.run(["systemctl", "restart", "camagent"])
        wait_active(box)
        wait_state(box, "connected")
        session = host_cloud.login()
        _, cameras = host_cloud.request("GET", "/v1/cameras", session=session)
        (camera_id,) = [c["camera_id"] for c in cameras["cameras"] if c["device_id"] == device_id]
        seen = watch_sync(
            f"{host_cloud.url}/v1/cameras/{camera_id}/live?stream=main",
            session,
            host_cloud.ssl_context(),
            fragments=10,
            timeout=60,
        )
    config.write_text(plain)  # for the next restart; the camera is gone, nothing streams
    assert seen.init is not None, seen.statuses
    assert (seen.init["width"], seen.init["height"]) == (640, 360)
    assert len(seen.fragments) == 10
    log = box.run(["journalctl", "-u", "camagent", "--no-pager"]).stdout
    assert re.search(r"tunnel \S+ to main \(127\.0\.0\.1:\d+\): open", log), log[-2000:]
    assert camera.password is not None, "the test camera asks for a password"
    assert camera.password not in log


def test_a_crashed_daemon_is_restarted_and_keeps_its_token(box: Container) -> None:
    pid = wait_active(box)
    box.run(["systemctl", "kill", "--kill-whom=main", "-s", "SEGV", "camagent"])
    wait_active(box, not_pid=pid)
    wait_state(box, "connected")


def test_a_hung_daemon_is_killed_by_the_watchdog_and_restarted(box: Container) -> None:
    dropin = box.path("/etc/systemd/system/camagent.service.d/watchdog.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nWatchdogSec=3\n")  # shrunk for the test
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "restart", "camagent"])
    pid = wait_active(box)
    time.sleep(4)  # time is the subject: watchdog periods pass, a healthy daemon stays
    assert main_pid(box) == pid
    # The event loop stops: no more WATCHDOG=1.
    box.run(["systemctl", "kill", "--kill-whom=main", "-s", "STOP", "camagent"])
    new_pid = wait_active(box, timeout=30, not_pid=pid)
    assert new_pid != pid
    log = box.run(["journalctl", "-u", "camagent", "--no-pager"]).stdout
    assert "Watchdog timeout" in log
    dropin.unlink()
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "restart", "camagent"])
    wait_state(box, "connected")


def test_purge_removes_the_service_and_the_state(box: Container) -> None:
    box.run(["apt-get", "purge", "-y", "camagent"], timeout=120)
    assert not box.path("/var/lib/camagent").exists()
    assert not box.path("/usr/bin/camagent").exists()
    gone = box.run(["systemctl", "is-active", "camagent"], check=False)
    assert gone.stdout.strip() in ("inactive", "unknown")
