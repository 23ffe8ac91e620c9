"""Thumbnails (docs/design.md §12.6): one JPEG per video source, or why there is none.

Each source's picture is DATA_DIR/thumbnails/<source.slug>.jpg (0600, replaced
atomically: a temp file and a rename). It is taken
- after the device's hello (once the hello probe is done, so that a stream the probe
  found not H.264 is not tried) and again every `thumbnail_s` while its channel lasts,
  by one task per device: a camera's own picture, or one of each camera an NVR synced
  (those its Broadcast step lets stream). The camera's `snapshot` target is fetched
  through a tunnel when it has one (the JPEG checked, then scaled like the others),
  else, or when that fails, one frame of `sub` (else `main`) by ffmpeg through a tunnel;
- from a live stream's keyframe cache at most every `live_thumbnail_s` while someone
  watches: a listener on the live Hub, cheap and limiting itself (the hub drops it when
  the hub goes).
At most MAX_JOBS pictures are being taken at once in the whole mock, each within
JOB_TIMEOUT_S, and ffmpeg is always stopped (`thumbnail_io` runs it, fetches snapshots
and keeps the files; this module decides which picture is taken when).

In memory, per source: when its picture was taken (mock clock) and the last failure.
Without a picture, `reason` says why for a person, from what is known now: the device
offline, no video configured, a stream browsers cannot play (the probe's codec or a
live hub's `unsupported_codec`), the last failure, or not yet taken. `at` and `reason`
read memory only: the console's status feed asks twice a second per open page.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from agent.errors import StateError
from cloud_mock.api import ApiError
from cloud_mock.devices_ws import CHANNELS, HELLO_HOOKS, Channel
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.users import require_session
from cloud_mock.video.ffmpeg import fmp4_frame_args, rtsp_frame_args
from cloud_mock.video.live import HUBS, Hub
from cloud_mock.video.probes import PROBES, DeviceTasks, Ended, codec_problem, ended_within, shown
from cloud_mock.video.settings import VIDEO_SETTINGS
from cloud_mock.video.sources import SOURCE_GONE, VideoSource, camera, nvr_cameras, source_of
from cloud_mock.video.thumbnail_io import (
    SNAPSHOT_TIMEOUT_S,
    ThumbnailFailed,
    ffmpeg_jpeg,
    http_jpeg,
    jpeg_frame_args,
    read_picture,
    remove_picture,
    scan_pictures,
    write_picture,
)
from cloud_mock.video.tunnels import LocalBridge, VideoUnavailable, open_tunnel

log = logging.getLogger(__name__)

DIRECTORY = "thumbnails"
MAX_JOBS = 2  # pictures being taken at once, in the whole mock
JOB_TIMEOUT_S = 2 * SNAPSHOT_TIMEOUT_S  # a snapshot, then one frame of a stream
MAX_ERROR = 200
FRAME_STREAMS = ("sub", "main")  # the lighter stream first

OFFLINE = {"camera": "the camera is offline", "nvr_camera": "the NVR is offline"}
NEVER_CONNECTED = "the camera has not connected yet"
NO_VIDEO = {
    "camera": "no video configured on this camera",
    "nvr_camera": "no video configured for this camera on the NVR",
}
OLD_DEVICE = "the device does not say which streams it has (its camagent is older than live video)"
BROADCAST_OFF = "live view is off for this camera (the registrator's Broadcast settings)"
WAITING = "waiting for the first picture"


@dataclass(eq=False)
class SourceState:
    slug: str
    at: float | None = None  # mock-clock time the file was written; None: not this run
    done: float = -math.inf  # loop time the last attempt ended (any kind, any outcome)
    error: str | None = None  # the last attempt's failure; None after a success
    busy: bool = False


def broadcast_allowed(app: web.Application, source: VideoSource) -> bool:
    """Whether the registrator's Broadcast step lets this NVR camera stream (as live
    view checks it); a camera always may."""
    if source.kind != "nvr_camera":
        return True
    registrator = app[STORE].registrators.get_registrator(source.peer_id)
    allowed = registrator.broadcast.get("cameras") if registrator is not None else None
    return not isinstance(allowed, list) or source.name in allowed


def device_sources(app: web.Application, channel: Channel) -> list[VideoSource]:
    """The sources behind one device: a camera itself, or the cameras an NVR synced."""
    store = app[STORE]
    if channel.peer.kind == "camera":
        found = store.devices.get_camera(channel.peer.id)
        return [] if found is None else [camera(found.camera_id, found.org, found.name)]
    registrator = store.registrators.get_registrator(channel.peer.id)
    return [] if registrator is None else nvr_cameras(registrator)


def thumbnail_url(source: VideoSource) -> str:
    if source.kind == "camera":
        return f"/v1/cameras/{source.peer_id}/thumbnail"
    return f"/v1/registrators/{source.peer_id}/cameras/{quote(source.name, safe='')}/thumbnail"


class Thumbnails:
    def __init__(self, app: web.Application) -> None:
        self.directory: Path = app[CONFIG].data_dir / DIRECTORY
        self.settings = app[VIDEO_SETTINGS]
        self.tasks = DeviceTasks("thumbnails")
        self._states: dict[str, SourceState] = {}  # by source key
        self._by_peer: dict[str, set[str]] = {}  # the source keys of each device
        self._restored: dict[str, float] = {}  # slug -> at: pictures of an earlier run
        self._jobs = asyncio.Semaphore(MAX_JOBS)
        self._live: set[asyncio.Task[bool]] = set()

    # -- what the API and the console read (memory only) ---------------------------------

    def path(self, source: VideoSource) -> Path:
        return self.directory / f"{source.slug}.jpg"

    def at(self, source: VideoSource) -> float | None:
        """When the source's picture was taken (mock clock), None if it has none."""
        state = self._states.get(source.key)
        if state is not None and state.at is not None:
            return state.at
        return self._restored.get(source.slug)

    def state(self, source: VideoSource) -> SourceState | None:
        return self._states.get(source.key)

    def reason(self, app: web.Application, source: VideoSource) -> str:
        """Why the source has no picture (meaningful when `at` is None)."""
        blocked = self.blocked(app, source)
        if blocked is not None:
            return blocked
        state = self._states.get(source.key)
        if state is not None and state.error is not None:
            return state.error
        return WAITING

    def blocked(self, app: web.Application, source: VideoSource) -> str | None:
        """Why no picture can be taken now, or None if one can be tried."""
        if not app[CHANNELS].is_online(source.peer_id):
            if source.kind == "camera":
                camera = app[STORE].devices.get_camera(source.peer_id)
                if camera is not None and camera.hello_at is None:
                    return NEVER_CONNECTED
            return OFFLINE[source.kind]
        offered = source.offered(app)
        if offered is None:
            return OLD_DEVICE
        snapshot = source.kind == "camera" and "snapshot" in offered
        streams = [s for s in FRAME_STREAMS if s in offered]
        if not snapshot and not streams:
            return NO_VIDEO[source.kind]
        if not broadcast_allowed(app, source):
            return BROADCAST_OFF
        problems = [stream_problem(app, source, s) for s in streams]
        if not snapshot and all(problems):
            return problems[0]
        return None

    # -- taking pictures ---------------------------------------------------------------

    def _state(self, source: VideoSource) -> SourceState:
        state = self._states.get(source.key)
        if state is None:
            state = self._states[source.key] = SourceState(source.slug)
            self._by_peer.setdefault(source.peer_id, set()).add(source.key)
        return state

    async def take(
        self,
        app: web.Application,
        source: VideoSource,
        grab: Callable[[], Awaitable[bytes]] | None = None,
    ) -> bool:
        """Take the source's picture now (`grab`, else through a tunnel); whether one was
        stored. Failures are kept as the source's error, never raised."""
        state = self._state(source)
        if state.busy:
            return False
        state.busy = True
        try:
            async with self._jobs:
                try:
                    async with asyncio.timeout(JOB_TIMEOUT_S):
                        jpeg = await (grab() if grab is not None else self._grab(app, source))
                except TimeoutError:
                    raise ThumbnailFailed(f"no picture within {JOB_TIMEOUT_S:g} s") from None
            await self._save(app, source, state, jpeg)
        except ThumbnailFailed as exc:
            self._failed(source, state, str(exc))
            return False
        finally:
            state.busy = False
            state.done = asyncio.get_running_loop().time()
        return True

    async def _grab(self, app: web.Application, source: VideoSource) -> bytes:
        offered = source.offered(app) or ()
        failures: list[str] = []
        if source.kind == "camera" and "snapshot" in offered:
            try:
                return await self._snapshot(app, source)
            except (ThumbnailFailed, VideoUnavailable) as exc:
                failures.append(f"snapshot: {exc}")
        streams = [s for s in FRAME_STREAMS if s in offered]
        usable = [s for s in streams if stream_problem(app, source, s) is None]
        if not usable:
            problem = next((p for s in streams if (p := stream_problem(app, source, s))), None)
            failures.append(problem or "no stream to take a picture from")
        for stream in usable:
            try:
                return await self._frame(app, source, stream)
            except (ThumbnailFailed, VideoUnavailable) as exc:
                failures.append(f"{stream}: {exc}" if len(usable) > 1 else str(exc))
        raise ThumbnailFailed("; ".join(failures))

    async def _frame(self, app: web.Application, source: VideoSource, stream: str) -> bytes:
        """One frame of an RTSP stream, through a tunnel, as a JPEG."""
        tunnel = await open_tunnel(app, source.peer_id, source.target(stream))
        bridge = LocalBridge(tunnel)
        try:
            port = await bridge.start()
            if tunnel.grant.scheme not in ("rtsp", "rtsps"):
                raise ThumbnailFailed(f"the device granted {tunnel.grant.scheme} for {stream}")
            argv = rtsp_frame_args(self.settings.ffmpeg, tunnel.grant.url(port))
            return await ffmpeg_jpeg(argv)
        finally:
            await bridge.close()

    async def _snapshot(self, app: web.Application, source: VideoSource) -> bytes:
        """The camera's own JPEG (its `snapshot` target), through a tunnel, scaled."""
        tunnel = await open_tunnel(app, source.peer_id, source.target("snapshot"))
        bridge = LocalBridge(tunnel)
        try:
            port = await bridge.start()
            jpeg = await http_jpeg(tunnel, port)
        finally:
            await bridge.close()
        # Decoded and made small like every other thumbnail: a camera's snapshot may be
        # megabytes, and a list of cameras shows dozens.
        return await ffmpeg_jpeg(jpeg_frame_args(self.settings.ffmpeg), stdin=jpeg)

    async def _save(
        self, app: web.Application, source: VideoSource, state: SourceState, jpeg: bytes
    ) -> None:
        if self._states.get(source.key) is not state:
            return  # the source went while its picture was taken
        path = self.path(source)
        try:
            await asyncio.to_thread(write_picture, path, jpeg)
        except (StateError, OSError) as exc:
            log.error("%s: cannot store its thumbnail: %s", source.key, exc)
            raise ThumbnailFailed("the cloud could not store the picture") from None
        if self._states.get(source.key) is not state:  # gone while it was written
            await asyncio.to_thread(remove_picture, path)
            return
        state.at, state.error = app[CLOCK].now(), None
        self._restored.pop(source.slug, None)
        log.debug("%s: thumbnail taken (%d bytes)", source.key, len(jpeg))

    def _failed(self, source: VideoSource, state: SourceState, message: str) -> None:
        message = shown(message, MAX_ERROR)
        if message != state.error:
            log.info("%s: no thumbnail: %s", source.key, message)
        state.error = message

    # -- per device: after hello, then every thumbnail_s --------------------------------

    def hello(self, app: web.Application, channel: Channel) -> None:
        """HELLO_HOOKS: a fresh picture of each of the device's sources, then a round
        every tick while its channel lasts."""
        for key in self._by_peer.get(channel.peer.id, ()):
            state = self._states.get(key)
            if state is not None:
                state.done = -math.inf  # due now
        if channel.video:  # without video there is nothing to take (reason() says why)
            self.tasks.start(app, channel, self._device_loop)

    async def _device_loop(self, app: web.Application, channel: Channel, ended: Ended) -> None:
        await app[PROBES].first_probe(channel, app[CONFIG].command_timeout_s + 1.0)
        # Ticks often enough to notice a live stream opening and a source due.
        tick = min(self.settings.thumbnail_s, self.settings.live_thumbnail_s)
        while not ended.done():
            try:
                await self._round(app, channel, ended)
            except Exception:
                log.exception("%s: thumbnails failed", channel.device_id)
            if await ended_within(ended, tick):
                return

    async def _round(self, app: web.Application, channel: Channel, ended: Ended) -> None:
        sources = device_sources(app, channel)
        await self._drop_vanished(channel.peer.id, {s.key for s in sources})
        loop = asyncio.get_running_loop()
        for source in sources:
            if ended.done():
                return
            self._listen_live(app, source)
            state = self._states.get(source.key)
            if state is not None and loop.time() - state.done < self.settings.thumbnail_s:
                continue
            if self.blocked(app, source) is None:
                await self.take(app, source)

    async def _drop_vanished(self, peer_id: str, current: set[str]) -> None:
        """Forget the sources a device no longer has (an NVR camera Sync dropped)."""
        for key in list(self._by_peer.get(peer_id, set()) - current):
            state = self._states.get(key)
            if state is not None:
                await self._forget(peer_id, key, state.slug)

    # -- from live streams ---------------------------------------------------------------

    def _listen_live(self, app: web.Application, source: VideoSource) -> None:
        for hub in app[HUBS].of_source(source):
            if not any(isinstance(listener, LiveGrabber) for listener in hub.listeners):
                hub.listeners.append(LiveGrabber(self, app))

    def live_take(self, app: web.Application, hub: Hub, data: bytes) -> bool:
        """Start a picture from a live keyframe unless one is being taken; whether it was."""
        state = self._state(hub.source)
        if state.busy or self._jobs.locked():
            return False
        argv = fmp4_frame_args(self.settings.ffmpeg)
        task = asyncio.create_task(
            self.take(app, hub.source, lambda: ffmpeg_jpeg(argv, stdin=data)),
            name=f"live thumbnail {hub.source.key}",
        )
        self._live.add(task)
        task.add_done_callback(self._live_done)
        return True

    def _live_done(self, task: asyncio.Task[bool]) -> None:
        self._live.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a live thumbnail failed", exc_info=task.exception())

    # -- sources going, startup, shutdown -----------------------------------------------

    async def gone(self, app: web.Application, source: VideoSource) -> None:
        """SOURCE_GONE: its picture and state go."""
        await self._forget(source.peer_id, source.key, source.slug)

    async def _forget(self, peer_id: str, key: str, slug: str) -> None:
        self._states.pop(key, None)
        self._restored.pop(slug, None)
        keys = self._by_peer.get(peer_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_peer[peer_id]
        await asyncio.to_thread(remove_picture, self.directory / f"{slug}.jpg")

    async def load(self, app: web.Application) -> None:
        """on_startup: the pictures an earlier run left (their times from the files)."""
        try:
            self._restored = await asyncio.to_thread(
                scan_pictures, self.directory, app[CLOCK].offset
            )
        except OSError as exc:  # each picture taken will say so again
            log.error("thumbnails: cannot use %s: %s", self.directory, exc)

    async def stop(self) -> None:
        live = list(self._live)
        for task in live:
            task.cancel()
        await asyncio.gather(self.tasks.stop_all(), *live, return_exceptions=True)


class LiveGrabber:
    """A Hub listener: a picture from the keyframe cache at most every live_thumbnail_s.
    Holds nothing of the stream; the hub drops it with itself."""

    def __init__(self, thumbnails: Thumbnails, app: web.Application) -> None:
        self.thumbnails = thumbnails
        self.app = app
        self.next_at = -math.inf

    def __call__(self, hub: Hub) -> None:
        now = asyncio.get_running_loop().time()
        if now < self.next_at or hub.init is None:
            return
        keyframe = hub.cache.keyframe()
        if keyframe is None:
            return
        try:
            started = self.thumbnails.live_take(self.app, hub, hub.init.data + keyframe.data)
        except Exception:  # called by the puller: its stream must not suffer from this
            log.exception("%s: a live thumbnail could not start", hub.source.key)
            started = False
        if started:
            self.next_at = now + self.thumbnails.settings.live_thumbnail_s


def stream_problem(app: web.Application, source: VideoSource, stream: str) -> str | None:
    """Why a browser cannot play this stream (a live hub said so, or the probe's codec)."""
    hub = app[HUBS].get(source, stream)
    if hub is not None and hub.status.get("code") == "unsupported_codec":
        return str(hub.status.get("message"))
    result = app[PROBES].result(source.peer_id)
    probed = result.stream(source, stream) if result is not None else None
    return codec_problem(probed.codec) if probed is not None else None


# -- the route --------------------------------------------------------------------------


async def thumbnail(request: web.Request) -> web.Response:
    """`GET …/thumbnail`: the newest picture, or 404 no_thumbnail with the reason."""
    caller = require_session(request)
    source = source_of(request, caller)
    app = request.app
    thumbnails = app[THUMBNAILS]
    if not broadcast_allowed(app, source):
        raise ApiError(404, "no_thumbnail", extra={"reason": BROADCAST_OFF})
    data = await asyncio.to_thread(read_picture, thumbnails.path(source))
    if data is None:
        raise ApiError(404, "no_thumbnail", extra={"reason": thumbnails.reason(app, source)})
    tag = hashlib.sha256(data).hexdigest()[:32]
    headers = {"Cache-Control": "no-cache", "ETag": f'"{tag}"'}
    at = thumbnails.at(source)
    if at is not None:
        headers["Last-Modified"] = email.utils.formatdate(at, usegmt=True)
    if any(etag.value in (tag, "*") for etag in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="image/jpeg", headers=headers)


THUMBNAILS = web.AppKey("video_thumbnails", Thumbnails)


async def _gone(app: web.Application, source: VideoSource) -> None:
    await app[THUMBNAILS].gone(app, source)


async def _load(app: web.Application) -> None:
    await app[THUMBNAILS].load(app)


async def _stop(app: web.Application) -> None:
    await app[THUMBNAILS].stop()


def setup(app: web.Application) -> None:
    """After probes.setup (the first picture waits for the hello probe)."""
    thumbnails = app[THUMBNAILS] = Thumbnails(app)
    app[HELLO_HOOKS].add(thumbnails.hello)
    app[SOURCE_GONE].add(_gone)
    app.on_startup.append(_load)
    app.on_shutdown.append(_stop)
