"""A Debian system (12 "bookworm" or 13 "trixie") booted with systemd-nspawn, for tests
that need a real systemd.

The root file system of each release is made once with mmdebstrap and cached (keyed by the
release and its package list); each test session unpacks it afresh and boots it. The
container shares the host's network, so a mock cloud or an RTSP server on the host's
127.0.0.1 is reachable from inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CAMAGENT_ROOTFS_CACHE", "/var/cache/camagent-tests"))
RELEASES = ("bookworm", "trixie")
HOST_DEVICES = Path("/sys/fs/cgroup/devices")
MIRROR = "http://deb.debian.org/debian"
# What the package needs at run time is there already: installing it needs no network.
# Debian's own python3-aiohttp, python3-cryptography and python3-zeroconf of each release.
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
    # The WiFi path: a real NetworkManager that asks polkit (the package's rule).
    "network-manager",
    "polkitd",
    # Building the package on the release itself (packaging/build-deb.sh).
    "build-essential",
    "dpkg-dev",
    "debhelper",
    "dh-python",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-setuptools",
    # install.sh's method where no .deb is served: a venv (ensurepip).
    "python3-venv",
)


def rootfs_tarball(suite: str) -> Path:
    key = hashlib.sha256(" ".join((suite, *PACKAGES)).encode()).hexdigest()[:12]
    tarball = CACHE / f"{suite}-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    subprocess.run(
        [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            suite,
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
    def __init__(self, root: Path, release: str = "bookworm", name: str = "camtest") -> None:
        self.root = root
        self.release = release
        self.name = name
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self._host_device_cgroups: set[Path] = set()

    def boot(self, timeout: float = 90) -> None:
        root = self.root
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        with tarfile.open(rootfs_tarball(self.release)) as tar:
            tar.extractall(root, filter="fully_trusted")  # our own mmdebstrap output
        (root / "etc" / "hostname").write_text(self.name + "\n")
        # The container shares the host's network: its NetworkManager must never touch the
        # host's interfaces. It still answers on D-Bus and asks polkit (tests/system).
        conf = root / "etc" / "NetworkManager" / "conf.d" / "99-camagent-tests.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("[main]\nno-auto-default=*\n[keyfile]\nunmanaged-devices=*\n")
        # nspawn writes to its own copy of the descriptor; ours is closed once it started.
        with (root.parent / f"{self.name}-console.log").open("wb") as log:
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
        nspawn = self.nspawn

        # nspawn's first child sets the namespaces up and only then becomes systemd: enter
        # the container through the process that already is systemd, nothing earlier.
        def systemd_pid() -> int:
            if nspawn.poll() is not None:
                raise RuntimeError(f"the container did not start; see {log.name}")
            return _descendant_named(nspawn.pid, "systemd")

        self.leader = eventually(
            systemd_pid, timeout=timeout, interval=0.05, what=f"the container ({log.name})"
        )

        # Until systemd inside listens on its bus, systemctl answers nothing (or "offline"
        # while it is still starting): ask again (`--wait` waits out "starting").
        def system_state() -> str:
            argv = ["systemctl", "is-system-running", "--wait"]
            return self.run(argv, check=False, timeout=timeout).stdout.strip()

        eventually(
            system_state,
            until=lambda answer: answer in ("running", "degraded"),
            timeout=max(0.0, deadline - time.monotonic()),
            interval=0.1,
            what="the container's systemd running",
        )
        self._enforce_device_policies()

    def _enforce_device_policies(self) -> None:
        """Let the container's systemd apply DevicePolicy=/DeviceAllow=.

        On a cgroup-v1 host nspawn mounts the devices hierarchy read-only, and systemd then
        silently applies no device policy at all: every DeviceAllow= test would pass for
        nothing. Made writable (and systemd re-executed to notice), the container's units
        get their devices.allow/deny lists under the host's devices hierarchy; the
        directories it makes there are removed again at shutdown (`_remove_device_cgroups`).
        """
        options = self.run(
            ["findmnt", "-n", "-o", "OPTIONS", "/sys/fs/cgroup/devices"], check=False
        ).stdout.strip()
        if "ro" not in options.split(","):
            return  # no v1 devices hierarchy (cgroup v2: BPF device programs), or writable
        self._host_device_cgroups = set(HOST_DEVICES.iterdir())
        self.run(["mount", "-o", "remount,rw,bind", "/sys/fs/cgroup/devices"])
        self.run(["systemctl", "daemon-reexec"])
        self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=60)

    def _remove_device_cgroups(self) -> None:
        for top in set(HOST_DEVICES.iterdir()) - self._host_device_cgroups:
            if not top.is_dir():
                continue
            for directory in sorted(
                (d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside (all namespaces of the container's PID 1)."""
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})},
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
                # The container's PID 1 first: killing nspawn alone leaves it running.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, signal.SIGKILL)
                self.nspawn.send_signal(signal.SIGKILL)
                self.nspawn.wait()
        self._remove_device_cgroups()
        shutil.rmtree(self.root, ignore_errors=True)

    def python_version(self) -> str:
        return self.run(
            ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        ).stdout.strip()


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


def build_deb_inside(container: Container, out: Path) -> Path:
    """Build the package from this checkout with the container's own Debian tools
    (packaging/build-deb.sh run inside); return the .deb, copied to `out`."""
    source = container.path("/root/camagent-src")
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        origin = ROOT / name.decode()
        if not origin.exists() and not origin.is_symlink():
            continue  # deleted in the work tree, not yet in git
        target = source / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            target.symlink_to(os.readlink(origin))
        else:
            shutil.copy2(origin, target)
    built = container.run(
        ["/root/camagent-src/packaging/build-deb.sh", "/root/camagent-deb"], timeout=600
    )
    deb = container.path(built.stdout.strip().splitlines()[-1])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(deb, out / deb.name)
    return out / deb.name


def qr_extras(python: str) -> Path:
    """OpenCV and zxing-cpp wheels for the container's Python, unpacked (cached).

    Debian 12's python3-zxing-cpp is 1.4, older than the reader needs (2.2: text modes),
    and python3-opencv pulls a desktop's worth of libraries: a device vendor adds the
    `[qr]` extra from PyPI wheels (manylinux, OpenCV with FFmpeg for RTSP) instead, and
    so do these tests, into /usr/local (on Debian's python3 path, not under dpkg).
    """
    target = CACHE / f"qr-extras-py{python}"
    if target.exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(partial),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python,
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_28_x86_64",
            "opencv-python-headless>=4.8",
            "zxing-cpp>=2.2",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    partial.rename(target)
    return target


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


def trust_cloud(box: Container, ca_file: Path, keys_file: Path, password: str) -> None:
    """What the device needs to reach a mock cloud on the host: the cloud's CA, its
    token-signing key and the label password, where the installed package looks."""
    directory = box.path("/etc/camagent")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_file, directory / "ca.pem")
    shutil.copyfile(keys_file, directory / "cloud-keys.pem")
    (directory / "password").write_text(password + "\n")
    box.run(["chown", "root:camagent", "/etc/camagent/password"])
    box.run(["chmod", "0640", "/etc/camagent/password"])
