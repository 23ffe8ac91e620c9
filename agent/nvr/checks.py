"""The NVR's device-side checks (docs/design.md §3): what an archive server needs, with fixes.

They are shown by `camagent nvr checks`, and sent to the cloud with each activation code
so that the wizard's Activation step shows them before the admin connects the NVR.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from agent.checks import NET_TIMEOUT_S, Check, network_checks
from agent.config import Config

GIB = 1024**3
MIB = 1024**2
DISK_WARN, DISK_FAIL = 10 * GIB, 1 * GIB
MEMORY_WARN, MEMORY_FAIL = 512 * MIB, 128 * MIB


def run_checks(config: Config) -> list[Check]:
    return [
        *network_checks(config),
        outbound_port(config),
        disk(Path(config.nvr.archive_path)),
        memory(),
        cpu(),
    ]


def outbound_port(config: Config) -> Check:
    url = urlsplit(config.cloud.url)
    host, port = url.hostname or "", url.port or 443
    try:
        with socket.create_connection((host, port), timeout=NET_TIMEOUT_S):
            pass
    except OSError as exc:
        return Check(
            "outbound port",
            "fail",
            f"TCP {host}:{port} unreachable: {exc}",
            f"allow outbound TCP {port} to {host} in the firewall",
        )
    return Check("outbound port", "ok", f"TCP {port} to {host} is open")


def judge_disk(path: Path, free: int) -> Check:
    detail = f"{free / GIB:.1f} GiB free for the archive at {path}"
    fix = f"free space on the disk holding {path}, or set nvr.archive_path to a larger disk"
    if free < DISK_FAIL:
        return Check("archive disk", "fail", detail, fix)
    if free < DISK_WARN:
        return Check("archive disk", "warn", detail, fix)
    return Check("archive disk", "ok", detail)


def disk(path: Path) -> Check:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the archive directory may not be made yet
    try:
        free = shutil.disk_usage(existing).free
    except OSError as exc:
        return Check(
            "archive disk", "fail", f"cannot inspect {path}: {exc}", "check nvr.archive_path"
        )
    return judge_disk(path, free)


def judge_memory(available: int) -> Check:
    detail = f"{available / MIB:.0f} MiB memory available"
    fix = "stop other services or add memory"
    if available < MEMORY_FAIL:
        return Check("memory", "fail", detail, fix)
    if available < MEMORY_WARN:
        return Check("memory", "warn", detail, fix)
    return Check("memory", "ok", detail)


def memory(meminfo: Path = Path("/proc/meminfo")) -> Check:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return judge_memory(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return Check("memory", "warn", "cannot read the available memory from /proc/meminfo")


def judge_cpu(cpus: int, load: float) -> Check:
    detail = f"{cpus} CPU(s), load {load:.2f} over the last minute"
    if load > 2 * cpus:
        return Check("cpu", "warn", detail, "the machine is overloaded: recording may drop frames")
    return Check("cpu", "ok", detail)


def cpu() -> Check:
    return judge_cpu(os.cpu_count() or 1, os.getloadavg()[0])
