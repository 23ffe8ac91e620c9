"""Benchmarks of the daemon: start-up to READY=1, idle memory and CPU, import cost."""

from __future__ import annotations

import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CLK_TCK,
    ROOT,
    BenchmarkError,
    Context,
    Extra,
    Row,
    child_env,
    cpu_ticks,
    median,
    proc_status,
    python_label,
)
from cloud_mock import sandbox

READY_TARGET_MS = 200.0
RSS_TARGET_MIB = 44.0  # local API and mDNS off
RSS_DEFAULT_TARGET_MIB = 48.0  # the shipped default config: local API and mDNS on
CPU_TARGET_PCT = 0.1

# Imported by the daemon (directly or through its dependencies), measured one by one.
IMPORTS: list[tuple[str, str]] = [
    ("asyncio", "asyncio (stdlib)"),
    ("ssl", "ssl (stdlib)"),
    ("multidict", "multidict"),
    ("yarl", "yarl"),
    ("aiohttp", "aiohttp"),
    ("cryptography.hazmat.primitives.ciphers.aead", "cryptography AESGCM"),
    ("cryptography.hazmat.primitives.asymmetric.ed25519", "cryptography Ed25519"),
    ("systemd.daemon", "systemd.daemon"),
    ("agent.daemon", "agent.daemon (all of it)"),
]
# Must never be loaded by the daemon: they belong to the LAN tool / QR scanner side.
HEAVY = ("cv2", "zxingcpp", "pyzbar", "qrcode", "numpy", "PIL", "zeroconf", "agent.video")
IMPORT_RUNS = 3

_VMRSS = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"


def _daemon_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "agent", "--config", str(config), "run"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- ready_time -------------------------------------------------------------------------


def _time_to_ready(ctx: Context, cloud: sandbox.Cloud, index: int) -> float:
    """Seconds from just before exec to a READY=1 datagram on our NOTIFY_SOCKET."""
    directory = ctx.new_dir(f"ready-{index}")
    device_id, password = ctx.next_device()
    config = sandbox.write_agent_config(directory, cloud, device_id=device_id, password=password)
    notify_path = directory / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        env = child_env(NOTIFY_SOCKET=str(notify_path))
        with (directory / "agent.log").open("wb") as log:
            start = time.perf_counter()
            process = subprocess.Popen(
                _daemon_argv(config), stdout=log, stderr=log, env=env, cwd=ROOT
            )
        try:
            deadline = start + sandbox.READY_TIMEOUT_S
            while True:
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    message = sock.recv(4096).decode(errors="replace")
                    if "READY=1" in message.split("\n"):
                        return time.perf_counter() - start
                    continue
                if process.poll() is not None:
                    raise BenchmarkError(
                        f"the daemon exited with code {process.returncode} before READY=1: "
                        + (directory / "agent.log").read_text(errors="replace")[-300:]
                    )
                if time.perf_counter() > deadline:
                    raise BenchmarkError(f"no READY=1 within {sandbox.READY_TIMEOUT_S:.0f} s")
        finally:
            _stop(process)


def ready_time(ctx: Context) -> list[Row]:
    runs = 3 if ctx.quick else 10
    cloud = ctx.shared_cloud()
    _time_to_ready(ctx, cloud, 0)  # warm-up: page cache and .pyc files, not counted
    times_ms = [_time_to_ready(ctx, cloud, i) * 1000 for i in range(1, runs + 1)]
    p50, worst = median(times_ms), max(times_ms)
    return [
        Row(
            "ready_time",
            round(p50, 1),
            "ms",
            f"p50 {p50:.0f} ms, max {worst:.0f} ms",
            f"p50 <= {READY_TARGET_MS:.0f} ms",
            p50 <= READY_TARGET_MS,
            f"Popen -> READY=1 on an AF_UNIX NOTIFY_SOCKET, unprovisioned, {runs} runs "
            f"(+1 warm-up); {python_label()}",
            {
                "runs_ms": [round(t, 1) for t in times_ms],
                "p50_ms": round(p50, 1),
                "max_ms": round(worst, 1),
                "python": sys.executable,
            },
        )
    ]


