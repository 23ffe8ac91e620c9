"""A Debian 12 system booted with systemd-nspawn, for tests that need a real systemd.

The root file system is made once with mmdebstrap and cached (keyed by its package list);
each test session unpacks it afresh and boots it. The container shares the host's network,
so a mock cloud on the host's 127.0.0.1 is reachable from inside.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CAMAGENT_ROOTFS_CACHE", "/var/cache/camagent-tests"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the package needs at run time is there already: installing it needs no network.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-aiohttp",
    "python3-cryptography",
    "python3-qrcode",
    "python3-systemd",
    "python3-zeroconf",
    "ca-certificates",
    "iproute2",
    "curl",
)


def rootfs_tarball() -> Path:
    key = hashlib.sha256(" ".join((SUITE, *PACKAGES)).encode()).hexdigest()[:12]
    tarball = CACHE / f"{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    subprocess.run(
        [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(partial),
            MIRROR,
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    partial.rename(tarball)
    return tarball


class Container:
    def __init__(self, root: Path, name: str = "camtest") -> None:
        self.root = root
        self.name = name
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self, timeout: float = 90) -> None:
        root = self.root
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        with tarfile.open(rootfs_tarball()) as tar:
            tar.extractall(root, filter="fully_trusted")  # our own mmdebstrap output
        (root / "etc" / "hostname").write_text(self.name + "\n")
        log = (root.parent / f"{self.name}-console.log").open("wb")
        self.nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(root),
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                f"--machine={self.name}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        # nspawn's first child sets the namespaces up and only then becomes systemd: enter
        # the container through the process that already is systemd, nothing earlier.
        while not self.leader:
            if self.nspawn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the container did not start; see {log.name}")
            self.leader = _descendant_named(self.nspawn.pid, "systemd")
            time.sleep(0.05)
        # Until systemd inside listens on its bus, systemctl answers nothing (or "offline"
        # while it is still starting): ask again.
        answer = ""
        while answer not in ("running", "degraded"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container's systemd is {answer or 'silent'!r}")
            state = self.run(
                ["systemctl", "is-system-running", "--wait"], check=False, timeout=timeout
            )
            answer = state.stdout.strip()
            if answer not in ("running", "degraded", "starting", "initializing"):
                time.sleep(0.1)

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside (all namespaces of the container's PID 1)."""
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def path(self, inside: str) -> Path:
        """A path inside the container, seen from the host."""
        return self.root / inside.lstrip("/")

    def shutdown(self) -> None:
        if self.nspawn is None:
            return
        if self.nspawn.poll() is None:
            self.run(["systemctl", "poweroff"], check=False, timeout=30)
            try:
                self.nspawn.wait(30)
            except subprocess.TimeoutExpired:
                self.nspawn.send_signal(signal.SIGKILL)
                self.nspawn.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _descendant_named(pid: int, name: str) -> int:
    """The first process below `pid` whose command name is `name`, or 0."""
    pending = [pid]
    while pending:
        current = pending.pop(0)
        children = Path(f"/proc/{current}/task/{current}/children")
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                if Path(f"/proc/{kid}/comm").read_text().strip() == name:
                    return kid
            except OSError:
                continue
            pending.append(kid)
    return 0


def build_deb(out: Path) -> Path:
    """Build the package from this checkout (packaging/build-deb.sh); return the .deb."""
    result = subprocess.run(
        [str(ROOT / "packaging" / "build-deb.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the package failed:\n{result.stdout}{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])
