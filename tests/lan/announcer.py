"""A python-zeroconf announcement from inside a namespace, as a subprocess: stands in for
a device where only the announcement matters (harness checks, an impostor's claim).

Run as `python -m tests.lan.announcer NAME ADDRESS PORT KEY=VALUE...`; prints `ready`
once registered, unregisters (a goodbye) when stdin closes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.lan.netns import Namespace

SERVICE_TYPE = "_camagent._tcp.local."
ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> None:
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    name, address, port, *pairs = argv
    properties = dict(pair.split("=", 1) for pair in pairs)
    info = ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(address)],
        port=int(port),
        properties=properties,
        server=f"{name}.local.",
    )
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    zc.register_service(info)
    print("ready", flush=True)
    sys.stdin.read()
    zc.unregister_service(info)
    zc.close()


class Announcement:
    """`with Announcement(ns, ...)`: announced inside the block, goodbye at its end."""

    def __init__(
        self, ns: Namespace, name: str, address: str, port: int, txt: Mapping[str, str]
    ) -> None:
        argv = [sys.executable, "-m", "tests.lan.announcer", name, address, str(port)]
        argv += [f"{k}={v}" for k, v in txt.items()]
        self.process = ns.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)

    def __enter__(self) -> Announcement:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != b"ready":
            self.__exit__()
            raise RuntimeError(f"announcer did not start (exit {self.process.poll()})")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1:])