# -- idle_rss (+ import cost, heavy modules) --------------------------------------------


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=child_env(),
        check=False,
    )
    if result.returncode != 0:
        raise BenchmarkError(f"`python -c {code!r}` failed: {result.stderr.strip()[-300:]}")
    return result


def _rss_after(statement: str) -> int:
    return int(_python(f"{statement}\n{_VMRSS}").stdout.split()[-1])


_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def _top_level_imports(stderr: str) -> dict[str, int]:
    """Top-level entries of `-X importtime` output: name -> cumulative µs."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match and len(match.group(3)) == 1:
            found[match.group(4)] = found.get(match.group(4), 0) + int(match.group(2))
    return found


def _import_time_us(module: str, startup: set[str]) -> int:
    """µs to import `module` and everything it pulls in (what -X importtime shows beyond
    the interpreter's own start-up imports)."""
    found = _top_level_imports(_python(f"import {module}", "-X", "importtime").stderr)
    return sum(us for name, us in found.items() if name not in startup)


def _importable(module: str) -> bool:
    code = f"import importlib.util as u; print(u.find_spec({module.split('.')[0]!r}) is not None)"
    return _python(code).stdout.strip() == "True"


def import_cost(ctx: Context) -> Extra:
    baseline = median([_rss_after("pass") for _ in range(IMPORT_RUNS)])
    startup = set(_top_level_imports(_python("pass", "-X", "importtime").stderr))
    rows: list[list[str]] = []
    data: list[dict[str, Any]] = []
    for module, label in IMPORTS:
        if not _importable(module):
            rows.append([label, "not installed", "-"])
            data.append({"module": module, "installed": False})
            continue
        added = median([_rss_after(f"import {module}") for _ in range(IMPORT_RUNS)]) - baseline
        us = median([_import_time_us(module, startup) for _ in range(IMPORT_RUNS)])
        rows.append([label, f"{added / 1024:.1f} MiB", f"{us / 1000:.1f} ms"])
        data.append({"module": module, "installed": True, "rss_added_kib": added, "import_us": us})
    rows.append(["(bare `python -c pass`)", f"{baseline / 1024:.1f} MiB RSS", "-"])
    ctx.log(f"import cost measured over a baseline of {baseline / 1024:.1f} MiB")
    return Extra(
        "import cost (each in a fresh interpreter; RSS over `python -c pass`, "
        f"median of {IMPORT_RUNS}; time = cumulative -X importtime)",
        ("module", "RSS added", "import time"),
        rows,
        [{"baseline_rss_kib": baseline}, *data],
    )


def _heavy_in_sys_modules() -> list[str]:
    code = (
        "import sys, agent.daemon, agent.cli\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    return [m for m in _python(code).stdout.strip().split(",") if m]


def _heavy_in_maps(pid: int) -> list[str]:
    """Heavy packages whose files the running daemon has mapped (C extensions show up)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted(m for m in HEAVY if re.search(rf"/{m}[/.]", maps, re.IGNORECASE))


RSS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "VmData")
_ALL_OFF = "[local_api]\nenabled = false\nmdns = false"
_SHIPPED = "[local_api]\nenabled = true\nport = 0\nmdns = true"  # port 0: any free one


# The .deb runs the agent on Debian's own Python and libraries (python3-aiohttp 3.8 on
# Debian 12), lighter than the venv's newest aiohttp: measured apart, when installed.
DEBIAN_PYTHON = "/usr/bin/python3"


def _debian_libraries() -> str | None:
    """Versions of Debian's aiohttp, zeroconf and cryptography, or None if not installed."""
    probe = subprocess.run(
        [
            DEBIAN_PYTHON,
            "-c",
            "import aiohttp, zeroconf, cryptography; "
            "print(aiohttp.__version__, zeroconf.__version__, cryptography.__version__)",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def _connected_rss(ctx: Context, name: str, shipped: bool, python: str) -> tuple[float, Any]:
    """VmRSS (MiB) of a daemon connected and left alone 3 s; its status and /proc fields."""
    cloud = ctx.shared_cloud()
    device_id, password = ctx.next_device()
    config = sandbox.write_agent_config(
        ctx.new_dir(name), cloud, device_id=device_id, password=password
    )
    text = config.read_text()
    if _ALL_OFF not in text:
        raise BenchmarkError("the sandbox config no longer turns the local API off as expected")
    if shipped:
        config.write_text(text.replace(_ALL_OFF, _SHIPPED))
    cloud.add_camera(cloud.login(), device_id, password, name)
    # Debian's interpreter must find this checkout's agent, and nothing of the venv.
    env = {"PYTHONPATH": str(ROOT)} if python != sys.executable else None
    agent = ctx.start_agent(config, python=python, env=env)
    agent.wait_for_state("connected", timeout=60)
    time.sleep(3.0)
    local = agent.status().get("local_api") or {}
    status = proc_status(agent.process.pid)
    return status["VmRSS"] / 1024, {"local_api": local, **{k: status.get(k) for k in RSS_FIELDS}}


def _default_config_rss(ctx: Context) -> Row:
    """The shipped default config: the local API (HTTPS, aiohttp.web) and mDNS on."""
    rss_mib, details = _connected_rss(ctx, "default-agent", True, sys.executable)
    local = details["local_api"]
    mdns = local.get("mdns") or f"not announced ({local.get('error', 'no error given')})"
    return Row(
        "idle_rss.default_config",
        round(rss_mib, 2),
        "MiB",
        f"{rss_mib:.1f} MiB (peak {details['VmHWM'] / 1024:.1f} MiB)",
        f"<= {RSS_DEFAULT_TARGET_MIB:.0f} MiB",
        rss_mib <= RSS_DEFAULT_TARGET_MIB,
        f"VmRSS of a connected daemon in the venv (aiohttp {_venv_aiohttp()}), local API on "
        f"port {local.get('port')}, mDNS {mdns}, settled 3 s",
        details,
    )


def _venv_aiohttp() -> str:
    import aiohttp

    return aiohttp.__version__


def _debian_rss(ctx: Context) -> list[Row]:
    """The same two figures as the .deb runs: Debian's python3 and its libraries."""
    versions = _debian_libraries()
    if versions is None:
        return [
            Row(
                "idle_rss.debian",
                None,
                "MiB",
                "not measured: install python3-aiohttp python3-zeroconf python3-cryptography",
                "",
                None,
                "the daemon on Debian's own Python, as the .deb runs it",
                {},
            )
        ]
    aiohttp_v, zeroconf_v, cryptography_v = versions.split()
    libraries = f"aiohttp {aiohttp_v}, zeroconf {zeroconf_v}, cryptography {cryptography_v}"
    rows = []
    for name, shipped, target in (
        ("idle_rss.debian", False, RSS_TARGET_MIB),
        ("idle_rss.debian.default_config", True, RSS_DEFAULT_TARGET_MIB),
    ):
        rss_mib, details = _connected_rss(ctx, name, shipped, DEBIAN_PYTHON)
        what = "local API and mDNS on (the shipped default)" if shipped else "both off"
        rows.append(
            Row(
                name,
                round(rss_mib, 2),
                "MiB",
                f"{rss_mib:.1f} MiB (peak {details['VmHWM'] / 1024:.1f} MiB)",
                f"<= {target:.0f} MiB",
                rss_mib <= target,
                f"VmRSS of a connected daemon on {DEBIAN_PYTHON} with Debian's {libraries} "
                f"(what the .deb runs), {what}, settled 3 s",
                details,
            )
        )
    return rows


# What the daemon's libraries cost before any agent code runs: the floor under its idle
# figure, in the same interpreter (the daemon's share is the rest).
LIBRARIES = (
    "import asyncio, ssl, aiohttp\n"
    "from cryptography.hazmat.primitives.asymmetric import ed25519\n"
    "from cryptography.hazmat.primitives.ciphers import aead\n"
    "context = ssl.create_default_context()\n"
)
LIBRARIES_DEFAULT_CONFIG = LIBRARIES + "from aiohttp import web\nimport zeroconf.asyncio\n"


def _libraries_rows(daemon_mib: dict[str, float]) -> list[Row]:
    rows = []
    for name, code, what in (
        (
            "idle_rss.libraries",
            LIBRARIES,
            "asyncio, ssl, aiohttp, cryptography's Ed25519 and AES-GCM",
        ),
        (
            "idle_rss.libraries.default_config",
            LIBRARIES_DEFAULT_CONFIG,
            "the same plus aiohttp.web and zeroconf.asyncio",
        ),
    ):
        floor = median([_rss_after(code) for _ in range(IMPORT_RUNS)]) / 1024
        daemon = daemon_mib[name.replace(".libraries", "")]
        rows.append(
            Row(
                name,
                round(floor, 2),
                "MiB",
                f"{floor:.1f} MiB (daemon's own share {daemon - floor:.1f} MiB)",
                "",
                None,
                f"VmRSS of a bare `python -c` in the venv importing {what} and making one "
                "verifying TLS context: the floor under the daemon's idle figure",
                {"daemon_mib": round(daemon, 2), "share_mib": round(daemon - floor, 2)},
            )
        )
    return rows


def idle_rss(ctx: Context) -> list[Row]:
    agent = ctx.idle_agent()
    pid = agent.process.pid
    status = proc_status(pid)
    rss_mib = status["VmRSS"] / 1024
    rows = [
        Row(
            "idle_rss",
            round(rss_mib, 2),
            "MiB",
            f"{rss_mib:.1f} MiB (peak {status['VmHWM'] / 1024:.1f} MiB)",
            f"<= {RSS_TARGET_MIB:.0f} MiB",
            rss_mib <= RSS_TARGET_MIB,
            f"VmRSS of a connected daemon in the venv (aiohttp {_venv_aiohttp()}), local API "
            "and mDNS off, settled 3 s",
            {key: status.get(key) for key in RSS_FIELDS},
        ),
        _default_config_rss(ctx),
    ]
    rows += _libraries_rows({row.name: row.value or 0.0 for row in rows})
    rows += _debian_rss(ctx)
    imported = _heavy_in_sys_modules()
    mapped = _heavy_in_maps(pid)
    loaded = sorted(set(imported) | set(mapped))
    rows.append(
        Row(
            "idle_rss.heavy_modules",
            float(len(loaded)),
            "modules",
            "none loaded" if not loaded else "loaded: " + ", ".join(loaded),
            "none of " + ",".join(HEAVY),
            not loaded,
            "sys.modules after import agent.daemon, agent.cli; + the daemon's /proc/PID/maps",
            {"checked": list(HEAVY), "in_sys_modules": imported, "in_daemon_maps": mapped},
        )
    )
    ctx.extras.append(import_cost(ctx))
    return rows


# -- idle_cpu ---------------------------------------------------------------------------


def idle_cpu(ctx: Context) -> list[Row]:
    seconds = 10.0 if ctx.quick else 60.0
    agent = ctx.idle_agent()
    pid = agent.process.pid
    before, start = cpu_ticks(pid), time.monotonic()
    time.sleep(seconds)
    after, elapsed = cpu_ticks(pid), time.monotonic() - start
    if agent.status()["state"] != "connected":
        raise BenchmarkError("the daemon was no longer connected at the end of the measurement")
    ticks = after - before
    pct = ticks / CLK_TCK / elapsed * 100
    resolution = 100 / CLK_TCK / elapsed
    return [
        Row(
            "idle_cpu",
            round(pct, 4),
            "%",
            f"{pct:.3f} % of a core ({ticks} ticks in {elapsed:.0f} s)",
            f"<= {CPU_TARGET_PCT} %",
            pct <= CPU_TARGET_PCT,
            f"utime+stime from /proc/PID/stat over {elapsed:.0f} s, connected daemon "
            f"(1 tick = {resolution:.3f} %)",
            {"ticks": ticks, "clk_tck": CLK_TCK, "seconds": round(elapsed, 2)},
        )
    ]
