"""A small LAN of Linux network namespaces for real mDNS and HTTPS between processes.

One "hub" namespace holds a bridge (multicast snooping off, so every mDNS packet reaches
every port) with address .254, and each node namespace has an `eth0` veth on it, loopback
up, and a route for 224.0.0.0/4. Processes run in a namespace through `ip netns exec`
(argument vectors); the test's own sockets to a namespace (e.g. the mock cloud's API)
go through `Namespace.call`, a thread that entered the namespace with setns(2), and
whatever that thread starts (a subprocess) lives in that namespace too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "camlan"
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
T = TypeVar("T")


class NetnsError(RuntimeError):
    pass


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _enter(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass
class Namespace:
    name: str
    address: str
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)

    def argv(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        return subprocess.run(self.argv(command), check=False, **kwargs)

    def popen(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(command), **kwargs)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in a thread that lives in this namespace; sockets it opens (and
        processes it starts) belong to the namespace."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, initializer=_enter, initargs=(self.name,))
        return self._executor.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class Lan:
    """`hub` (bridge, .254) plus nodes .1, .2, …; `close()` deletes every namespace."""

    def __init__(self, tag: str, subnet: str = "10.77.0") -> None:
        self.tag = f"{PREFIX}-{os.getpid()}-{tag}"
        self.subnet = subnet
        self.nodes: dict[str, Namespace] = {}
        self.hub = Namespace(f"{self.tag}-hub", f"{subnet}.254")
        try:
            ip("netns", "add", self.hub.name)
            h = ("-n", self.hub.name)
            ip(*h, "link", "set", "lo", "up")
            ip(*h, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
            ip(*h, "addr", "add", f"{self.hub.address}/24", "dev", "br0")
            ip(*h, "link", "set", "br0", "up")
            ip(*h, "route", "add", "224.0.0.0/4", "dev", "br0")
        except BaseException:
            self.close()
            raise

    def node(self, role: str) -> Namespace:
        """The node namespace for `role`, made on first use."""
        return self.nodes.get(role) or self.add(role)

    def add(self, role: str) -> Namespace:
        n = len(self.nodes) + 1
        node = Namespace(f"{self.tag}-{role}", f"{self.subnet}.{n}")
        self.nodes[role] = node
        ip("netns", "add", node.name)
        h, d = ("-n", self.hub.name), ("-n", node.name)
        port = f"p{n}"
        ip(*h, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node.name)
        ip(*h, "link", "set", port, "master", "br0")
        ip(*h, "link", "set", port, "up")
        ip(*d, "link", "set", "lo", "up")
        ip(*d, "addr", "add", f"{node.address}/24", "dev", "eth0")
        ip(*d, "link", "set", "eth0", "multicast", "on")
        ip(*d, "link", "set", "eth0", "up")
        ip(*d, "route", "add", "224.0.0.0/4", "dev", "eth0")
        return node

    def close(self) -> None:
        for ns in [*self.nodes.values(), self.hub]:
            ns.close()
            with contextlib.suppress(NetnsError):
                ip("netns", "delete", ns.name)


def remove_stale() -> None:
    """Namespaces left by a test run that was killed (its pid is gone)."""
    pattern = re.compile(rf"^{PREFIX}-(\d+)-")
    for entry in NETNS_DIR.glob(f"{PREFIX}-*") if NETNS_DIR.exists() else []:
        match = pattern.match(entry.name)
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        with contextlib.suppress(NetnsError):
            ip("netns", "delete", entry.name)
