"""Benchmarks of live video (docs/design.md §12): the device's relay, the mock's live
path, and the console's player in chromium.

Every figure comes from real processes on 127.0.0.1: the RTSP test camera
(`cloud_mock/test_camera.py`, GStreamer under Debian's python3, the wall clock drawn into
every frame), the mock cloud (whose live path runs one Debian `ffmpeg -c copy` per
watched stream) and camagent daemons with `[video]` pointing at the camera. The viewers
are WebSocket clients of `GET /v1/cameras/{id}/live` in this process (a thread with its
own event loop) that count what arrives, and Debian's chromium through Playwright on the
console's camera page. All of them share the machine's cores: CPU figures are per
process (utime+stime from /proc), and the rows say what else ran.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import daemon_bench
from benchmarks.common import (
    CLK_TCK,
    SHELL_ONLY_ENV,
    BenchmarkError,
    Context,
    Extra,
    Row,
    clean_env,
    cpu_ticks,
    error_row,
    median,
    percentile,
    proc_status,
)
from cloud_mock import sandbox, test_camera

RELAY_RATES_KBIT = (1000, 4000, 16000)
RSS_RATE_KBIT = 4000
STREAM_RSS_TARGET_MIB = 2.0
KEEP_UP_SHARE = 0.9  # a viewer keeps up with >= 90 % of the frames it is held against
CAPACITY_STEPS = (1, 2, 4, 8, 16)
CAPACITY_STEPS_QUICK = (1, 4)
FANOUT_VIEWERS = 10
PLAYING_TIMEOUT_S = 30.0
TUNNEL_CLOSED_TIMEOUT_S = 20.0
# The mock keeps a puller 5 s after its last viewer left (§12.5); the benchmarks that
# open and close streams step by step shorten that so that one step's pullers are gone
# before the next one starts (the live path itself is the same).
SHORT_LINGER_S = 1.0
# The mock's periodic work on a device (a thumbnail every 5 min through a tunnel, a
# `probe` every minute, §12.4 and §12.6) is pushed past the end of any benchmark, so it
# cannot land in a measuring window; the thumbnail after hello still happens and is
# waited out (`_settle`), the live path's own thumbnails (from its cache) still run.
QUIET_MOCK = {"CAMAGENT_MOCK_VIDEO_THUMBNAIL_S": "3600", "CAMAGENT_MOCK_VIDEO_PROBE_S": "3600"}
SETTLE_QUIET_S = 2.0
SETTLE_TIMEOUT_S = 30.0
NO_PICTURE = "got no picture"  # in _wait_playing's message: a stream that never started
MIB = 1024.0


# -- processes ----------------------------------------------------------------------------


def _require_video() -> None:
    why = test_camera.available()
    if why is not None:
        raise BenchmarkError(f"the RTSP test camera cannot run here: {why}")
    if shutil.which("ffmpeg") is None:
        raise BenchmarkError("no ffmpeg on PATH (the mock's live path needs Debian's ffmpeg)")


def _start_cloud(
    ctx: Context, stack: contextlib.ExitStack, name: str, linger_s: float | None
) -> sandbox.Cloud:
    env = dict(QUIET_MOCK)
    if linger_s is not None:
        env["CAMAGENT_MOCK_VIDEO_LINGER_S"] = f"{linger_s:g}"
    cloud = sandbox.start_cloud(ctx.new_dir(name), env=env)
    stack.callback(cloud.stop)
    return cloud


def _start_camera(stack: contextlib.ExitStack, **options: Any) -> test_camera.TestCamera:
    camera = test_camera.start_test_camera(**options)
    stack.callback(camera.stop)
    return camera


@dataclass
class Device:
    """A camagent daemon offering the test camera's stream(s), added and connected."""

    agent: sandbox.Agent
    camera_id: str
    device_id: str

    @property
    def pid(self) -> int:
        return self.agent.process.pid


def _start_device(
    ctx: Context,
    stack: contextlib.ExitStack,
    cloud: sandbox.Cloud,
    session: str,
    camera: test_camera.TestCamera,
    name: str,
    *,
    sub: bool = False,
    connect: bool = True,
) -> Device:
    device_id, password = ctx.next_device()
    extra = f'[video]\nmain = "{camera.main}"\n' + (f'sub = "{camera.sub}"\n' if sub else "")
    config = sandbox.write_agent_config(
        ctx.new_dir(name), cloud, device_id=device_id, password=password, extra=extra
    )
    camera_id = str(cloud.add_camera(session, device_id, password, name)["camera_id"])
    # As Context.start_agent does (no systemd variables, no shell-only CA bundle), but
    # stopped when this benchmark ends rather than at the end of the whole run.
    agent = sandbox.start_agent(config, env=clean_env(), unset=SHELL_ONLY_ENV)
    stack.callback(agent.stop)
    device = Device(agent, camera_id, device_id)
    if connect:
        agent.wait_for_state("connected", timeout=60)
    return device


def _live_url(cloud: sandbox.Cloud, camera_id: str, stream: str = "main") -> str:
    return f"{cloud.url}/v1/cameras/{camera_id}/live?stream={stream}"


_CLOSED = re.compile(r"tunnel \S+ to main \([^)]*\): closed \((.*); (\d+) bytes up, (\d+) down\)")


def _tunnels_closed(agent: sandbox.Agent) -> list[tuple[str, int]]:
    """(why, bytes up) of each tunnel to `main` the daemon's log shows closed."""
    return [(why, int(up)) for why, up, _down in _CLOSED.findall(agent.log_text())]


def _tunnel_closed(agent: sandbox.Agent, seen: int, timeout: float) -> tuple[str, int] | None:
    """The next tunnel to close after the `seen` ones: (why, bytes up), None if none."""
    deadline = time.monotonic() + timeout
    while True:
        closed = _tunnels_closed(agent)
        if len(closed) > seen:
            return closed[seen]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def _open_tunnels(agent: sandbox.Agent) -> int:
    """Tunnels the daemon's log shows open and not yet closed."""
    text = agent.log_text()
    return len(_OPENED.findall(text)) - len(_CLOSED_ANY.findall(text))


_OPENED = re.compile(r"agent\.video\.tunnel: tunnel \S+ to .*: open$", re.MULTILINE)
_CLOSED_ANY = re.compile(r"agent\.video\.tunnel: tunnel \S+ to .*: closed \(")


def _settle(cloud: sandbox.Cloud, devices: Sequence[Device]) -> float:
    """Wait until the mock's work after each device's hello (its probe, the first
    thumbnail through a tunnel) is over: no ffmpeg child of the mock and no tunnel open
    on any device, for SETTLE_QUIET_S in a row. Returns the seconds waited."""
    start = time.monotonic()
    quiet_since: float | None = None
    while True:
        now = time.monotonic()
        busy = bool(_descendants(cloud.process.pid)) or any(
            _open_tunnels(d.agent) > 0 for d in devices
        )
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= SETTLE_QUIET_S:
            return now - start
        if now - start > SETTLE_TIMEOUT_S:
            raise BenchmarkError(
                f"the mock or a device was still busy after {SETTLE_TIMEOUT_S:g} s "
                "(an ffmpeg child or a tunnel open)"
            )
        time.sleep(0.1)


# -- /proc: a process tree, the machine -----------------------------------------------------


def _stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/PID/stat (fields[0] is the state)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


