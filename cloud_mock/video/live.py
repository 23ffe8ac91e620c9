"""Live view (docs/design.md §12.5): one puller per watched source and stream, fanned
out to every viewer's WebSocket, with a keyframe cache for late joiners.

A Hub exists while someone watches (and `linger_s` after the last one left): the first
viewer starts its puller (a tunnel, ffmpeg copying RTSP into fragmented MP4, the
splitter); every viewer gets the status, the init segment, the cached fragments from
the last keyframe and then each new fragment. A viewer that falls more than
VIEWER_QUEUE_BYTES behind is skipped to the next keyframe instead of queueing forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from cloud_mock.video.ffmpeg import Ffmpeg, FfmpegMissing, live_args
from cloud_mock.video.fmp4 import Fmp4Error, Fragment, InitSegment, KeyframeCache, Splitter
from cloud_mock.video.settings import VIDEO_SETTINGS, VideoSettings
from cloud_mock.video.sources import VideoSource
from cloud_mock.video.tunnels import LocalBridge, VideoUnavailable, open_tunnel

log = logging.getLogger(__name__)

VIEWER_QUEUE_BYTES = 4 * 1024 * 1024
MAX_HUBS = 256  # streams watched at once, in all
MAX_VIEWERS = 64  # per stream
HEALTHY_AFTER_S = 30.0  # a pull that lasted this long resets the backoff

Message = str | bytes


class Viewer:
    """One browser (or API client) watching: a bounded queue drained into its socket."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: deque[Message] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._needs_keyframe = False
        self.skipped = 0  # fragments dropped because this viewer fell behind

    def send_json(self, message: dict[str, Any]) -> None:
        self._put(json.dumps(message, separators=(",", ":")))

    def send_init(self, init: InitSegment) -> None:
        self._put(init.data)
        self._needs_keyframe = True  # fragments only from a keyframe on, after an init

    def send_fragment(self, fragment: Fragment) -> None:
        if self._needs_keyframe and not fragment.keyframe:
            self.skipped += 1
            return
        if self._queued_bytes + len(fragment.data) > VIEWER_QUEUE_BYTES:
            # Behind by megabytes: what is queued is stale anyway. Keep the text messages,
            # drop the media, and start again at the next keyframe.
            self._drop_media()
            self._needs_keyframe = True
            self.skipped += 1
            return
        self._needs_keyframe = False
        self._put(fragment.data)

    def _drop_media(self) -> None:
        kept: deque[Message] = deque(m for m in self._queue if isinstance(m, str))
        self.skipped += len(self._queue) - len(kept)
        self._queue = kept
        self._queued_bytes = sum(len(m) for m in kept)

    def _put(self, message: Message) -> None:
        self._queue.append(message)
        self._queued_bytes += len(message)
        self._wake.set()

    async def pump(self) -> None:
        """Send what is queued until the socket closes."""
        while not self.ws.closed:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                message = self._queue.popleft()
                self._queued_bytes -= len(message)
                if isinstance(message, str):
                    await self.ws.send_str(message)
                else:
                    await self.ws.send_bytes(message)


