"""Benchmarks of the mock cloud's provisioning service under load.

The load comes from `benchmarks.loadgen` in its own process (so that the figures are the
mock's, not this process's event loop), against a fresh mock for each benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from benchmarks.common import ROOT, BenchmarkError, Context, Row, child_env
from cloud_mock import sandbox

HELD_TARGET = 2000
WORKERS = 50
KNOWN_DEVICES = 8


def run_loadgen(cloud: sandbox.Cloud, *args: str, timeout: float) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        args[0],
        "--url",
        cloud.url,
        "--ca",
        str(cloud.ca_file),
        *args[1:],
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=child_env(),
        check=False,
    )
    if result.returncode != 0:
        raise BenchmarkError(f"loadgen {args[0]} failed: {result.stderr.strip()[-400:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def _poll_row(name: str, data: dict[str, Any], what: str, seconds: float) -> Row:
    if not data.get("polls"):
        raise BenchmarkError(f"no poll was answered: {data.get('first_error')}")
    return Row(
        name,
        data["polls_per_s"],
        "polls/s",
        f"{data['polls_per_s']:.0f} polls/s, p50 {data['p50_ms']:.1f} ms, "
        f"p99 {data['p99_ms']:.1f} ms",
        "",
        None,
        f"signed polls (wait 0), {what}, {WORKERS} aiohttp workers in a separate process, "
        f"{seconds:g} s",
        data,
    )


def mock_polls_per_s(ctx: Context) -> list[Row]:
    seconds = 2.0 if ctx.quick else 5.0
    cloud = ctx.start_cloud("polls-cloud")
    try:
        common = ("--seconds", str(seconds), "--workers", str(WORKERS))
        unknown = run_loadgen(cloud, "polls", *common, timeout=seconds + 60)
        # Known devices: their camera was added, so every poll answers 200 + sealed token.
        session = cloud.login()
        known = [ctx.next_device() for _ in range(KNOWN_DEVICES)]
        for device_id, password in known:
            cloud.add_camera(session, device_id, password, device_id)
        known_file = ctx.new_dir("known") / "known.json"
        known_file.write_text(json.dumps(known))
        with_token = run_loadgen(
            cloud, "polls", *common, "--known", str(known_file), timeout=seconds + 60
        )
    finally:
        cloud.stop()
    return [
        _poll_row("mock_polls_per_s", unknown, "unknown devices (204)", seconds),
        _poll_row(
            "mock_polls_per_s.known",
            with_token,
            f"{KNOWN_DEVICES} added devices (200 + sealed token)",
            seconds,
        ),
    ]


def mock_long_polls_held(ctx: Context) -> list[Row]:
    count = 300 if ctx.quick else HELD_TARGET
    check = 2.0 if ctx.quick else 3.0
    cloud = ctx.start_cloud("hold-cloud")
    try:
        data = run_loadgen(
            cloud,
            "hold",
            "--count",
            str(count),
            "--wait",
            "30",
            "--concurrency",
            "200",
            "--check",
            str(check),
            "--mock-pid",
            str(cloud.process.pid),
            timeout=300,
        )
    finally:
        cloud.stop()
    held = int(data["held"])
    target = min(count, HELD_TARGET)
    per_poll = data["kib_per_held_poll"]
    per_poll_text = f"{per_poll:.1f} KiB each" if per_poll is not None else "no memory figure"
    return [
        Row(
            "mock_long_polls_held",
            float(held),
            "polls",
            f"{held}/{count} held, {per_poll_text} (mock RSS "
            f"{data['mock_rss_before_kib'] / 1024:.0f}->{data['mock_rss_after_kib'] / 1024:.0f}"
            " MiB)",
            f">= {target} held" + (" (quick run)" if target < HELD_TARGET else ""),
            held >= target,
            f"wait=30 polls, unknown ids, 1 connection each, opened 200 at a time in "
            f"{data['open_seconds']:.0f} s; none answered {check:g} s after; mock VmRSS delta",
            data,
        )
    ]