@dataclass(frozen=True)
class TreeTicks:
    """CPU of a process and its children, in clock ticks: `own` the process's utime +
    stime; `children` its live descendants' utime + stime plus what the ones that ended
    had used (cutime + cstime: a child's ticks move there when it is reaped, so the sum
    stays right across a child that exits during a window)."""

    own: int
    children: int

    @property
    def total(self) -> int:
        return self.own + self.children


def tree_ticks(pid: int) -> TreeTicks:
    fields = _stat(pid)
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    for child in _descendants(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            child_fields = _stat(child)
            children += sum(int(child_fields[i]) for i in (11, 12, 13, 14))
    return TreeTicks(own, children)


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


class Window:
    """CPU of chosen processes (and of the whole machine) between `start` and `stop`."""

    def __init__(self, singles: dict[str, int], trees: dict[str, int]) -> None:
        self.singles = singles  # name -> pid, utime + stime
        self.trees = trees  # name -> pid, the process and its descendants
        self.started = 0.0
        self.seconds = 0.0
        self._before: dict[str, Any] = {}
        self.pct: dict[str, float] = {}  # % of one core

    def _read(self) -> dict[str, Any]:
        values: dict[str, Any] = {name: cpu_ticks(pid) for name, pid in self.singles.items()}
        values.update({name: tree_ticks(pid) for name, pid in self.trees.items()})
        values["machine"] = _machine_ticks()
        return values

    def start(self) -> None:
        self._before = self._read()
        self.started = time.monotonic()

    def stop(self) -> None:
        after = self._read()
        self.seconds = time.monotonic() - self.started
        scale = 100.0 / CLK_TCK / self.seconds
        for name in self.singles:
            self.pct[name] = (after[name] - self._before[name]) * scale
        for name in self.trees:
            before, now = self._before[name], after[name]
            self.pct[name] = (now.total - before.total) * scale
            self.pct[name + ".own"] = (now.own - before.own) * scale
            self.pct[name + ".children"] = (now.children - before.children) * scale
        busy = after["machine"][0] - self._before["machine"][0]
        total = after["machine"][1] - self._before["machine"][1]
        cores = os.cpu_count() or 1
        self.pct["machine"] = busy / total * 100 * cores if total else 0.0  # % of ONE core

    @property
    def resolution(self) -> float:
        """What one clock tick is worth, in % of a core."""
        return 100.0 / CLK_TCK / self.seconds if self.seconds else 0.0


# -- viewers --------------------------------------------------------------------------------


@dataclass
class Meter:
    """What one viewer of the live WebSocket received, with the time of each fragment."""

    url: str
    opened: float = 0.0
    statuses: list[dict[str, Any]] = field(default_factory=list)
    init: dict[str, Any] | None = None
    init_bytes: int = 0
    first_fragment: float | None = None
    # (monotonic time of arrival, bytes, frames in it) of each fragment
    fragments: list[tuple[float, int, int]] = field(default_factory=list)
    error: str | None = None
    ended: bool = False
    # Given the init segment and every fragment as they come (on the viewers' thread).
    sink: Callable[[Meter, bytes], None] | None = field(default=None, repr=False)

    @property
    def playing(self) -> bool:
        return self.first_fragment is not None

    def count(self, start: float, end: float) -> int:
        return sum(1 for t, _, _ in list(self.fragments) if start <= t < end)

    def bytes(self, start: float, end: float) -> int:
        return sum(n for t, n, _ in list(self.fragments) if start <= t < end)

    def frames(self, start: float, end: float) -> int:
        return sum(f for t, _, f in list(self.fragments) if start <= t < end)

    @property
    def total_bytes(self) -> int:
        return self.init_bytes + sum(n for _, n, _ in list(self.fragments))

    def problem(self) -> str:
        if self.error:
            return self.error
        last = self.statuses[-1] if self.statuses else {}
        return f"no fragment yet; last status {last or 'none'}"


class Viewers:
    """Live WebSocket viewers on an event loop in a thread of their own."""

    def __init__(self, session: str, ssl_context: ssl.SSLContext) -> None:
        self._session = session
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="viewers", daemon=True)
        self._thread.start()
        self._http: aiohttp.ClientSession | None = None
        self._tasks: dict[int, concurrent.futures.Future[None]] = {}

    def open(self, url: str, sink: Callable[[Meter, bytes], None] | None = None) -> Meter:
        meter = Meter(url, sink=sink)
        self._tasks[id(meter)] = asyncio.run_coroutine_threadsafe(self._watch(meter), self._loop)
        return meter

    def close_one(self, meter: Meter, timeout: float = 10.0) -> None:
        """Leave: cancel the viewer's task and wait until its WebSocket is closed."""
        future = self._tasks.pop(id(meter), None)
        if future is not None:
            future.cancel()  # cancels the task in the loop
            deadline = time.monotonic() + timeout
            while not meter.ended and time.monotonic() < deadline:
                time.sleep(0.02)

    def close(self) -> None:
        for future in self._tasks.values():
            future.cancel()
        deadline = time.monotonic() + 10.0
        while any(not f.done() for f in self._tasks.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._tasks.clear()
        if self._http is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._http.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _watch(self, meter: Meter) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        meter.opened = time.monotonic()
        expect_init = False
        try:
            async with self._http.ws_connect(
                meter.url,
                headers={"Authorization": f"Bearer {self._session}"},
                ssl=self._ssl,
                max_msg_size=0,  # a keyframe fragment of a 16 Mbit/s stream is large
            ) as ws:
                async for message in ws:
                    now = time.monotonic()
                    if message.type == aiohttp.WSMsgType.TEXT:
                        data = json.loads(message.data)
                        if data.get("type") == "init":
                            meter.init, expect_init = data, True
                        else:
                            meter.statuses.append(data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        if meter.sink is not None:
                            meter.sink(meter, message.data)
                        if expect_init:
                            meter.init_bytes, expect_init = len(message.data), False
                            continue
                        if meter.first_fragment is None:
                            meter.first_fragment = now
                        frames = _fragment_samples(message.data)
                        meter.fragments.append((now, len(message.data), frames))
                    else:
                        break
            meter.error = meter.error or "the cloud closed the live WebSocket"
        except asyncio.CancelledError:
            pass
        except (aiohttp.ClientError, OSError) as exc:
            meter.error = f"{type(exc).__name__}: {exc}"
        finally:
            meter.ended = True


class TimecodeDecoder:
    """Debian's ffmpeg decoding what one viewer receives, to read each frame's time code:
    the latency of a frame at arrival is when the fragment carrying it came (this
    machine's clock) minus its time code, before any player's buffer; ffmpeg's own delay
    does not count, frames are matched to fragments by the sample counts of their `trun`
    boxes. For comparison with what the page shows."""

    def __init__(self) -> None:
        self.latencies: list[tuple[float, float]] = []  # (arrival, latency), ms
        self.frames = 0
        self.unreadable = 0
        self.error: str | None = None
        self._arrivals: list[float] = []  # wall-clock ms of the fragment of each frame
        self._closed = False
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def feed(self, meter: Meter, data: bytes) -> None:
        if self._closed:
            return
        if self._process is None:
            if meter.init is None:
                return
            self._start(int(meter.init["width"]), int(meter.init["height"]))
        else:
            self._arrivals.extend([time.time() * 1000] * _fragment_samples(data))
        assert self._process is not None
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(data)
            self._process.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: closed meanwhile
            self.error = self.error or f"ffmpeg took no more input: {exc}"

    def _start(self, width: int, height: int) -> None:
        # ffmpeg's own probing and buffering delay nothing that is measured (arrival is
        # the fragment's); short probing options would make it drop the first frames,
        # and without passthrough it would repeat frames to fill gaps in the timestamps:
        # frame k out must be sample k in.
        argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-threads", "1"]
        argv += ["-f", "mp4", "-i", "pipe:0", "-fps_mode", "passthrough"]
        argv += ["-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
        self._process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._reader = threading.Thread(
            target=self._read, args=(width, height), name="timecode-decoder", daemon=True
        )
        self._reader.start()

    def _read(self, width: int, height: int) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        size = width * height
        stdout = self._process.stdout
        while True:
            frame = stdout.read(size)
            if len(frame) < size:
                return
            index = self.frames
            self.frames += 1
            code = test_camera.read_timecode(frame, width, height)
            if code is None:
                self.unreadable += 1
            elif index < len(self._arrivals):
                arrival = self._arrivals[index]
                self.latencies.append((arrival, arrival - code))
            else:
                self.error = "ffmpeg gave more frames than the fragments held"

    def between(self, start_ms: float, end_ms: float) -> list[float]:
        """Latencies (ms) of the frames whose fragment arrived in [start_ms, end_ms)."""
        return [latency for arrival, latency in self.latencies if start_ms <= arrival < end_ms]

    def close(self) -> None:
        """Stop feeding; ffmpeg decodes what it has and exits (idempotent)."""
        self._closed = True
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(5)
        if process.stdout is not None:
            process.stdout.close()


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO BMFF boxes in data[start:end]."""
    while start + 8 <= end:
        size = int.from_bytes(data[start : start + 4], "big")
        kind = data[start + 4 : start + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[start + 8 : start + 16], "big"), 16
        elif size == 0:
            size = end - start
        if size < header:
            return
        yield kind, start + header, min(end, start + size)
        start += size


def _fragment_samples(data: bytes) -> int:
    """How many samples (frames) a `moof`+`mdat` fragment holds: its `trun` counts."""
    count = 0
    for kind, body, end in _boxes(data, 0, len(data)):
        if kind != b"moof":
            continue
        for traf, traf_body, traf_end in _boxes(data, body, end):
            if traf != b"traf":
                continue
            for trun, trun_body, _ in _boxes(data, traf_body, traf_end):
                if trun == b"trun":
                    count += int.from_bytes(data[trun_body + 4 : trun_body + 8], "big")
    return count


@contextlib.contextmanager
def _viewers(cloud: sandbox.Cloud, session: str) -> Iterator[Viewers]:
    viewers = Viewers(session, cloud.ssl_context())
    try:
        yield viewers
    finally:
        viewers.close()


def _wait_playing(
    meters: Sequence[Meter], cloud: sandbox.Cloud, timeout: float = PLAYING_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout
    while not all(m.playing for m in meters):
        broken = [m for m in meters if m.ended and not m.playing]
        if broken or time.monotonic() > deadline:
            late = broken or [m for m in meters if not m.playing]
            raise BenchmarkError(
                f"{len(late)} of {len(meters)} viewer(s) {NO_PICTURE} within "
                f"{timeout:g} s: {late[0].problem()} ({len(_descendants(cloud.process.pid))} "
                "ffmpeg child(ren) of the mock running)\nthe mock's log:\n" + _mock_log_tail(cloud)
            )
        time.sleep(0.05)


def _mock_log_tail(cloud: sandbox.Cloud, lines: int = 12) -> str:
    """The mock's last lines about video, tunnels and trouble (for an error message)."""
    wanted = re.compile(r"video|tunnel|WARNING|ERROR|Traceback")
    text = cloud.log_file.read_text(errors="replace").splitlines()
    return "\n".join([line for line in text if wanted.search(line)][-lines:])


def _sample_rss(pid: int, seconds: float, every: float = 0.25) -> int:
    """The highest VmRSS (KiB) seen while sleeping `seconds`."""
    highest = 0
    deadline = time.monotonic() + seconds
    while True:
        highest = max(highest, proc_status(pid)["VmRSS"])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return highest
        time.sleep(min(every, remaining))


def _mbit(nbytes: int, seconds: float) -> float:
    return nbytes * 8 / seconds / 1e6


# -- live_relay_cpu -----------------------------------------------------------------------


@dataclass
class RelayRun:
    kbit: int
    pct: float  # the daemon, % of one core
    mbit_s: float  # what the viewer received in the same window
    seconds: float
    details: dict[str, Any]

    @property
    def pct_per_mbit(self) -> float:
        return self.pct / self.mbit_s if self.mbit_s > 0 else float("nan")


def _relay_run(ctx: Context, cloud: sandbox.Cloud, session: str, kbit: int) -> RelayRun:
    window_s = 4.0 if ctx.quick else 10.0
    with contextlib.ExitStack() as stack:
        camera = _start_camera(stack, pattern="noise", bitrate=kbit)
        device = _start_device(ctx, stack, cloud, session, camera, f"relay-{kbit}")
        _settle(cloud, [device])
        rss_before = proc_status(device.pid)
        closed_before = len(_tunnels_closed(device.agent))
        viewers = stack.enter_context(_viewers(cloud, session))
        meter = viewers.open(_live_url(cloud, device.camera_id))
        _wait_playing([meter], cloud)
        time.sleep(1.0 if ctx.quick else 2.0)  # past the first keyframe and the probing
        window = Window(
            {"daemon": device.pid, "camera": camera.process.pid}, {"mock": cloud.process.pid}
        )
        window.start()
        time.sleep(window_s)
        window.stop()
        rss_during = proc_status(device.pid)
        end = window.started + window.seconds
        received = meter.bytes(window.started, end)
        fragments = meter.count(window.started, end)
        frames = meter.frames(window.started, end)
        problem = meter.problem() if meter.ended else None
        viewers.close_one(meter)
        viewer_total = meter.total_bytes
        closed = _tunnel_closed(device.agent, closed_before, TUNNEL_CLOSED_TIMEOUT_S)
        if problem is not None or received == 0:
            why = closed[0] if closed else "no tunnel closed"
            raise BenchmarkError(
                f"at {kbit} kbit/s the viewer got {received} bytes in {window.seconds:.1f} s "
                f"({problem or 'still connected'}; the device's tunnel: {why})"
            )
        mbit_s = _mbit(received, window.seconds)
        details: dict[str, Any] = {
            "camera_kbit_s": kbit,
            "seconds": round(window.seconds, 2),
            "viewer_bytes": received,
            "viewer_fragments": fragments,
            "viewer_frames_per_s": round(frames / window.seconds, 2),
            "viewer_mbit_s": round(mbit_s, 3),
            "daemon_pct": round(window.pct["daemon"], 3),
            "tick_pct": round(window.resolution, 3),
            "camera_pct": round(window.pct["camera"], 1),
            "mock_pct": round(window.pct["mock"], 1),
            "mock_ffmpeg_pct": round(window.pct["mock.children"], 1),
            "machine_busy_pct_of_one_core": round(window.pct["machine"], 1),
            "daemon_vmrss_kib": [rss_before["VmRSS"], rss_during["VmRSS"]],
            "daemon_vmhwm_kib": rss_during["VmHWM"],
            "viewer_total_bytes": viewer_total,
        }
        if closed is not None:
            # The tunnel's whole life (RTSP handshake, probing, the window, the mock's
            # linger and ffmpeg's stop), RTP over RTSP: more than the viewer's total.
            details["tunnel_closed"] = closed[0]
            details["tunnel_bytes_up"] = closed[1]
        ctx.log(
            f"relay at {kbit} kbit/s: daemon {window.pct['daemon']:.2f} % of a core for "
            f"{mbit_s:.2f} Mbit/s; camera {window.pct['camera']:.0f} %, mock "
            f"{window.pct['mock']:.0f} %"
        )
        return RelayRun(kbit, window.pct["daemon"], mbit_s, window.seconds, details)


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line y = a + b x through `points`: (a, b)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0
    return mean_y - slope * mean_x, slope


def _relay_how(kbit: int, window: str) -> str:
    return (
        f"test camera noise {kbit} kbit/s 640x360 25 fps -> daemon [video] main -> mock -> "
        f"1 viewer (?stream=main); daemon utime+stime over {window} (/proc) / the fMP4 bytes "
        "the viewer got in the same window"
    )


def live_relay_cpu(ctx: Context) -> list[Row]:
    _require_video()
    window = "4 s" if ctx.quick else "10 s"
    runs: list[RelayRun] = []
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        cloud = _start_cloud(ctx, stack, "relay-cloud", SHORT_LINGER_S)
        session = cloud.login()
        for kbit in RELAY_RATES_KBIT:
            name = f"live_relay_cpu.{kbit // 1000}mbit"
            try:
                try:
                    run = _relay_run(ctx, cloud, session, kbit)
                except BenchmarkError as exc:
                    if NO_PICTURE not in str(exc):
                        raise
                    ctx.log(f"{name}: {exc}; once more with a fresh camera and daemon")
                    run = _relay_run(ctx, cloud, session, kbit)
            except (BenchmarkError, sandbox.SandboxError, test_camera.TestCameraError) as exc:
                ctx.log(f"{name}: {exc}")
                rows.append(error_row(name, "", _relay_how(kbit, window), str(exc)))
                continue
            runs.append(run)
            rows.append(
                Row(
                    name,
                    round(run.pct_per_mbit, 3),
                    "% of a core per Mbit/s",
                    f"{run.pct_per_mbit:.2f} %/(Mbit/s): {run.pct:.2f} % of a core at "
                    f"{run.mbit_s:.2f} Mbit/s",
                    "",
                    None,
                    _relay_how(kbit, window) + f" (1 tick = {run.details['tick_pct']:.2f} %)",
                    run.details,
                )
            )
    how = (
        "least-squares line through the rates below: the daemon's % of a core against the "
        "Mbit/s it relayed (camera, mock and viewer ran on the same 2 cores)"
    )
    if len(runs) >= 2:
        intercept, slope = _fit([(r.mbit_s, r.pct) for r in runs])
        summary = Row(
            "live_relay_cpu",
            round(slope, 3),
            "% of a core per Mbit/s",
            f"{slope:.2f} %/(Mbit/s) marginal (+ {intercept:.2f} % fixed); "
            + ", ".join(f"{r.pct:.1f} % at {r.mbit_s:.1f}" for r in runs),
            "",
            None,
            how,
            {"intercept_pct": round(intercept, 3), "slope_pct_per_mbit": round(slope, 3)},
        )
    elif runs:
        run = runs[0]
        summary = Row(
            "live_relay_cpu",
            round(run.pct_per_mbit, 3),
            "% of a core per Mbit/s",
            f"{run.pct_per_mbit:.2f} %/(Mbit/s) at {run.mbit_s:.1f} Mbit/s only (the other "
            "rates failed)",
            "",
            None,
            "the one rate that ran (see the rows below)",
            {},
        )
    else:
        summary = error_row("live_relay_cpu", "", how, "no rate could be measured")
    return [summary, *rows]


# -- live_stream_rss ------------------------------------------------------------------------


def live_stream_rss(ctx: Context) -> list[Row]:
    _require_video()
    streaming_s = 5.0
    with contextlib.ExitStack() as stack:
        cloud = _start_cloud(ctx, stack, "rss-cloud", SHORT_LINGER_S)
        session = cloud.login()
        camera = _start_camera(stack, pattern="noise", bitrate=RSS_RATE_KBIT)
        device = _start_device(ctx, stack, cloud, session, camera, "rss-agent")
        time.sleep(3.0)  # settled, as idle_rss measures it
        idle = proc_status(device.pid)
        tunnels_before_idle = len(_OPENED.findall(device.agent.log_text()))
        _settle(cloud, [device])
        viewers = stack.enter_context(_viewers(cloud, session))
        meter = viewers.open(_live_url(cloud, device.camera_id))
        _wait_playing([meter], cloud)
        highest = _sample_rss(device.pid, streaming_s)
        streaming = proc_status(device.pid)
        received = meter.bytes(meter.first_fragment or 0.0, time.monotonic())
    # The daemon idle_rss measures (no [video]), for what video costs a daemon at all.
    reference = proc_status(ctx.idle_agent().process.pid)
    increase = (streaming["VmRSS"] - idle["VmRSS"]) / MIB
    peak_increase = (streaming["VmHWM"] - idle["VmHWM"]) / MIB
    over_plain = (streaming["VmRSS"] - reference["VmRSS"]) / MIB
    idle_mib = idle["VmRSS"] / MIB
    video_at_idle = (idle["VmRSS"] - reference["VmRSS"]) / MIB
    fields = daemon_bench.RSS_FIELDS
    hello = (
        f"by then the mock's thumbnail after hello had opened {tunnels_before_idle} tunnel(s)"
        if tunnels_before_idle
        else "no tunnel opened yet"
    )
    return [
        Row(
            "live_stream_rss",
            round(increase, 2),
            "MiB",
            f"{increase:+.2f} MiB while streaming ({idle_mib:.1f} -> "
            f"{streaming['VmRSS'] / MIB:.1f} MiB; VmHWM {peak_increase:+.2f} MiB; "
            f"{over_plain:+.2f} MiB over a daemon without [video])",
            f"<= +{STREAM_RSS_TARGET_MIB:g} MiB",
            increase <= STREAM_RSS_TARGET_MIB,
            f"VmRSS of the daemon after {streaming_s:g} s relaying one live stream (test "
            f"camera noise {RSS_RATE_KBIT} kbit/s, 1 viewer) minus its own VmRSS connected "
            f"and idle (settled 3 s; {hello}); VmHWM likewise",
            {
                "idle": {k: idle.get(k) for k in fields},
                "streaming": {k: streaming.get(k) for k in fields},
                "without_video": {k: reference.get(k) for k in fields},
                "highest_sampled_vmrss_kib": highest,
                "streamed_mbit": round(received * 8 / 1e6, 2),
                "tunnels_before_idle_figure": tunnels_before_idle,
                "increase_over_plain_daemon_mib": round(over_plain, 2),
            },
        ),
        Row(
            "live_stream_rss.idle",
            round(idle_mib, 2),
            "MiB",
            f"{idle_mib:.1f} MiB with [video] main, {video_at_idle:+.2f} MiB over the idle_rss "
            f"daemon ({reference['VmRSS'] / MIB:.1f} MiB, no [video])",
            "",
            None,
            "idle_rss's method on the daemon above: VmRSS of a connected daemon in the venv, "
            f"local API and mDNS off, settled 3 s ({hello})",
            {
                "idle": {k: idle.get(k) for k in fields},
                "without_video": {k: reference.get(k) for k in fields},
            },
        ),
    ]


# -- live_mock_capacity ---------------------------------------------------------------------


class CameraRate:
    """The frames the camera itself delivers: Debian's ffmpeg reading its RTSP stream
    directly (no mock, no tunnel; `-c copy`, nothing decoded), its frame count sampled
    every 0.1 s. What a viewer of the mock is held against: if the machine is so busy
    that the camera makes fewer frames, that is not the mock falling behind."""

    def __init__(self, url: str) -> None:
        argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]
        argv += ["-progress", "pipe:1", "-stats_period", "0.1", "-rtsp_transport", "tcp"]
        argv += ["-i", url, "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._samples: list[tuple[float, int]] = []  # (monotonic, frames so far)
        self._reader = threading.Thread(target=self._read, name="camera-rate", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(b"frame="):
                with contextlib.suppress(ValueError):
                    self._samples.append((time.monotonic(), int(line[6:])))

    def fps(self, start: float, end: float) -> float | None:
        """Frames per second between the samples nearest `start` and `end`."""
        samples = list(self._samples)
        before = [s for s in samples if s[0] <= start]
        after = [s for s in samples if s[0] <= end]
        if not before or not after or after[-1][0] <= before[-1][0]:
            return None
        return (after[-1][1] - before[-1][1]) / (after[-1][0] - before[-1][0])

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(5)
        if self._process.stdout is not None:
            self._process.stdout.close()


@dataclass
class Step:
    """One load level of live_mock_capacity: `streams` pullers, `viewers` viewers."""

    streams: int
    viewers: int
    window: Window | None  # None: not every viewer got a picture, nothing measured
    fps: list[float]  # frames per second received, per viewer (from the `trun` counts)
    fragments: list[float]  # fragments per second, per viewer
    mbit: list[float]
    kept_up: bool
    reference: float | None  # the frames per second the camera delivered meanwhile
    problem: str | None = None
    retried_after: str | None = None  # the first attempt's problem, when it was retried

    @property
    def mock_pct(self) -> float:
        return self.window.pct["mock"] if self.window is not None else float("nan")

    @property
    def per_stream_pct(self) -> float:
        """The mock's CPU per stream of 25 frames a second (what every viewer got)."""
        frames = sum(self.fps) * self.streams / self.viewers if self.fps else 0.0
        return self.mock_pct * 25.0 / frames if frames > 0 else float("nan")

    def row(self) -> list[str]:
        if self.window is None:
            return [str(self.streams), str(self.viewers), *["-"] * 6, "NO (no picture)"] + ["-"] * 4
        pct = self.window.pct
        return [
            str(self.streams),
            str(self.viewers),
            f"{pct['mock']:.1f} %",
            f"{pct['mock.own']:.1f} / {pct['mock.children']:.1f}",
            f"{self.per_stream_pct:.2f} %",
            f"{min(self.fps):.1f} .. {max(self.fps):.1f}",
            f"{self.reference:.1f}" if self.reference else "?",
            f"{min(self.fragments):.1f} .. {max(self.fragments):.1f}",
            f"{sum(self.mbit):.1f}",
            ("yes" if self.kept_up else "NO") + (" (2nd try)" if self.retried_after else ""),
            f"{pct['daemons']:.1f} %",
            f"{pct['camera']:.1f} %",
            f"{pct['viewers']:.1f} %",
            f"{pct['machine']:.0f} %",
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "viewers": self.viewers,
            "seconds": round(self.window.seconds, 2) if self.window else None,
            "pct": {k: round(v, 2) for k, v in self.window.pct.items()} if self.window else {},
            "frames_per_s": [round(r, 2) for r in self.fps],
            "fragments_per_s": [round(r, 2) for r in self.fragments],
            "mbit_s": [round(m, 3) for m in self.mbit],
            "camera_frames_per_s": round(self.reference, 2) if self.reference else None,
            "kept_up": self.kept_up,
            "problem": self.problem,
            "retried_after": self.retried_after,
        }


STEP_COLUMNS = (
    "streams",
    "viewers",
    "mock CPU",
    "python / ffmpeg",
    "per 25-fps stream",
    "frames/s",
    "camera fps",
    "fragments/s",
    "Mbit/s out",
    "kept up",
    "daemons",
    "camera",
    "viewers",
    "machine busy",
)


def _measure_step(
    ctx: Context,
    cloud: sandbox.Cloud,
    viewers: Viewers,
    urls: Sequence[str],
    streams: int,
    devices: Sequence[Device],
    camera: test_camera.TestCamera,
    rate: CameraRate,
) -> Step:
    window_s = 4.0 if ctx.quick else 10.0
    meters = [viewers.open(url) for url in urls]
    try:
        try:
            _wait_playing(meters, cloud)
        except BenchmarkError as exc:
            ctx.log(f"{streams} stream(s), {len(urls)} viewer(s): {exc}")
            return Step(streams, len(urls), None, [], [], [], False, None, str(exc))
        time.sleep(2.0)  # every puller past its start
        singles = {f"daemon{i}": d.pid for i, d in enumerate(devices)}
        singles["camera"] = camera.process.pid
        singles["viewers"] = os.getpid()  # this process: the viewers' thread does the work
        window = Window(singles, {"mock": cloud.process.pid})
        window.start()
        time.sleep(window_s)
        window.stop()
        window.pct["daemons"] = sum(window.pct.pop(f"daemon{i}") for i in range(len(devices)))
        start, end = window.started, window.started + window.seconds
        fps = [m.frames(start, end) / window.seconds for m in meters]
        fragments = [m.count(start, end) / window.seconds for m in meters]
        mbit = [_mbit(m.bytes(start, end), window.seconds) for m in meters]
        ref = rate.fps(start, end)
        kept_up = all(f >= KEEP_UP_SHARE * fps[0] for f in fps) and (
            ref is None or fps[0] >= KEEP_UP_SHARE * ref
        )
        ended = [m.problem() for m in meters if m.ended]
        problem = f"{len(ended)} viewer(s) ended: {ended[0]}" if ended else None
        if problem:
            kept_up = False
            ctx.log(problem)
    finally:
        for meter in meters:
            viewers.close_one(meter)
    step = Step(streams, len(urls), window, fps, fragments, mbit, kept_up, ref, problem)
    ctx.log(
        f"{streams} stream(s), {len(urls)} viewer(s): mock {step.mock_pct:.1f} % of a core, "
        f"{min(fps):.1f}..{max(fps):.1f} frames/s, kept up: {kept_up}"
    )
    return step


def live_mock_capacity(ctx: Context) -> list[Row]:
    _require_video()
    steps_n = CAPACITY_STEPS_QUICK if ctx.quick else CAPACITY_STEPS
    window = "4 s" if ctx.quick else "10 s"
    steps: list[Step] = []
    with contextlib.ExitStack() as stack:
        cloud = _start_cloud(ctx, stack, "capacity-cloud", SHORT_LINGER_S)
        session = cloud.login()
        camera = _start_camera(stack, pattern="bars")
        devices = [
            _start_device(ctx, stack, cloud, session, camera, f"cap-{i}", connect=False)
            for i in range(max(steps_n))
        ]
        for device in devices:
            device.agent.wait_for_state("connected", timeout=60)
        _settle(cloud, devices)
        viewers = stack.enter_context(_viewers(cloud, session))
        rate = CameraRate(camera.main)
        stack.callback(rate.close)
        for n in steps_n:
            urls = [_live_url(cloud, d.camera_id) for d in devices[:n]]
            step = _measure_step(ctx, cloud, viewers, urls, n, devices[:n], camera, rate)
            _settle(cloud, devices[:n])
            if step.window is None:
                # A stream that never started is not a capacity limit (see _wait_playing's
                # message: a camera that answers PLAY and sends no video): once more.
                missed = step.problem
                step = _measure_step(ctx, cloud, viewers, urls, n, devices[:n], camera, rate)
                step.retried_after = missed
                _settle(cloud, devices[:n])
            steps.append(step)
            if not step.kept_up:
                break
        fanout = _measure_step(
            ctx,
            cloud,
            viewers,
            [_live_url(cloud, devices[0].camera_id)] * FANOUT_VIEWERS,
            1,
            devices[:1],
            camera,
            rate,
        )
    held = [s for s in steps if s.kept_up]
    best = held[-1] if held else None
    ctx.extras.append(
        Extra(
            f"live_mock_capacity: N devices streaming one shared test camera (bars 640x360 "
            f"25 fps 800 kbit/s), one viewer each, {window} windows; mock = its process + "
            "its ffmpeg children; all on the same 2 cores",
            STEP_COLUMNS,
            [s.row() for s in [*steps, fanout]],
            [s.to_json() for s in [*steps, fanout]],
        )
    )
    how = (
        f"N daemons (separate devices) on one shared test camera, 1 viewer each (?stream="
        f"main), N = {', '.join(map(str, steps_n))} until one misses; mock CPU = utime+stime "
        f"of the mock and its ffmpeg children over {window}; kept up = every viewer got "
        f">= {KEEP_UP_SHARE:.0%} of the frames the first one got, and it >= "
        f"{KEEP_UP_SHARE:.0%} of what the camera delivered meanwhile (ffmpeg reading it "
        "directly); the daemons, camera and viewers share the same 2 cores"
    )
    if best is None:
        row = Row(
            "live_mock_capacity",
            0.0,
            "streams",
            "not even 1 stream kept up: " + (steps[0].problem or "too few frames"),
            "",
            None,
            how,
            {"steps": [s.to_json() for s in steps]},
        )
    else:
        # Per stream at the camera's 25 fps: a machine too busy for the camera to make
        # every frame gives the mock less to do (mock CPU / frames received * 25).
        per_stream = best.per_stream_pct
        per_core = 100.0 / per_stream if per_stream > 0 else float("inf")
        spread = [s.per_stream_pct for s in held]
        later = [s for s in steps if s.streams > best.streams]
        limit = (
            f"{later[0].streams} did not: {later[0].problem or 'a viewer fell behind'}"
            if later
            else "the most tried"
        )
        row = Row(
            "live_mock_capacity",
            float(best.streams),
            "streams",
            f"{best.streams} streams kept up ({limit}); {per_stream:.2f} % of a core per "
            f"25-fps stream ({min(spread):.2f}..{max(spread):.2f} over N) -> ~{per_core:.0f} "
            "streams per core (projection)",
            "",
            None,
            how,
            {
                "per_stream_pct": round(per_stream, 3),
                "per_stream_pct_by_n": {str(s.streams): round(s.per_stream_pct, 3) for s in held},
                "streams_per_core": round(per_core, 1),
                "steps": [s.to_json() for s in steps],
            },
        )
    fan_how = (
        f"{FANOUT_VIEWERS} viewers on one device's stream (one puller): the mock and its "
        f"ffmpeg child over {window}, same keep-up rule"
    )
    if fanout.window is None:
        fan = error_row("live_mock_capacity.fanout", "", fan_how, fanout.problem or "no picture")
    else:
        fan = Row(
            "live_mock_capacity.fanout",
            round(fanout.mock_pct, 2),
            "% of a core",
            f"{FANOUT_VIEWERS} viewers of 1 stream: mock {fanout.mock_pct:.1f} % of a core "
            f"(ffmpeg {fanout.window.pct['mock.children']:.1f} %), "
            + ("all kept up" if fanout.kept_up else "NOT all kept up")
            + f" ({min(fanout.fps):.1f}..{max(fanout.fps):.1f} frames/s)",
            "",
            None,
            fan_how,
            fanout.to_json(),
        )
    return [row, fan]


# -- the console's player in chromium --------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
# As tests/console/browsing.py launches it (headless, no GPU, nothing in the background).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GLASS_TARGET_S = 0.5
FIRST_FRAME_TARGET_S = 1.5
PAGE_TIMEOUT_S = 30.0

# In the page: the time code of the frame a requestVideoFrameCallback hands over, read
# from a canvas as cloud_mock/test_camera.py lays it out (the green channel of the cell's
# central part; 0 below zero_below, 1 above one_above, the guards checked).
TIMECODE_JS = """
function readTimecode(pixels, w, layout) {
  const cellW = Math.floor(w / layout.columns);
  const cellH = Math.max(layout.min_cell_height, 2 * cellW);
  const top = Math.floor(cellH / 2);
  const cells = layout.start_guard.length + layout.bits + layout.end_guard.length;
  const bits = [];
  for (let i = 0; i < cells; i++) {
    const x = (layout.first_cell + i) * cellW;
    const x0 = x + Math.floor(cellW / 4), x1 = x + cellW - Math.floor(cellW / 4);
    const y0 = top + Math.floor(cellH / 4), y1 = top + cellH - Math.floor(cellH / 4);
    let sum = 0;
    for (let y = y0; y < y1; y++) {
      for (let col = x0; col < x1; col++) sum += pixels[(y * w + col) * 4 + 1];
    }
    const mean = sum / ((x1 - x0) * (y1 - y0));
    if (mean < layout.zero_below) bits.push(0);
    else if (mean > layout.one_above) bits.push(1);
    else return null;
  }
  const start = layout.start_guard.length, end = start + layout.bits;
  const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  if (!same(bits.slice(0, start), layout.start_guard) || !same(bits.slice(end), layout.end_guard)) {
    return null;
  }
  return bits.slice(start, end).reduce((value, bit) => value * 2 + bit, 0);
}
"""

# Samples the latency of every frame presented for `seconds`: in each
# requestVideoFrameCallback the frame is drawn to a canvas and its time code compared
# with Date.now() (and with the time the compositor expected to show it).
GLASS_JS = (
    "async ({seconds, layout}) => {"
    + TIMECODE_JS
    + """
  const video = document.getElementById("live-video");
  if (!video) return {error: "the page has no #live-video element"};
  if (!video.requestVideoFrameCallback) return {error: "no requestVideoFrameCallback"};
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", {willReadFrequently: true});
  const out = {samples: [], presented: [], behind: [], rates: [], callbacks: 0,
               unreadable: 0, width: 0, height: 0, dropped: 0};
  let lastPresented = null;
  await new Promise((resolve) => {
    const until = performance.now() + seconds * 1000;
    const timer = setTimeout(resolve, seconds * 1000 + 5000);  // no frame at all
    const onFrame = (now, meta) => {
      const wall = Date.now();
      out.callbacks += 1;
      const w = meta.width, h = meta.height;
      out.width = w; out.height = h;
      if (lastPresented !== null && meta.presentedFrames > lastPresented + 1) {
        out.dropped += meta.presentedFrames - lastPresented - 1;
      }
      lastPresented = meta.presentedFrames;
      const cellH = Math.max(layout.min_cell_height, 2 * Math.floor(w / layout.columns));
      if (canvas.width !== w || canvas.height !== 2 * cellH) {
        canvas.width = w;
        canvas.height = 2 * cellH;
      }
      context.drawImage(video, 0, 0, w, h, 0, 0, w, h);  // the band is the top rows
      const code = readTimecode(context.getImageData(0, 0, w, 2 * cellH).data, w, layout);
      if (code === null) out.unreadable += 1;
      else {
        out.samples.push(wall - code);
        out.presented.push(performance.timeOrigin + meta.expectedDisplayTime - code);
      }
      const ranges = video.buffered;
      if (ranges.length) out.behind.push(ranges.end(ranges.length - 1) - video.currentTime);
      out.rates.push(video.playbackRate);
      if (performance.now() < until) video.requestVideoFrameCallback(onFrame);
      else { clearTimeout(timer); resolve(); }
    };
    video.requestVideoFrameCallback(onFrame);
  });
  return out;
}"""
)

# Installed before the page's own scripts: marks (performance.now(), ms since the
# navigation started) when the player's WebSocket is made and what first comes over it,
# and the video element's first events and first presented frame.
FIRST_FRAME_INIT_JS = """
(() => {
  const marks = {};
  window.__benchMarks = marks;
  const mark = (name) => { if (!(name in marks)) marks[name] = performance.now(); };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      mark("ws_created");
      this.addEventListener("open", () => mark("ws_open"));
      this.addEventListener("message", (event) => {
        if (typeof event.data === "string") {
          if (event.data.includes('"init"')) mark("init_message");
        } else if (!("init_segment" in marks)) mark("init_segment");
        else mark("first_fragment");
      });
    }
  };
  document.addEventListener("DOMContentLoaded", () => {
    mark("dom_content_loaded");
    const video = document.getElementById("live-video");
    if (!video) return;
    for (const name of ["loadedmetadata", "loadeddata", "playing"]) {
      video.addEventListener(name, () => mark(name), {once: true});
    }
    if (video.requestVideoFrameCallback) {
      video.requestVideoFrameCallback((now, meta) => {
        mark("first_frame");
        marks.first_frame_expected_display = meta.expectedDisplayTime;
      });
    }
  }, {once: true});
})();
"""
MARKS_ORDER = (
    "dom_content_loaded",
    "ws_created",
    "ws_open",
    "init_message",
    "init_segment",
    "first_fragment",
    "loadedmetadata",
    "loadeddata",
    "playing",
    "first_frame",
)


def _layout_json() -> dict[str, Any]:
    layout = test_camera.TIMECODE_LAYOUT
    return {
        "columns": layout.columns,
        "min_cell_height": layout.min_cell_height,
        "first_cell": layout.first_cell,
        "start_guard": list(layout.start_guard),
        "bits": layout.bits,
        "end_guard": list(layout.end_guard),
        "zero_below": layout.zero_below,
        "one_above": layout.one_above,
    }


def _require_browser() -> None:
    _require_video()
    if not Path(CHROMIUM).exists():
        raise BenchmarkError(f"no {CHROMIUM} (Debian's chromium)")
    if shutil.which("certutil") is None:
        raise BenchmarkError("no certutil (libnss3-tools): chromium cannot trust the mock's CA")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise BenchmarkError(f"playwright is not installed in this venv: {exc}") from exc


def _trusting_home(directory: Path, ca_file: Path) -> Path:
    """A HOME whose NSS database (what chromium on Linux trusts) holds the mock's CA."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    db = f"sql:{nssdb}"
    for argv in (
        ["certutil", "-d", db, "-N", "--empty-password"],
        ["certutil", "-d", db, "-A", "-t", "C,,", "-n", "camagent mock CA", "-i", str(ca_file)],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return directory


@contextlib.contextmanager
def _console(ctx: Context, cloud: sandbox.Cloud) -> Iterator[Any]:
    """A logged-in browser context (Debian's chromium through Playwright) on the console."""
    from playwright.sync_api import sync_playwright

    home = _trusting_home(ctx.new_dir("chromium-home"), cloud.ca_file)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, env={"HOME": str(home)}
        )
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 720})
            context.set_default_timeout(PAGE_TIMEOUT_S * 1000)
            page = context.new_page()
            page.goto(cloud.url + "/login")
            page.get_by_label("Login").fill("admin")
            page.get_by_label("Password").fill(cloud.admin_password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(re.compile(r"/cameras$"))
            page.close()
            yield context
        finally:
            browser.close()


def _camera_rig(
    ctx: Context, stack: contextlib.ExitStack, name: str, linger_s: float | None
) -> tuple[sandbox.Cloud, str, test_camera.TestCamera, Device]:
    """A mock, the bars test camera (640x360 main, 320x180 sub) and its daemon, settled."""
    cloud = _start_cloud(ctx, stack, name, linger_s)
    session = cloud.login()
    camera = _start_camera(stack, pattern="bars")
    device = _start_device(ctx, stack, cloud, session, camera, name + "-agent", sub=True)
    _settle(cloud, [device])
    return cloud, session, camera, device


def _wait_js(
    page: Any, script: str, timeout: float, what: str, cloud: sandbox.Cloud | None = None
) -> Any:
    """Poll `script` in the page until it returns something truthy (page.wait_for_function
    would eval() it, which the console's CSP refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script)
        if value:
            return value
        if time.monotonic() > deadline:
            status = page.evaluate(
                "(document.getElementById('player-status') || {}).textContent || ''"
            )
            message = f"{what} within {timeout:g} s; the page says {status!r}"
            if cloud is not None:
                message += (
                    f" ({len(_descendants(cloud.process.pid))} ffmpeg child(ren) of the mock "
                    "running)\nthe mock's log:\n" + _mock_log_tail(cloud)
                )
            raise BenchmarkError(message)
        time.sleep(0.05)


# -- live_glass_to_glass ----------------------------------------------------------------------


def live_glass_to_glass(ctx: Context) -> list[Row]:
    _require_browser()
    seconds = 4.0 if ctx.quick else 10.0
    with contextlib.ExitStack() as stack:
        cloud, session, _camera, device = _camera_rig(ctx, stack, "glass", None)
        context = stack.enter_context(_console(ctx, cloud))
        page = context.new_page()
        page.goto(f"{cloud.url}/cameras/{device.camera_id}")
        _wait_js(
            page,
            "document.getElementById('live-video').readyState >= 2",
            PAGE_TIMEOUT_S,
            "no video frame",
            cloud,
        )
        # Alongside, the same stream (auto = sub, as the page) decoded by ffmpeg on
        # arrival: how much of the latency is there before the browser's player.
        decoder = TimecodeDecoder()
        stack.callback(decoder.close)
        viewers = stack.enter_context(_viewers(cloud, session))
        decoding = viewers.open(_live_url(cloud, device.camera_id, "auto"), sink=decoder.feed)
        time.sleep(2.0)  # the player's catch-up policy has settled
        started_ms = time.time() * 1000
        seen = page.evaluate(GLASS_JS, {"seconds": seconds, "layout": _layout_json()})
        ended_ms = time.time() * 1000
        page.close()
        viewers.close_one(decoding)
        decoder.close()  # ffmpeg decodes the rest, then exits
        arrival = decoder.between(started_ms, ended_ms)
    if seen.get("error"):
        raise BenchmarkError(f"cannot sample frames in the page: {seen['error']}")
    samples = [float(v) for v in seen["samples"]]
    if not samples:
        raise BenchmarkError(
            f"no frame with a readable time code: {seen['callbacks']} frame callback(s) in "
            f"{seconds:g} s, {seen['unreadable']} unreadable ({seen['width']}x{seen['height']})"
        )
    p50, p90 = median(samples) / 1000, percentile(samples, 90) / 1000
    behind = [float(b) for b in seen["behind"]]
    presented = [float(v) for v in seen["presented"]]
    details = {
        "samples": len(samples),
        "callbacks": seen["callbacks"],
        "unreadable": seen["unreadable"],
        "dropped_between_callbacks": seen["dropped"],
        "frame": f"{seen['width']}x{seen['height']}",
        "median_ms": round(p50 * 1000, 1),
        "p90_ms": round(p90 * 1000, 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
        "median_at_expected_display_ms": round(median(presented), 1) if presented else None,
        "median_playhead_behind_buffered_ms": round(median(behind) * 1000, 1) if behind else None,
        "playback_rates": sorted(set(seen["rates"])),
        "arrival_frames": len(arrival),
        "arrival_median_ms": round(median(arrival), 1) if arrival else None,
        "arrival_p90_ms": round(percentile(arrival, 90), 1) if arrival else None,
        "arrival_min_ms": round(min(arrival), 1) if arrival else None,
        "arrival_unreadable": decoder.unreadable,
        "arrival_error": decoder.error,
    }
    at_arrival = (
        f"; {details['arrival_median_ms']:.0f} ms when its fragment arrived" if arrival else ""
    )
    return [
        Row(
            "live_glass_to_glass",
            round(p50, 3),
            "s",
            f"median {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms ({len(samples)} frames; "
            f"playhead {details['median_playhead_behind_buffered_ms']:.0f} ms behind the "
            f"buffered end{at_arrival})",
            f"median <= {GLASS_TARGET_S:g} s",
            p50 <= GLASS_TARGET_S,
            f"chromium (Playwright, headless) on the console's camera page, test camera bars "
            f"640x360 + sub; every requestVideoFrameCallback for {seconds:g} s: the frame "
            "drawn to a canvas, its time code (camera wall clock) vs Date.now()",
            details,
        )
    ]


# -- live_first_frame -------------------------------------------------------------------------


def _first_frame_once(context: Any, cloud: sandbox.Cloud, url: str) -> dict[str, float]:
    """Open the camera page in a new tab; the page's marks (ms after navigation start)."""
    page = context.new_page()
    try:
        page.add_init_script(FIRST_FRAME_INIT_JS)
        page.goto(url, wait_until="commit")
        _wait_js(
            page,
            "window.__benchMarks && ('first_frame' in window.__benchMarks "
            "|| 'loadeddata' in window.__benchMarks)",
            PAGE_TIMEOUT_S,
            "no video frame",
            cloud,
        )
        time.sleep(0.3)  # the first frame callback comes just after loadeddata
        marks: dict[str, float] = page.evaluate("window.__benchMarks")
    finally:
        page.close()
    marks["first_picture"] = marks.get("first_frame", marks.get("loadeddata", math.nan))
    return marks


def _marks_table(label: str, runs: Sequence[dict[str, float]]) -> list[list[str]]:
    rows = []
    for name in (*MARKS_ORDER, "first_picture"):
        values = [r[name] for r in runs if name in r]
        if values:
            rows.append([label, name, f"{median(values):.0f}", f"{max(values):.0f}"])
    return rows


def _loads(
    ctx: Context,
    context: Any,
    cloud: sandbox.Cloud,
    url: str,
    count: int,
    before: Callable[[], object] | None = None,
) -> tuple[list[dict[str, float]], list[str]]:
    """`count` page loads: the marks of those that showed a picture, and why the others
    did not (a load that shows nothing within PAGE_TIMEOUT_S is a miss, not a figure)."""
    runs: list[dict[str, float]] = []
    misses: list[str] = []
    for _ in range(count):
        if before is not None:
            before()
        try:
            runs.append(_first_frame_once(context, cloud, url))
        except BenchmarkError as exc:
            ctx.log(f"a page load showed no picture: {exc}")
            misses.append(str(exc))
    return runs, misses


def live_first_frame(ctx: Context) -> list[Row]:
    _require_browser()
    loads = 3 if ctx.quick else 7
    with contextlib.ExitStack() as stack:
        # Pullers linger SHORT_LINGER_S, not 5 s: a cold start waits that long, not more.
        cloud, session, _camera, device = _camera_rig(ctx, stack, "first", SHORT_LINGER_S)
        context = stack.enter_context(_console(ctx, cloud))
        url = f"{cloud.url}/cameras/{device.camera_id}"
        # Cold: no puller, no tunnel when the page opens; the page starts everything.
        cold, cold_misses = _loads(
            ctx, context, cloud, url, loads, lambda: _settle(cloud, [device])
        )
        # Warm: another viewer keeps the page's stream (auto = sub) running, so the page
        # joins late and gets the keyframe cache at once.
        viewers = stack.enter_context(_viewers(cloud, session))
        keeper = viewers.open(_live_url(cloud, device.camera_id, "auto"))
        _wait_playing([keeper], cloud)
        warm, warm_misses = _loads(ctx, context, cloud, url, loads)
    ctx.extras.append(
        Extra(
            "live_first_frame: what the page saw, ms after navigation start (median, max)",
            ("start", "mark", "median ms", "max ms"),
            _marks_table("cold", cold) + _marks_table("warm", warm),
            [{"cold": cold, "warm": warm, "cold_misses": cold_misses, "warm_misses": warm_misses}],
        )
    )
    rows = []
    for name, runs, misses, target in (
        ("live_first_frame", cold, cold_misses, FIRST_FRAME_TARGET_S),
        ("live_first_frame.warm", warm, warm_misses, None),
    ):
        kind = (
            "cold: no puller running (the page's viewer starts the tunnel and ffmpeg)"
            if target is not None
            else "warm: another viewer keeps the puller running (a late joiner)"
        )
        how = (
            "chromium on the console's camera page: navigation start -> the first "
            f"requestVideoFrameCallback (performance.now()); {kind}"
        )
        target_text = f"median <= {target:g} s" if target is not None else ""
        if not runs:
            rows.append(error_row(name, target_text, how, misses[0]))
            continue
        times = [r["first_picture"] / 1000 for r in runs]
        p50 = median(times)
        display = f"median {p50:.2f} s, max {max(times):.2f} s ({len(times)} page loads)"
        if misses:
            display += f"; {len(misses)} more showed NO picture in {PAGE_TIMEOUT_S:g} s"
        passed = None if target is None else p50 <= target and not misses
        rows.append(
            Row(
                name,
                round(p50, 3),
                "s",
                display,
                target_text,
                passed,
                how,
                {"seconds": [round(t, 3) for t in times], "misses": misses},
            )
        )
    return rows