class Hub:
    """One watched stream of one source: its puller, its viewers, its cache."""

    def __init__(
        self,
        app: web.Application,
        source: VideoSource,
        stream: str,
        on_idle: Callable[[Hub], None],
    ) -> None:
        self.app = app
        self.source = source
        self.stream = stream
        self.settings: VideoSettings = app[VIDEO_SETTINGS]
        self.viewers: set[Viewer] = set()
        self.status: dict[str, Any] = _status("connecting", "opening the camera's stream")
        self.init: InitSegment | None = None
        self.cache = KeyframeCache()
        self.fragments_seen = 0
        self._on_idle = on_idle
        self._puller: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self.listeners: list[Callable[[Hub], None]] = []  # told of each keyframe fragment

    @property
    def key(self) -> tuple[str, str]:
        return (self.source.key, self.stream)

    @property
    def running(self) -> bool:
        return self._puller is not None and not self._puller.done()

    def join(self, viewer: Viewer) -> None:
        if len(self.viewers) >= MAX_VIEWERS:
            raise VideoUnavailable(f"{MAX_VIEWERS} viewers watch this stream already")
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self.viewers.add(viewer)
        viewer.send_json(self.status)
        if self.init is not None:
            viewer.send_json(_init_message(self.init))
            viewer.send_init(self.init)
            for fragment in self.cache.fragments():
                viewer.send_fragment(fragment)
        if not self.running:
            self._puller = asyncio.create_task(self._pull_forever(), name=f"puller {self.key}")

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers and self._linger is None:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(self.settings.linger_s, self._idle)

    def _idle(self) -> None:
        self._linger = None
        if not self.viewers:
            self._on_idle(self)

    async def stop(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._puller is not None:
            self._puller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._puller
            self._puller = None
        log.info("%s %s: puller stopped", self.source.key, self.stream)

    # -- what the puller reports -------------------------------------------------------

    def publish_status(self, state: str, message: str, code: str | None = None) -> None:
        self.status = _status(state, message, code)
        for viewer in self.viewers:
            viewer.send_json(self.status)

    def publish_init(self, init: InitSegment) -> None:
        self.init = init
        self.cache = KeyframeCache()
        for viewer in self.viewers:
            viewer.send_json(_init_message(init))
            viewer.send_init(init)

    def publish_fragment(self, fragment: Fragment) -> None:
        self.fragments_seen += 1
        self.cache.add(fragment)
        for viewer in self.viewers:
            viewer.send_fragment(fragment)
        if fragment.keyframe:
            for listener in list(self.listeners):
                listener(self)

    # -- the puller --------------------------------------------------------------------

    async def _pull_forever(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                why = await self._pull_once()
            except UnsupportedCodec as exc:
                self.publish_status("error", str(exc), code="unsupported_codec")
                return  # a restart cannot change the codec; the next viewer tries again
            except FfmpegMissing as exc:
                self.publish_status("error", str(exc), code="no_ffmpeg")
                return
            except (VideoUnavailable, Fmp4Error) as exc:
                why = str(exc)
            if loop.time() - started >= HEALTHY_AFTER_S:
                failures = 0
            failures += 1
            delay = min(self.settings.retry_max_s, 2.0 ** (failures - 1))
            log.info("%s %s: %s; retrying in %g s", self.source.key, self.stream, why, delay)
            self.publish_status("retrying", f"{why}; trying again in {delay:g} s")
            await asyncio.sleep(delay)
            self.publish_status("connecting", "opening the camera's stream")

    async def _pull_once(self) -> str:
        tunnel = await open_tunnel(self.app, self.source.peer_id, self.source.target(self.stream))
        bridge = LocalBridge(tunnel)
        try:
            port = await bridge.start()
            ffmpeg = Ffmpeg(live_args(self.settings.ffmpeg, tunnel.grant.url(port)))
            await ffmpeg.start()
            try:
                stalled = await self._read(ffmpeg, Splitter())
                return stalled or ffmpeg.why(await ffmpeg.wait())
            finally:
                await ffmpeg.stop()
        finally:
            await bridge.close()

    async def _read(self, ffmpeg: Ffmpeg, splitter: Splitter) -> str | None:
        """Feed ffmpeg's output to the viewers until it ends (None) or stalls (why)."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        stall_s = self.settings.stall_s

        def feed(chunk: bytes) -> None:
            nonlocal last
            last = loop.time()
            self._feed(splitter, chunk)

        reading = asyncio.ensure_future(ffmpeg.read_stdout(feed))
        try:
            while True:
                await asyncio.wait({reading}, timeout=max(0.0, last + stall_s - loop.time()))
                if reading.done():
                    reading.result()  # UnsupportedCodec, Fmp4Error: the caller's to handle
                    return None
                if loop.time() - last >= stall_s:
                    return f"no video from the camera for {stall_s:g} s"
        finally:
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading

    def _feed(self, splitter: Splitter, chunk: bytes) -> None:
        for item in splitter.feed(chunk):
            if isinstance(item, InitSegment):
                if not item.is_h264:
                    raise UnsupportedCodec(_codec_problem(item))
                log.info(
                    "%s %s: playing %s %dx%d",
                    self.source.key,
                    self.stream,
                    item.mime_codec,
                    item.width,
                    item.height,
                )
                self.publish_init(item)
                self.publish_status("playing", f"{item.width}x{item.height} H.264")
            else:
                self.publish_fragment(item)


class UnsupportedCodec(Exception):
    pass


_CODEC_NAMES = {"hvc1": "H.265", "hev1": "H.265", "mp4v": "MPEG-4 Part 2", "mjpa": "MJPEG"}


def _codec_problem(init: InitSegment) -> str:
    name = _CODEC_NAMES.get(init.codec, init.codec)
    return (
        f"this camera sends {name} ({init.codec}), which browsers cannot play; "
        "set its stream to H.264"
    )


def _status(state: str, message: str, code: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"type": "status", "state": state, "message": message}
    if code is not None:
        status["code"] = code
    return status


def _init_message(init: InitSegment) -> dict[str, Any]:
    return {"type": "init", "mime": init.mime(), "width": init.width, "height": init.height}


class Hubs:
    """Every live Hub, by (source, stream); bounded."""

    def __init__(self) -> None:
        self._hubs: dict[tuple[str, str], Hub] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def get(self, source: VideoSource, stream: str) -> Hub | None:
        return self._hubs.get((source.key, stream))

    def of_source(self, source: VideoSource) -> list[Hub]:
        return [hub for (key, _), hub in self._hubs.items() if key == source.key]

    def hub(self, app: web.Application, source: VideoSource, stream: str) -> Hub:
        hub = self._hubs.get((source.key, stream))
        if hub is None:
            if len(self._hubs) >= MAX_HUBS:
                raise VideoUnavailable(f"the cloud streams {MAX_HUBS} cameras already")
            hub = Hub(app, source, stream, self._retire)
            self._hubs[hub.key] = hub
        return hub

    def _retire(self, hub: Hub) -> None:
        task = asyncio.create_task(self.retire(hub))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def retire(self, hub: Hub) -> None:
        """Stop the hub's puller and close its viewers (the source went, or no one
        watches)."""
        if self._hubs.get(hub.key) is hub:
            del self._hubs[hub.key]
        await hub.stop()
        for viewer in list(hub.viewers):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await viewer.ws.close(code=1001, message=b"this camera is gone")

    async def stop_all(self) -> None:
        hubs, self._hubs = list(self._hubs.values()), {}
        await asyncio.gather(*(hub.stop() for hub in hubs), *self._stopping)
        for hub in hubs:
            for viewer in list(hub.viewers):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await viewer.ws.close(code=1001, message=b"the cloud is shutting down")


HUBS = web.AppKey("live_hubs", Hubs)


async def watch(request: web.Request, source: VideoSource, stream: str) -> web.WebSocketResponse:
    """Serve one viewer until it leaves (the route's handler after its checks)."""
    app = request.app
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
    await ws.prepare(request)
    viewer = Viewer(ws)
    try:
        hub = app[HUBS].hub(app, source, stream)
        hub.join(viewer)
    except VideoUnavailable as exc:
        await ws.send_json(_status("error", str(exc), code="busy"))
        await ws.close()
        return ws
    pump = asyncio.create_task(viewer.pump())
    try:
        async for _ in ws:  # a viewer sends nothing; this waits for it to leave
            pass
    finally:
        hub.leave(viewer)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await pump
    return ws
