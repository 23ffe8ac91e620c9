"""What every benchmark shares: the result rows, /proc readers, statistics, the run context.

Processes are started through `cloud_mock.sandbox` (the mock cloud and daemons as real
subprocesses); this module only adds what a measurement needs on top of it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import resource
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cloud_mock import sandbox

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Env variables that would make a child believe it runs under systemd.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS")
# A developer's shell may point OpenSSL at the CA bundle; the service's environment does
# not, and with the bundle named the daemon parses all ~140 CAs up front (docs/scale.md).
SHELL_ONLY_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@dataclass
class Row:
    """One line of the result table (and one entry of latest.json)."""

    name: str
    value: float | None  # the figure the target is checked against
    unit: str
    display: str  # the result column
    target: str  # "" = no target, reported only
    passed: bool | None  # None = no target
    how: str
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def mark(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.passed is None:
            return "-"
        return "PASS" if self.passed else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "display": self.display,
            "target": self.target or None,
            "passed": self.passed,
            "mark": self.mark,
            "how": self.how,
            "details": self.details,
            "error": self.error,
        }


def error_row(name: str, target: str, how: str, error: str) -> Row:
    """A benchmark that could not run: one line in the table, the whole error in JSON."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    summary = lines[0] if lines else "error"
    if len(lines) > 1:
        summary += " … " + lines[-1]
    if len(summary) > 110:
        summary = summary[:107] + "..."
    return Row(name, None, "", f"error: {summary}", target, False, how, error=error)


@dataclass
class Extra:
    """A secondary table printed after the main one (e.g. the import cost)."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    data: list[dict[str, Any]]


class Context:
    """Options, a temporary root, and everything started, stopped by `close()`."""

    def __init__(self, quick: bool, log: Callable[[str], None]) -> None:
        self.quick = quick
        self.log = log
        self.root = Path(tempfile.mkdtemp(prefix="camagent-bench-"))
        self.stack = contextlib.ExitStack()
        self.extras: list[Extra] = []
        self._shared_cloud: sandbox.Cloud | None = None
        self._idle_agent: sandbox.Agent | None = None
        self._ids = 0

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_dir(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=self.root))

    def next_device(self) -> tuple[str, str]:
        """A fresh (device_id, password) pair: locally administered MACs."""
        self._ids += 1
        n = self._ids
        return f"02:be:00:00:{n // 256:02x}:{n % 256:02x}", f"bench-password-{n}"

    # -- processes --------------------------------------------------------------------

    def start_cloud(self, name: str) -> sandbox.Cloud:
        """A fresh mock in its own directory, stopped at the latest by `close()`."""
        cloud = sandbox.start_cloud(self.new_dir(name))
        self.stack.callback(cloud.stop)
        return cloud

    def shared_cloud(self) -> sandbox.Cloud:
        """One mock for the daemon benchmarks (it stays idle while they measure)."""
        if self._shared_cloud is None:
            self._shared_cloud = self.start_cloud("cloud")
        return self._shared_cloud

    def start_agent(
        self, config: Path, python: str = sys.executable, env: dict[str, str] | None = None
    ) -> sandbox.Agent:
        agent = sandbox.start_agent(
            config, env={**clean_env(), **(env or {})}, python=python, unset=SHELL_ONLY_ENV
        )
        self.stack.callback(agent.stop)
        return agent

    def idle_agent(self) -> sandbox.Agent:
        """A daemon whose camera was added: started, connected, then left alone ≥ 3 s."""
        if self._idle_agent is None:
            cloud = self.shared_cloud()
            device_id, password = self.next_device()
            config = sandbox.write_agent_config(
                self.new_dir("idle-agent"), cloud, device_id=device_id, password=password
            )
            cloud.add_camera(cloud.login(), device_id, password, "idle")
            agent = self.start_agent(config)
            agent.wait_for_state("connected", timeout=60)
            time.sleep(3.0)
            self._idle_agent = agent
        return self._idle_agent


class BenchmarkError(Exception):
    pass


def clean_env() -> dict[str, str]:
    """os.environ without systemd's variables (set-to-empty overrides the inherited ones)."""
    return {name: "" for name in SYSTEMD_ENV if name in os.environ}


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
    env.update(extra)
    return env


# -- /proc ------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, RssAnon, …) in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return fields


def rss_kib(pid: int) -> int:
    return proc_status(pid)["VmRSS"]


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE (inherited by every process started afterwards); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft, hard
    new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, wanted)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, new_hard))
        return wanted, new_hard
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- a keep-alive JSON client -----------------------------------------------------------


class KeepAliveClient:
    """JSON over one persistent HTTPS connection.

    `sandbox.Cloud.request` opens a connection (and a TLS handshake) per request; a loop
    that polls every 2 ms would then time handshakes and load the machine, so the timed
    loops use this instead.
    """

    def __init__(self, cloud: sandbox.Cloud, session: str) -> None:
        parts = urlsplit(cloud.url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 443
        self._context: ssl.SSLContext = cloud.ssl_context()
        self._session = session
        self._conn: http.client.HTTPSConnection | None = None

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self._host, self._port, context=self._context, timeout=30
            )
        return self._conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self._session}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        return resp.status, json.loads(raw) if raw else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def python_label() -> str:
    return f"{sys.executable} ({sys.version.split()[0]})"
