"""Debian's avahi-daemon in a namespace, with a private D-Bus system bus for it and for
avahi-browse (the real interop check: a stock mDNS stack sees the device's service)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.eventually import eventually
from tests.lan.netns import Namespace

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""

AVAHI_CONFIG = """[server]
host-name={host}
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-addresses=no
publish-hinfo=no
publish-workstation=no
publish-domain=no

[reflector]
enable-reflector=no

[rlimits]
"""


class AvahiError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [t for t in ("avahi-daemon", "avahi-browse", "dbus-daemon") if not shutil.which(t)]


@dataclass
class Avahi:
    ns: Namespace
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    bus: str = ""

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        socket = self.directory / "system_bus_socket"
        bus_conf = self.directory / "bus.conf"
        bus_conf.write_text(BUS_CONFIG.format(socket=socket))
        self.bus = f"unix:path={socket}"
        # The child keeps its own descriptor of each log: the parent's closes at once.
        with (self.directory / "dbus.log").open("wb") as dbus_log:
            dbus = self.ns.popen(
                ["dbus-daemon", f"--config-file={bus_conf}", "--nofork", "--nopidfile"],
                stdout=subprocess.DEVNULL,
                stderr=dbus_log,
            )
        self.processes.append(dbus)
        self._wait(lambda: socket.exists(), "dbus-daemon socket", dbus)
        conf = self.directory / "avahi-daemon.conf"
        conf.write_text(AVAHI_CONFIG.format(host=f"avahi-{os.getpid()}"))
        with (self.directory / "avahi.log").open("wb") as log:
            daemon = self.ns.popen(
                ["avahi-daemon", "--no-drop-root", "--no-chroot", "--no-rlimits", "-f", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        self.processes.append(daemon)
        self._wait(self._running, "avahi-daemon", daemon)

    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus}

    def _running(self) -> bool:
        return "Server startup complete" in self.log()

    def log(self) -> str:
        path = self.directory / "avahi.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait(self, ready: object, what: str, process: subprocess.Popen[bytes]) -> None:
        def up() -> bool:
            if callable(ready) and ready():
                return True
            if process.poll() is not None:  # fail now, not after the timeout
                raise AvahiError(f"{what} exited with {process.returncode}:\n{self.log()}")
            return False

        try:
            eventually(up, timeout=20, what=f"{what} ready")
        except AssertionError as exc:
            raise AvahiError(f"{exc}:\n{self.log()}") from None

    def browse(self, service_type: str = "_camagent._tcp") -> list[list[str]]:
        """`avahi-browse -rpt`: the resolved lines ("=") split on ";"."""
        result = self.ns.run(["avahi-browse", "-rpt", service_type], env=self.env(), timeout=60)
        if result.returncode != 0:
            raise AvahiError(f"avahi-browse failed: {result.stderr}")
        return [line.split(";") for line in result.stdout.splitlines() if line.startswith("=")]

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
