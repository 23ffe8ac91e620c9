"""System benchmarks on a booted Debian 12 container (systemd-nspawn, see tests/system):
the package's installed size, and service start → READY=1 as systemd records it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import ROOT, BenchmarkError, Context, Row, median
from cloud_mock import sandbox
from tests.system.container import (
    RELEASES,
    Container,
    build_deb,
    build_deb_inside,
    trust_cloud,
)


def _monotonic_us(container: Container, prop: str) -> int:
    out = container.run(["systemctl", "show", "-p", prop, "--value", "camagent"]).stdout
    return int(out.strip())


def service_ready(ctx: Context) -> list[Row]:
    runs = 3 if ctx.quick else 10
    try:
        deb = build_deb(ctx.new_dir("deb"))
    except RuntimeError as exc:
        raise BenchmarkError(str(exc)[-500:]) from None
    container = Container(ctx.new_dir("container") / "root", name="cambench")
    ctx.stack.callback(container.shutdown)
    container.boot()
    target = container.path("/root/camagent.deb")
    shutil.copyfile(deb, target)
    container.run(["apt-get", "install", "-y", "/root/camagent.deb"], timeout=300)
    size_kib = int(
        container.run(["dpkg-query", "-W", "-f=${Installed-Size}", "camagent"]).stdout.strip()
    )
    ready_ms = []
    for _ in range(runs):
        # reset-failed clears systemd's start-rate counter (5 starts in 10 s by default).
        container.run(["systemctl", "reset-failed", "camagent"], check=False)
        container.run(["systemctl", "restart", "camagent"])  # returns once READY=1 came
        start = _monotonic_us(container, "ExecMainStartTimestampMonotonic")
        active = _monotonic_us(container, "ActiveEnterTimestampMonotonic")
        ready_ms.append((active - start) / 1000)
    p50 = median(ready_ms)
    return [
        Row(
            "package_installed_size",
            size_kib,
            "KiB",
            f"{size_kib} KiB",
            "",
            None,
            "dpkg-query Installed-Size in the container (agent only, no QR libraries)",
        ),
        Row(
            "container_start_to_ready",
            round(p50, 1),
            "ms",
            f"p50 {p50:.0f} ms, max {max(ready_ms):.0f} ms (n={runs})",
            "p50 <= 400 ms",
            p50 <= 400,
            "systemd's ExecMainStart → ActiveEnter (READY=1) on a booted Debian 12, "
            "python3-aiohttp 3.8 from Debian",
        ),
    ]


def install_one_liner(ctx: Context) -> list[Row]:
    """`curl … /install.sh | sh -s -- --nvr` on a fresh booted container: time to the
    service being active, and to the activation code being printed (the script's end)."""
    try:
        deb = build_deb(ctx.new_dir("deb"))
    except RuntimeError as exc:
        raise BenchmarkError(str(exc)[-500:]) from None
    packages = ctx.new_dir("packages")
    shutil.copyfile(deb, packages / deb.name)
    cloud = sandbox.start_cloud(ctx.new_dir("served-cloud"), packages=packages)
    ctx.stack.callback(cloud.stop)
    container = Container(ctx.new_dir("installbox") / "root", name="benchinstall")
    ctx.stack.callback(container.shutdown)
    container.boot()
    shutil.copyfile(cloud.ca_file, container.path("/root/cloud-ca.pem"))
    command = f"curl -fsSL --cacert /root/cloud-ca.pem {cloud.url}/install.sh | sh -s -- --nvr"
    active_at: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            state = container.run(["systemctl", "is-active", "camagent"], check=False)
            if state.stdout.strip() == "active":
                active_at.append(time.monotonic())
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    start = time.monotonic()
    watcher.start()
    result = container.run(["sh", "-c", command], check=False, timeout=300)
    finished = time.monotonic()
    done.set()
    watcher.join()
    if result.returncode != 0 or "Activation code" not in result.stdout + result.stderr:
        raise BenchmarkError(f"install.sh failed: {(result.stdout + result.stderr)[-400:]}")
    to_active = (active_at[0] - start) if active_at else float("nan")
    to_code = finished - start
    return [
        Row(
            "install_to_active",
            round(to_active, 2),
            "s",
            f"{to_active:.1f} s",
            "",
            None,
            "one-liner on a booted Debian 12: start → `systemctl is-active` active (50 ms poll)",
        ),
        Row(
            "install_to_code",
            round(to_code, 2),
            "s",
            f"{to_code:.1f} s",
            "",
            None,
            "one-liner with --nvr: start → the activation code, URL and QR printed",
        ),
    ]


# -- the installed service's idle memory ------------------------------------------------

SERVICE_PASSWORD = "bench-service-password"


def _service_rss(
    ctx: Context, box: Container, cloud: sandbox.Cloud, device: str, local_api: bool
) -> tuple[float, dict[str, str]]:
    """VmRSS (MiB) of the service's main process, connected and left alone 3 s."""
    box.run(["systemctl", "stop", "camagent"])
    box.run(["sh", "-c", "rm -rf /var/lib/camagent/*"])
    switch = "true" if local_api else "false"
    box.path("/etc/camagent/agent.toml").write_text(
        f'[device]\nid = "{device}"\npassword_file = "/etc/camagent/password"\n'
        f'[cloud]\nurl = "{cloud.url}"\nca_file = "/etc/camagent/ca.pem"\n'
        'trust_keys = ["/etc/camagent/cloud-keys.pem"]\n'
        "[provisioning]\nfast_interval = 3\nlong_poll = 2\n"
        f"[local_api]\nenabled = {switch}\nport = 0\nmdns = {switch}\n"
    )
    cloud.add_camera(cloud.login(), device, SERVICE_PASSWORD, device)
    box.run(["systemctl", "start", "camagent"])
    deadline = time.monotonic() + 90
    while True:
        shown = box.run([_cli(box), "status", "--json"], check=False)
        status = json.loads(shown.stdout) if shown.stdout.startswith("{") else {}
        if status.get("state") == "connected":
            break
        if time.monotonic() > deadline:
            journal = box.run(
                ["journalctl", "-u", "camagent", "--no-pager", "-n", "15"], check=False
            ).stdout
            raise BenchmarkError(
                f"the service did not connect: {(shown.stdout + shown.stderr)[-300:]}\n{journal}"
            )
        time.sleep(0.3)
    time.sleep(3.0)
    local = json.loads(box.run([_cli(box), "status", "--json"]).stdout).get("local_api") or {}
    if local_api and not (local.get("port") and local.get("mdns")):
        # A figure without the local API would flatter the default config.
        raise BenchmarkError(f"the local API or mDNS did not start: {local}")
    main_pid = _main_pid(box)
    text = box.run(["cat", f"/proc/{main_pid}/status"]).stdout
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    ctx.log(f"{box.release}: local API {switch}, VmRSS {fields['VmRSS'].strip()}")
    return int(fields["VmRSS"].split()[0]) / 1024, fields


def _cli(box: Container) -> str:
    """`camagent`: the .deb's in /usr/bin, install.sh's venv link in /usr/local/bin (which
    is not on the PATH commands run with in the container)."""
    venv_link = "/usr/local/bin/camagent"
    return venv_link if box.path(venv_link).is_symlink() else "camagent"


def _main_pid(box: Container) -> int:
    out = box.run(["systemctl", "show", "-p", "MainPID", "--value", "camagent"]).stdout
    return int(out.strip())


_VERSIONS = """
import sys, aiohttp, cryptography, zeroconf
def where(module):
    return " (Debian's)" if module.__file__.startswith("/usr/lib/python3/") else " (PyPI's)"
print(f"Python {sys.version.split()[0]}, " + ", ".join(
    f"{m.__name__} {m.__version__}{where(m)}" for m in (aiohttp, cryptography, zeroconf)))
"""


def _versions(box: Container, python: str = "python3") -> str:
    return box.run([python, "-c", _VERSIONS]).stdout.strip()


def _venv_wheels(ctx: Context, python: str) -> tuple[Path, Path]:
    """The agent's wheel, and it with its dependencies as PyPI has them for the container's
    Python (manylinux): install.sh's venv method installs from these, offline."""
    packages = ctx.new_dir("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(packages),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = ctx.new_dir("wheels")
    platforms = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(wheels),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python,
            *[arg for platform in platforms for arg in ("--platform", platform)],
            str(next(packages.glob("camagent-*.whl"))),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return packages, wheels


def _install_by_venv(box: Container, cloud: sandbox.Cloud, wheels: Path) -> str:
    """install.sh's method for systems without the .deb: a venv that uses the system's
    libraries where they meet the requirements, PyPI's wheels (from `wheels`) otherwise.
    Returns the libraries' versions and where they come from."""
    box.run(["apt-get", "purge", "-y", "-q", "camagent"], check=False, timeout=300)
    if box.path("/opt/camagent").exists():
        box.run(
            [
                "sh",
                "-c",
                "curl -fsSL --cacert /root/cloud-ca.pem "
                f"{cloud.url}/install.sh | sh -s -- --uninstall",
            ],
            timeout=300,
        )
    shutil.copytree(wheels, box.path("/root/wheels"), dirs_exist_ok=True)
    script = (
        f"curl -fsSL --cacert /root/cloud-ca.pem {cloud.url}/install.sh"
        " | PIP_NO_INDEX=1 PIP_FIND_LINKS=/root/wheels sh"
    )
    result = box.run(["sh", "-c", script], check=False, timeout=600)
    if result.returncode != 0:
        raise BenchmarkError(f"install.sh (venv) failed: {(result.stdout + result.stderr)[-400:]}")
    return _versions(box, "/opt/camagent/bin/python")


def _rss_rows(
    ctx: Context, box: Container, cloud: sandbox.Cloud, name: str, n: int, how: str
) -> list[Row]:
    rows = []
    for local_api, target, what in (
        (False, 44.0, "local API and mDNS off"),
        (True, 48.0, "local API and mDNS on (the shipped default)"),
    ):
        device = f"02:5b:00:00:{n:02x}:{int(local_api):02x}"
        trust_cloud(box, cloud.ca_file, cloud.signing_key_file, SERVICE_PASSWORD)
        rss_mib, fields = _service_rss(ctx, box, cloud, device, local_api)
        rows.append(
            Row(
                name + (".default_config" if local_api else ""),
                round(rss_mib, 2),
                "MiB",
                f"{rss_mib:.1f} MiB (peak {int(fields['VmHWM'].split()[0]) / 1024:.1f})",
                f"<= {target:.0f} MiB",
                rss_mib <= target,
                f"{how}, {what}, connected, settled 3 s",
                {k: fields.get(k, "").strip() for k in ("VmRSS", "VmHWM", "RssAnon")},
            )
        )
    return rows


def _venv_rows(ctx: Context, box: Container, cloud: sandbox.Cloud, wheels: Path) -> list[Row]:
    """install.sh's venv method twice: with Debian's libraries there (as on a distribution
    that packages them), then with none of them (PyPI's wheels for everything)."""
    shutil.copyfile(cloud.ca_file, box.path("/root/cloud-ca.pem"))
    versions = _install_by_venv(box, cloud, wheels)
    how = f"VmRSS of the service install.sh sets up without the .deb: a venv ({versions})"
    rows = _rss_rows(ctx, box, cloud, "service_idle_rss.bookworm.venv", 8, how)
    box.run(
        [
            "apt-get",
            "purge",
            "-y",
            "-q",
            "python3-aiohttp",
            "python3-cryptography",
            "python3-zeroconf",
        ],
        timeout=300,
    )
    versions = _install_by_venv(box, cloud, wheels)
    how = (
        "the same on a system that packages none of the libraries: a venv "
        f"({versions}); the libraries' floor is idle_rss.libraries"
    )
    return rows + _rss_rows(ctx, box, cloud, "service_idle_rss.bookworm.venv_pypi", 10, how)


def service_idle_rss(ctx: Context) -> list[Row]:
    """The package as shipped, under systemd on a booted Debian 12 and 13, connected to a
    mock cloud on the host: the idle memory a camera owner sees in `systemctl status`.
    On Debian 12 also install.sh's venv method (what other distributions get), with and
    without the distribution's own aiohttp, cryptography and zeroconf."""
    packages, wheels = _venv_wheels(ctx, "3.11")
    cloud = sandbox.start_cloud(ctx.new_dir("rss-cloud"), packages=packages)
    ctx.stack.callback(cloud.stop)
    rows: list[Row] = []
    for n, release in enumerate(RELEASES):
        box = Container(ctx.new_dir(f"rss-{release}") / "root", release=release, name="benchrss")
        box.boot()
        try:
            try:
                deb = build_deb_inside(box, ctx.new_dir(f"deb-{release}"))
            except subprocess.CalledProcessError as exc:
                raise BenchmarkError(f"building the package failed: {exc}") from None
            shutil.copyfile(deb, box.path("/root/camagent.deb"))
            box.run(["apt-get", "install", "-y", "-q", "/root/camagent.deb"], timeout=300)
            how = (
                f"VmRSS of the installed .deb's service on a booted Debian {release} "
                f"({_versions(box)})"
            )
            rows += _rss_rows(ctx, box, cloud, f"service_idle_rss.{release}", 2 * n, how)
            if release == "bookworm":
                rows += _venv_rows(ctx, box, cloud, wheels)
        finally:
            box.shutdown()
    return rows
