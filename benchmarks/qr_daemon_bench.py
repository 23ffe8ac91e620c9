"""qr_daemon_memory: the daemon's memory while its child process scans the camera for QR
cards, and after scanning stops (the device got its token): heavy libraries never enter
the daemon, so its figure stays at the idle one."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import BenchmarkError, Context, Row, rss_kib
from cloud_mock import sandbox

SCAN_SECONDS = 4.0


def _blank_video(path: Path, seconds: float) -> None:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (1280, 720))
    frame = np.full((720, 1280, 3), 128, np.uint8)
    for _ in range(int(seconds * 10)):
        writer.write(frame)
    writer.release()


def _rss_or_zero(pid: int) -> int:
    try:
        return rss_kib(pid)
    except (OSError, KeyError):  # gone between the listing and the read
        return 0


def _child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def qr_daemon_memory(ctx: Context) -> list[Row]:
    cloud = ctx.shared_cloud()
    device_id, password = ctx.next_device()
    directory = ctx.new_dir("qr-daemon")
    video = directory / "camera.avi"
    _blank_video(video, 600)  # ten minutes of a camera seeing no card
    config = sandbox.write_agent_config(
        directory / "device",
        cloud,
        device_id=device_id,
        password=password,
        fast_interval=2.0,
        long_poll=1.0,
        extra=f'\n[qr]\nsource = "{video}"\nfps = 2\n',
    )
    agent = ctx.start_agent(config)
    try:
        time.sleep(1.0)
        children = _child_pids(agent.process.pid)
        if not children:
            raise BenchmarkError("no QR worker child process was started")
        # Sampled while the child runs: it reads the file along the video's own timeline,
        # faster than real time, and exits at its end.
        during_daemon, during_child = 0, 0
        deadline = time.monotonic() + SCAN_SECONDS
        while time.monotonic() < deadline:
            child_kib = sum(_rss_or_zero(pid) for pid in _child_pids(agent.process.pid))
            if child_kib:
                during_child = max(during_child, child_kib)
                during_daemon = max(during_daemon, rss_kib(agent.process.pid))
            time.sleep(0.25)
        if not during_child:
            raise BenchmarkError("the QR worker was never seen running while sampling")
        session = cloud.login()
        cloud.add_camera(session, device_id, password)
        agent.wait_for_state("connected", timeout=20)
        time.sleep(2.0)
        after_daemon = rss_kib(agent.process.pid)
        left = _child_pids(agent.process.pid)
    finally:
        agent.stop()
    if left:
        raise BenchmarkError(f"the QR worker is still running after the token came: {left}")
    mib = 1024
    return [
        Row(
            "qr_daemon_memory",
            round(after_daemon / mib, 1),
            "MiB",
            f"daemon {during_daemon / mib:.1f} MiB while scanning (child "
            f"{during_child / mib:.1f} MiB), {after_daemon / mib:.1f} MiB after; child gone",
            "daemon <= 48 MiB after",
            after_daemon / mib <= 48,
            "VmRSS of the daemon and its QR worker child, 720p video at 2 fps, before and "
            "after the token came",
            {
                "during_daemon_kib": during_daemon,
                "during_child_kib": during_child,
                "after_daemon_kib": after_daemon,
            },
        )
    ]
