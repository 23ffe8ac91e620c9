"""The recorder (docs/design.md §12.6): for a source recording `continuous` whose device
is online, a tunnel to its `main` stream and ffmpeg writing an HLS run into
`ARCHIVE/<slug>/<run>/` (cloud_mock.video.archive_index).

A run ends when `archive_run_s` has passed (cut: a new tunnel, a new run at once), when
the mock clock's offset moves (cut: a run has one offset), when ffmpeg exits (restart
with backoff 1, 2, 4 … `retry_max_s` s, the reason kept for the API) and when the device
goes offline (the recorder ends; the device's next hello starts another). A run that
recorded nothing is removed when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path

from aiohttp import web

from cloud_mock.devices_ws import CHANNELS
from cloud_mock.keys import CLOCK
from cloud_mock.video.archive_index import CLOCK_FILE, ArchiveIndex, run_name, write_small
from cloud_mock.video.ffmpeg import Ffmpeg, FfmpegMissing, hls_args, redact
from cloud_mock.video.settings import VIDEO_SETTINGS
from cloud_mock.video.sources import VideoSource
from cloud_mock.video.tunnels import LocalBridge, VideoUnavailable, open_tunnel

log = logging.getLogger(__name__)

MAX_RECORDERS = 64  # sources recorded at once, in all
HEALTHY_AFTER_S = 30.0  # a run that lasted this long resets the backoff
TICK_S = 0.5  # how often a run looks at its cut time, the device and the clock
STREAM = "main"

RECORDING, RETRYING, WAITING, OFF = "recording", "retrying", "waiting", "off"


class PrivateFfmpeg(Ffmpeg):
    """ffmpeg whose files only the mock reads: umask 077 (files 0600, directories 0700)."""

    async def start(self, *, stdin: bool = False) -> None:
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                umask=0o077,
            )
        except FileNotFoundError:
            raise FfmpegMissing(
                f"{self.argv[0]} is not installed (apt-get install ffmpeg)"
            ) from None
        self._stderr_task = asyncio.create_task(self._read_stderr())


class Recorder:
    """One source being recorded: its task, and what it says for the API."""

    def __init__(self, app: web.Application, source: VideoSource, index: ArchiveIndex) -> None:
        self.app = app
        self.source = source
        self.index = index
        self.settings = app[VIDEO_SETTINGS]
        self.state = RECORDING
        self.message = "opening the camera's stream"
        self.last_error: str | None = None  # redacted
        self.current_run: Path | None = None  # the run directory ffmpeg writes now
        self.runs_started = 0
        self._hello = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        self.task = asyncio.create_task(self._forever(), name=f"recorder {self.source.key}")

    def hello(self) -> None:
        """The device said hello: a recorder waiting to retry tries at once."""
        self._hello.set()

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        log.info("%s: recorder stopped", self.source.key)

    def _online(self) -> bool:
        return self.app[CHANNELS].get(self.source.peer_id) is not None

    def _set(self, state: str, message: str) -> None:
        self.state, self.message = state, message

    async def _forever(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while self._online():
            self._hello.clear()
            started = loop.time()
            try:
                why = await self._record_run()
            except (VideoUnavailable, FfmpegMissing) as exc:
                why = str(exc)
            except OSError as exc:
                why = f"cannot write the archive: {exc}"
            except Exception:  # a bug: logged, and recording goes on
                log.exception("%s: a recording run failed", self.source.key)
                why = "an internal error (see the mock's log)"
            if why is None:  # a planned cut
                failures = 0
                continue
            self.last_error = why = redact(why)
            if not self._online():
                break
            if loop.time() - started >= HEALTHY_AFTER_S:
                failures = 0
            failures += 1
            delay = min(self.settings.retry_max_s, 2.0 ** (failures - 1))
            log.info("%s: recording stopped: %s; retrying in %g s", self.source.key, why, delay)
            self._set(RETRYING, f"{why}; trying again in {delay:g} s")
            await self._back_off(loop.time() + delay)
        self._set(WAITING, "the device is offline; recording resumes when it connects")
        log.info("%s: device offline, recorder ends", self.source.key)

    async def _back_off(self, until: float) -> None:
        """Until then, a hello (try at once) or the device going offline (end)."""
        loop = asyncio.get_running_loop()
        while self._online() and not self._hello.is_set() and loop.time() < until:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hello.wait(), min(TICK_S, until - loop.time()))

    async def _record_run(self) -> str | None:
        """One run; None when it was cut as planned, else why it ended."""
        offered = self.source.offered(self.app)
        if offered is not None and STREAM not in offered:
            raise VideoUnavailable("the device offers no main stream for this camera")
        self._set(RECORDING, "opening the camera's stream")
        tunnel = await open_tunnel(self.app, self.source.peer_id, self.source.target(STREAM))
        bridge = LocalBridge(tunnel)
        try:
            port = await bridge.start()
            run = self._new_run()
            try:
                argv = hls_args(
                    self.settings.ffmpeg,
                    tunnel.grant.url(port),
                    run,
                    self.settings.archive_segment_s,
                )
                ffmpeg = PrivateFfmpeg(argv)
                await ffmpeg.start()
                try:
                    self._set(RECORDING, f"recording the {STREAM} stream")
                    return await self._watch(ffmpeg, run)
                finally:
                    await ffmpeg.stop()
            finally:
                self._end_run(run)
        finally:
            await bridge.close()

    async def _watch(self, ffmpeg: Ffmpeg, run: Path) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.archive_run_s
        clock = self.app[CLOCK]
        offset = clock.offset
        exited = asyncio.ensure_future(ffmpeg.wait())
        # ffmpeg adds a file to the run (a segment, its temp file) at least every segment:
        # a run directory unchanged for long means the camera stopped sending.
        stall_s = max(self.settings.stall_s, 3 * self.settings.archive_segment_s)
        progress, progressed = _mtime(run), loop.time()
        try:
            while True:
                await asyncio.wait({exited}, timeout=TICK_S)
                if exited.done():
                    return ffmpeg.why(exited.result())
                now_progress = _mtime(run)
                if now_progress != progress:
                    progress, progressed = now_progress, loop.time()
                elif loop.time() - progressed >= stall_s:
                    return f"no video from the camera for {stall_s:g} s"
                if loop.time() >= deadline:
                    log.info("%s: run cut after %g s", self.source.key, self.settings.archive_run_s)
                    return None
                if clock.offset != offset:
                    log.info("%s: the mock clock moved: a new run", self.source.key)
                    return None
                if not self._online():
                    return "the device went offline"
        finally:
            if not exited.done():
                exited.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await exited

    def _new_run(self) -> Path:
        source_dir = self.index.source_dir(self.source.slug)
        source_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        clock = self.app[CLOCK]
        now, offset = clock.now(), clock.offset
        try:
            for step in range(1000):
                path = source_dir / run_name(now + step / 1000)
                self.current_run = path  # before it exists: the pruner must leave it alone
                try:
                    path.mkdir(mode=0o700)
                except FileExistsError:
                    continue
                write_small(path / CLOCK_FILE, f"{offset!r}\n")
                self.runs_started += 1
                return path
            raise OSError(f"no free run name in {source_dir}")
        except BaseException:
            self.current_run = None  # what was made, the pruner removes (nothing listed)
            raise

    def _end_run(self, path: Path) -> None:
        self.current_run = None
        self.index.forget(path)
        if not self.index.run(path).segments:
            shutil.rmtree(path, ignore_errors=True)
            self.index.forget(path)


class Recorders:
    """Every running recorder, by source key; at most `limit`."""

    def __init__(self, app: web.Application, index: ArchiveIndex, limit: int = MAX_RECORDERS):
        self.app = app
        self.index = index
        self.limit = limit
        self._by_key: dict[str, Recorder] = {}
        self.refused: dict[str, str] = {}  # source key → why it has no recorder

    def get(self, key: str) -> Recorder | None:
        return self._by_key.get(key)

    def all(self) -> list[Recorder]:
        return list(self._by_key.values())

    def active_runs(self) -> set[Path]:
        return {r.current_run for r in self._by_key.values() if r.current_run is not None}

    def ensure(self, source: VideoSource) -> Recorder | None:
        """The source's recorder, started if it has none (None when over the limit)."""
        recorder = self._by_key.get(source.key)
        if recorder is not None and recorder.running:
            recorder.hello()
            return recorder
        self._by_key.pop(source.key, None)  # ended (offline), its callback not run yet
        if len(self._by_key) >= self.limit:
            why = f"the cloud records {self.limit} cameras already; this one waits for a free slot"
            if self.refused.get(source.key) != why:
                log.warning("%s: not recorded: %s", source.key, why)
            self.refused[source.key] = why
            return None
        self.refused.pop(source.key, None)
        recorder = Recorder(self.app, source, self.index)
        self._by_key[source.key] = recorder
        recorder.start()
        assert recorder.task is not None
        recorder.task.add_done_callback(lambda task: self._ended(recorder, task))
        log.info("%s: recorder started", source.key)
        return recorder

    def _ended(self, recorder: Recorder, task: asyncio.Task[None]) -> None:
        if self._by_key.get(recorder.source.key) is recorder:
            del self._by_key[recorder.source.key]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: recorder died", recorder.source.key, exc_info=task.exception())

    async def stop(self, key: str) -> None:
        self.refused.pop(key, None)
        recorder = self._by_key.pop(key, None)
        if recorder is not None:
            await recorder.stop()

    async def stop_all(self) -> None:
        recorders, self._by_key = list(self._by_key.values()), {}
        await asyncio.gather(*(r.stop() for r in recorders), return_exceptions=True)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
