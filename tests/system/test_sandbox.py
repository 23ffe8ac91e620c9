"""The shipped unit allows what the agent is for, and nothing else, on a booted Debian 12
and 13: the camera's video devices (and no other device node), the QR worker reading a
video file and an RTSP stream inside the service, NetworkManager through the package's
polkit rule, the local API and mDNS under its address-family filter.

Sandboxed probes run with `systemd-run` and the [Service] properties of the installed
unit as `systemctl cat` shows them (only how the process is started and supervised is
left out). What cannot run here: no V4L2 driver and no WiFi radio, so a video node opens
as far as its missing driver (ENXIO), and NetworkManager fails for want of a WiFi device.
Slow: `pytest -m slow`.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.provisioning.wire import derive_key, seal_token
from cloud_mock import sandbox
from tests.card_video import video_with_card
from tests.eventually import eventually
from tests.system.conftest import ROOT, copy_in
from tests.system.container import Container, qr_extras, trust_cloud

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PASSWORD = "sandbox-test-label-password"
# Neither the start nor the supervision of the process: everything else is the sandbox.
NOT_SANDBOX = {
    "Type",
    "NotifyAccess",
    "ExecStart",
    "ExecReload",
    "Restart",
    "RestartSec",
    "WatchdogSec",
    "TimeoutStopSec",
}
RUN = ("systemd-run", "--wait", "--pipe", "--quiet", "--collect")
DEVICE_PROBE = """
import errno, os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDWR))
        print(path, "OK")
    except OSError as error:
        print(path, errno.errorcode[error.errno])
