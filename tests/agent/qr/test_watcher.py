"""The daemon's QR watcher: what it hands to the daemon, and what it only logs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.config import QrConfig
from agent.qr.payloads import Label, Payload, label_payload
from agent.qr.watcher import QrWatcher

TOKEN = "eyJhbGciOiJFZERTQSJ9." + "A" * 86


def _handled(texts: list[str]) -> list[Payload]:
    got: list[Payload] = []

    async def on_payload(payload: Payload) -> None:
        got.append(payload)

    async def main() -> None:
        watcher = QrWatcher(QrConfig(source="/dev/null"), on_payload)
        for text in texts:
            await watcher._handle(json.dumps({"text": text}).encode())

    asyncio.run(main())
    return got


def test_labels_urls_and_text_are_never_applied_cards_are() -> None:
    label = label_payload(Label("00:11:22:33:44:55", "UH4YH-BEMUV-THWDS"))
    wifi = "WIFI:T:WPA;S:net;P:password1;;"
    got = _handled([label, "https://example.com/", "hello", wifi, f"CAMAGENT:T:{TOKEN};;"])
    assert [p.type for p in got] == ["wifi", "token"]


NOISY_WORKER = r"""
import json, sys, time
line = "[h264 @ 0x55d0] error while decoding MB 12 34, bytestream -5 " + "x" * 60 + "\n"
written = 0
while written < 2 * 1024 * 1024:  # far beyond a pipe's 64 KiB
    sys.stderr.write(line)
    written += len(line)
sys.stderr.write("no newline at the end " + "y" * 10000)
sys.stderr.flush()
print(json.dumps({"text": "WIFI:T:WPA;S:net;P:password1;;"}), flush=True)
time.sleep(30)
"""


def test_a_worker_that_floods_stderr_keeps_scanning_and_the_log_stays_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import sys

    script = tmp_path / "noisy_worker.py"
    script.write_text(NOISY_WORKER)
    got: list[Payload] = []
    seen = asyncio.Event()

    async def on_payload(payload: Payload) -> None:
        got.append(payload)
        seen.set()

    async def main() -> None:
        watcher = QrWatcher(
            QrConfig(source="rtsp://camera/stream"),
            on_payload,
            argv=lambda _config: [sys.executable, str(script)],
        )
        watcher.start()
        try:
            await asyncio.wait_for(seen.wait(), timeout=60)
        finally:
            await watcher.stop()

    with caplog.at_level(logging.WARNING, logger="agent.qr.watcher"):
        asyncio.run(main())
    assert [p.type for p in got] == ["wifi"]
    worker_lines = [r for r in caplog.records if r.getMessage().startswith("QR worker: ")]
    assert 1 <= len(worker_lines) <= 21  # the burst, and at most one "not logged" count
    assert all(len(r.getMessage()) < 500 for r in worker_lines)


def test_stderr_log_is_rate_limited_per_window_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from agent.qr.watcher import StderrLog

    now = [0.0]
    sink = StderrLog(burst=3, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="agent.qr.watcher"):
        for i in range(10):
            sink.line(f"warning {i}\n")
        now[0] = 61.0
        sink.line("warning 10")
        sink.line("   ")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "QR worker: warning 0",
        "QR worker: warning 1",
        "QR worker: warning 2",
        "QR worker: 7 more line(s) in the last 60 s not logged",
        "QR worker: warning 10",
    ]
    assert sink.last == "warning 10"


def test_an_overlong_line_from_the_worker_restarts_it_and_the_task_lives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import sys

    script = tmp_path / "overlong.py"
    script.write_text("import sys, time\nsys.stdout.write('x' * 200000)\nsys.stdout.flush()\n")
    starts: list[int] = []

    def argv(_config: QrConfig) -> list[str]:
        starts.append(1)
        return [sys.executable, str(script)]

    async def on_payload(payload: Payload) -> None:
        raise AssertionError("nothing to apply")

    async def main() -> None:
        watcher = QrWatcher(QrConfig(source="x"), on_payload, argv=argv)
        await asyncio.wait_for(watcher._watch_once(), timeout=30)

    with caplog.at_level(logging.WARNING, logger="agent.qr.watcher"):
        asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert "the QR worker wrote an overlong line: restarting it" in messages
    assert starts == [1]