"""


def device_id(box: Container, n: int) -> str:
    return f"02:5e:00:00:{1 + ('bookworm', 'trixie').index(box.release):02x}:{n:02x}"


def unit_properties(box: Container, **override: str) -> list[str]:
    """`-p NAME=VALUE` for every [Service] line of the installed unit, but NOT_SANDBOX."""
    text = box.run(["systemctl", "cat", "camagent.service"]).stdout
    service = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    args: list[str] = []
    for line in service.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        if name in NOT_SANDBOX or name in override:
            continue
        args += ["-p", f"{name}={value}"]
    for name, value in override.items():
        args += ["-p", f"{name}={value}"]
    return args


def sandboxed(box: Container, *argv: str, **override: str) -> subprocess.CompletedProcess[str]:
    """Run argv as the service would run (its user, its sandbox); wait for it.

    Without the service's own directories: a transient unit removes its RuntimeDirectory
    when it ends (the daemon's control socket is in there), and StateDirectory would be
    chowned to another User."""
    directories = {"StateDirectory": "", "RuntimeDirectory": "", "ConfigurationDirectory": ""}
    return box.run(
        [
            "systemd-run",
            "--wait",
            "--pipe",
            "--quiet",
            "--collect",
            *unit_properties(box, **(directories | override)),
            "--",
            *argv,
        ],
        check=False,
        timeout=120,
    )


def status(box: Container) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(box.run(["camagent", "status", "--json"]).stdout)
    return answer


def wait_state(box: Container, state: str, timeout: float = 60) -> dict[str, Any]:
    try:
        return eventually(
            lambda: status(box),
            until=lambda current: current["state"] == state,
            timeout=timeout,
            interval=0.3,
            what=f"state {state!r}",
        )
    except AssertionError as failure:
        log = box.run(["journalctl", "-u", "camagent", "--no-pager", "-n", "40"], check=False)
        raise AssertionError(f"{failure}\n{log.stdout}") from None


def token_jti(token: str) -> str:
    part = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))["jti"])


def card_video(path: Path, card: str, blank_seconds: float) -> None:
    """An MJPEG AVI: a grey frame for `blank_seconds`, then a QR card with `card` (its text)."""
    png = path.with_suffix(".png")
    subprocess.run(
        [sys.executable, "-m", "agent", "qr", "make", "token", "--png", str(png)],
        input=card.encode(),
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    video_with_card(path, png, blank_seconds, card_frames=30)


@pytest.fixture(scope="module")
def installed(box: Container, deb: Path, host_cloud: sandbox.Cloud) -> Container:
    copy_in(box, deb, "/root/camagent.deb")
    box.run(["apt-get", "install", "-y", "-q", "/root/camagent.deb"], timeout=300)
    # The [qr] extra, as a vendor adds it (see qr_extras): on Debian's python3 path.
    python = box.python_version()
    site = box.path(f"/usr/local/lib/python{python}/dist-packages")
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(qr_extras(python), site, symlinks=True)
    trust_cloud(box, host_cloud.ca_file, host_cloud.signing_key_file, PASSWORD)
    return box


def configure(box: Container, cloud: sandbox.Cloud, device: str, source: str) -> None:
    """A fresh device: no state, this config, the service restarted."""
    box.run(["systemctl", "stop", "camagent"])
    box.run(["sh", "-c", "rm -rf /var/lib/camagent/*"])
    box.path("/etc/camagent/agent.toml").write_text(
        f'[device]\nid = "{device}"\npassword_file = "/etc/camagent/password"\n'
        f'[cloud]\nurl = "{cloud.url}"\nca_file = "/etc/camagent/ca.pem"\n'
        'trust_keys = ["/etc/camagent/cloud-keys.pem"]\n'
        "[provisioning]\nfast_interval = 3\nlong_poll = 2\n"
        # Any free port: the host's network is shared with everyone on this machine.
        '[local_api]\nenabled = true\nlisten = "0.0.0.0"\nport = 0\nmdns = true\n'
        f'[qr]\nsource = "{source}"\nfps = 5\n'
    )
    box.run(["systemctl", "start", "camagent"])


def card_for(cloud: sandbox.Cloud, device: str) -> tuple[str, str]:
    """The token, and the card's text: that token sealed under the label password's K, as
    a camera takes a token from a card (docs/design.md §2.9). The cloud was given another
    password, so that polls never bring the token: only the card can."""
    session = cloud.login()
    token = str(cloud.add_camera(session, device, "not-the-label-password", "sandbox")["token"])
    return token, seal_token(derive_key(PASSWORD, device), device, token)


def qr_children(box: Container, main: int) -> list[int]:
    """The daemon's children that are QR workers (`python3 -m agent.qr.worker …`)."""
    kids = box.run(["cat", f"/proc/{main}/task/{main}/children"], check=False).stdout.split()
    workers = []
    for kid in kids:
        cmdline = box.run(["cat", f"/proc/{kid}/cmdline"], check=False).stdout
        if "agent.qr.worker" in cmdline:
            workers.append(int(kid))
    return workers


def proc_status(box: Container, pid: int) -> dict[str, str]:
    text = box.run(["cat", f"/proc/{pid}/status"]).stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


# --- devices ----------------------------------------------------------------------------------


def enforced(box: Container) -> bool:
    """Whether this container's systemd applies device policies at all."""
    control = box.run(
        [*RUN, "-p", "DevicePolicy=strict", "--", "python3", "-c", DEVICE_PROBE, "/dev/null"],
        check=False,
    )
    return "/dev/null EPERM" in control.stdout


def test_a_video_node_is_visible_and_opened_through_the_video_group(
    installed: Container,
) -> None:
    """Not hidden (PrivateDevices=no) and readable by the service's user through the video
    group, under PrivateUsers=yes; the device cgroup is the next test's."""
    box = installed
    box.run(["rm", "-f", "/dev/video7"])
    box.run(["mknod", "-m", "0660", "/dev/video7", "c", "81", "7"])
    box.run(["chgrp", "video", "/dev/video7"])
    no_cgroup = {"DevicePolicy": "auto", "DeviceAllow": ""}
    probe = sandboxed(box, "python3", "-c", DEVICE_PROBE, "/dev/video7", **no_cgroup)
    assert probe.returncode == 0, probe.stderr
    # Not ENOENT (visible), not EACCES (root:video 0660): the driver is missing.
    assert probe.stdout.strip() in ("/dev/video7 ENXIO", "/dev/video7 ENODEV")
    without = sandboxed(
        box, "python3", "-c", DEVICE_PROBE, "/dev/video7", SupplementaryGroups="", **no_cgroup
    )
    assert without.stdout.strip() == "/dev/video7 EACCES"


def test_the_device_policy_allows_video_nodes(installed: Container) -> None:
    box = installed
    assert enforced(box), "the container's systemd applies no device policy"
    allowed = box.run(["systemctl", "show", "-p", "DeviceAllow", "--value", "camagent"])
    assert "char-video4linux rw" in allowed.stdout
    if "video4linux" not in box.run(["cat", "/proc/devices"]).stdout:
        pytest.skip(
            "this kernel has no V4L2 (no video4linux in /proc/devices), so "
            "DeviceAllow=char-video4linux names no major here: a real camera's kernel does"
        )
    probe = sandboxed(box, "python3", "-c", DEVICE_PROBE, "/dev/video7", "/dev/null")
    assert probe.stdout.split("\n")[0] in ("/dev/video7 ENXIO", "/dev/video7 ENODEV")
    assert "/dev/null OK" in probe.stdout


def test_any_other_device_node_is_refused(installed: Container) -> None:
    box = installed
    assert enforced(box), "the container's systemd applies no device policy"
    box.run(["rm", "-f", "/dev/camtest-mem"])
    # /dev/mem's numbers, mode 0666: only the device policy stands between it and the agent.
    box.run(["mknod", "-m", "0666", "/dev/camtest-mem", "c", "1", "1"])
    probe = sandboxed(box, "python3", "-c", DEVICE_PROBE, "/dev/camtest-mem", "/dev/null")
    assert probe.stdout.split() == ["/dev/camtest-mem", "EPERM", "/dev/null", "OK"]
    # The same node without the policy: the kernel would open it but for its missing driver.
    loose = sandboxed(
        box, "python3", "-c", DEVICE_PROBE, "/dev/camtest-mem", DevicePolicy="auto", DeviceAllow=""
    )
    assert loose.stdout.strip() in ("/dev/camtest-mem ENXIO", "/dev/camtest-mem OK")


SYSCALL_PROBE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
PROT_RWX, MAP_PRIVATE_ANON = 7, 0x22
address = libc.mmap(None, 4096, PROT_RWX, MAP_PRIVATE_ANON, -1, 0)
failed = address in (None, ctypes.c_void_p(-1).value)
print("wx-mmap", errno.errorcode[ctypes.get_errno()] if failed else "OK")
try:
    os.setpriority(os.PRIO_PROCESS, 0, 5)  # @resources; allowed to any user otherwise
    print("setpriority OK")
except OSError as error:
    print("setpriority", errno.errorcode[error.errno])
"""


def test_the_sandbox_refuses_writable_executable_memory_and_filtered_syscalls(
    installed: Container,
) -> None:
    """What the QR worker starts under (a child inherits both): MemoryDenyWriteExecute
    and the syscall filter; each checked against the same probe without it."""
    box = installed
    probe = sandboxed(box, "python3", "-c", SYSCALL_PROBE)
    # EPERM from the seccomp filter (systemd 252); systemd 257 asks the kernel itself
    # (PR_SET_MDWE), which answers EACCES.
    wx, priority = probe.stdout.split("\n")[:2]
    assert wx in ("wx-mmap EPERM", "wx-mmap EACCES"), probe
    assert priority == "setpriority EPERM", probe
    control = sandboxed(
        box, "python3", "-c", SYSCALL_PROBE, MemoryDenyWriteExecute="no", SystemCallFilter=""
    )
    assert control.stdout.split("\n")[:2] == ["wx-mmap OK", "setpriority OK"], control


# --- WiFi through NetworkManager and the polkit rule ------------------------------------------

JOIN = """
import sys
from agent.errors import CamagentError
from agent.qr.payloads import WifiNetwork
from agent.wifi import apply_networkmanager
try:
    apply_networkmanager(WifiNetwork("camtest-net", "camtest-password", "WPA"))
except CamagentError as error:
    print(error)
    sys.exit(1)
"""


def test_nmcli_in_the_service_is_authorized_and_fails_only_for_want_of_wifi(
    installed: Container,
) -> None:
    box = installed
    box.run(["systemctl", "start", "NetworkManager"])
    box.run(["nmcli", "general", "status"])  # NetworkManager answers
    joined = sandboxed(box, "python3", "-c", JOIN)
    output = joined.stdout + joined.stderr
    assert joined.returncode == 1, output
    assert "nmcli connection failed" in output or "nmcli connection up failed" in output
    assert "No suitable device" in output or "no Wi-Fi device" in output.lower(), output
    assert "Insufficient privileges" not in output
    assert "not authorized" not in output.lower()
    # The profile was added: NetworkManager let the camagent user change system settings.
    profiles = box.run(["nmcli", "-t", "-f", "NAME", "connection", "show"]).stdout.split()
    assert "camagent-camtest-net" in profiles
    for profile in profiles:
        if "camtest-net" in profile:
            box.run(["nmcli", "connection", "delete", profile])


def test_the_same_as_another_user_is_not_authorized(installed: Container) -> None:
    box = installed
    box.run(["sh", "-c", "id camtest-other || useradd --system camtest-other"])
    refused = sandboxed(box, "python3", "-c", JOIN, User="camtest-other", Group="camtest-other")
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "Insufficient privileges" in output or "not authorized" in output.lower(), output
    profiles = box.run(["nmcli", "-t", "-f", "NAME", "connection", "show"]).stdout
    assert "camtest-net" not in profiles


# --- QR scanning inside the service -----------------------------------------------------------


def test_the_service_reads_a_card_in_a_video_file(
    installed: Container, host_cloud: sandbox.Cloud, tmp_path: Path
) -> None:
    box = installed
    device = device_id(box, 1)
    token, card = card_for(host_cloud, device)
    video = tmp_path / "card.avi"
    card_video(video, card, blank_seconds=2)
    copy_in(box, video, "/srv/camagent/card.avi")
    configure(box, host_cloud, device, "/srv/camagent/card.avi")
    connected = wait_state(box, "connected")
    assert connected["token"]["jti"] == token_jti(token)


def test_the_local_api_and_mdns_answer_under_the_address_family_filter(
    installed: Container,
) -> None:
    """Still the device of the test before (connected), with port 0 and mDNS on."""
    box = installed
    current = status(box)
    port = current["local_api"]["port"]
    assert isinstance(port, int)
    assert port > 0
    info = box.run(["curl", "-fsS", "--insecure", f"https://127.0.0.1:{port}/v1/info"])
    assert json.loads(info.stdout)["id"] == current["device_id"]
    # A browser on the same (shared) network: the announcement carries this port.
    browse = box.run(
        [
            "python3",
            "-c",
            "import sys, zeroconf\n"
            "zc = zeroconf.Zeroconf()\n"
            "names = []\n"
            "class L:\n"
            "    def add_service(self, z, t, n): names.append(n)\n"
            "    update_service = remove_service = lambda *a: None\n"
            "zeroconf.ServiceBrowser(zc, '_camagent._tcp.local.', L())\n"
            "import time; end = time.time() + 15\n"
            "while time.time() < end:\n"
            "    for n in list(names):\n"
            "        i = zc.get_service_info('_camagent._tcp.local.', n, 3000)\n"
            "        if i and i.port == int(sys.argv[1]): print(n); zc.close(); sys.exit(0)\n"
            "    time.sleep(0.3)\n"
            "zc.close(); sys.exit(1)\n",
            str(port),
        ],
        check=False,
        timeout=60,
    )
    assert browse.returncode == 0, browse.stdout + browse.stderr
    log = box.run(["journalctl", "-u", "camagent", "--no-pager"]).stdout
    assert "announced on mDNS" in log
    assert "Address family not supported" not in log


@pytest.fixture
def rtsp_stream(
    tmp_path: Path, host_cloud: sandbox.Cloud, installed: Container
) -> Iterator[tuple[str, str, str]]:
    device = device_id(installed, 2)
    token, card = card_for(host_cloud, device)
    video = tmp_path / "stream.avi"
    card_video(video, card, blank_seconds=8)
    server = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "tests" / "e2e" / "rtsp_server.py"), str(video)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdout is not None
    ready, _, port = server.stdout.readline().strip().decode().partition(" ")
    assert ready == "ready"
    yield f"rtsp://127.0.0.1:{port}/cam", device, token
    server.terminate()
    server.wait(10)
    server.stdout.close()


def test_the_service_reads_a_card_in_an_rtsp_stream_in_its_sandboxed_child(
    installed: Container, host_cloud: sandbox.Cloud, rtsp_stream: tuple[str, str, str]
) -> None:
    box = installed
    url, device, token = rtsp_stream
    configure(box, host_cloud, device, url)

    # The worker child while it watches the grey frames before the card.
    def daemon_and_workers() -> tuple[int, list[int]]:
        main = int(box.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout)
        return main, qr_children(box, main) if main else []

    main, children = eventually(
        daemon_and_workers,
        until=lambda found: bool(found[1]),
        timeout=30,
        interval=0.2,
        what="a QR worker",
    )
    parent, child = proc_status(box, main), proc_status(box, children[0])
    assert child["PPid"].strip() == str(main)
    assert child["Uid"].split() == parent["Uid"].split()
    assert child["CapEff"].strip() == "0000000000000000"
    assert child["NoNewPrivs"].strip() == "1"
    # Seccomp filters are inherited and cannot be dropped: the child runs under the same
    # ones as the daemon, the syscall filter and MemoryDenyWriteExecute among them.
    assert child["Seccomp"].strip() == "2"
    assert child["Seccomp_filters"] == parent["Seccomp_filters"]
    assert int(child["Seccomp_filters"]) >= 2
    cgroup = box.run(["cat", f"/proc/{children[0]}/cgroup"]).stdout
    assert "/system.slice/camagent.service" in cgroup
    connected = wait_state(box, "connected", timeout=90)
    assert connected["token"]["jti"] == token_jti(token)
    log = box.run(["journalctl", "-u", "camagent", "--no-pager"]).stdout
    assert re.search(r"scanning rtsp://127\.0\.0\.1:\d+/cam for QR cards", log)
