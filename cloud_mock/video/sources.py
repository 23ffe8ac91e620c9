"""Video sources (docs/design.md §12.5): a camera, or one camera of an NVR, reached
through its device's tunnel; found from a request, within the caller's organization."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from cloud_mock.api import ApiError
from cloud_mock.devices_ws import CHANNELS
from cloud_mock.keys import STORE
from cloud_mock.store import Registrator
from cloud_mock.users import Caller

log = logging.getLogger(__name__)

STREAMS = ("main", "sub")


@dataclass(frozen=True)
class VideoSource:
    kind: Literal["camera", "nvr_camera"]
    org: str
    peer_id: str  # whose control channel: the camera's or the NVR's (registrator) id
    name: str  # the camera's name; for an NVR camera its `[[nvr.cameras]]` name
    prefix: str = ""  # "<name>/" for an NVR camera: its targets are the NVR's

    @property
    def key(self) -> str:
        """Stable and unique: what the mock's tables and directories are keyed by."""
        if self.kind == "camera":
            return f"camera/{self.peer_id}"
        return f"nvr/{self.peer_id}/{self.name}"

    @property
    def slug(self) -> str:
        """`key` as a file name: NVR camera names may hold anything but "/"."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]

    def target(self, stream: str) -> str:
        return self.prefix + stream

    def offered(self, app: web.Application) -> tuple[str, ...] | None:
        """The streams (`main`, `sub`, `snapshot`) the device said it has, None if unknown
        (offline, or a device that does not say)."""
        channel = app[CHANNELS].get(self.peer_id)
        if channel is None or channel.video is None:
            return None
        return tuple(t[len(self.prefix) :] for t in channel.video if t.startswith(self.prefix))

    def choose(self, app: web.Application, wanted: str) -> str:
        """The stream to pull for `wanted` (auto|main|sub): auto prefers the substream."""
        if wanted not in ("auto", *STREAMS):
            raise ApiError(400, "stream must be auto, main or sub")
        offered = self.offered(app)
        if wanted != "auto":
            if offered is not None and wanted not in offered:
                raise ApiError(404, f"this camera has no {wanted} stream")
            return wanted
        if offered is not None and "sub" in offered:
            return "sub"
        return "main"


def camera_source(request: web.Request, caller: Caller) -> VideoSource:
    camera = request.app[STORE].devices.get_camera(request.match_info["id"])
    if camera is None or camera.org != caller.user.org:
        raise ApiError(404, "no such camera")
    return VideoSource("camera", camera.org, camera.camera_id, camera.name)


def nvr_camera_source(request: web.Request, caller: Caller) -> VideoSource:
    registrator = request.app[STORE].registrators.get_registrator(request.match_info["id"])
    if registrator is None or registrator.org != caller.user.org:
        raise ApiError(404, "no such registrator")
    name = request.match_info["name"]
    if not any(c.get("name") == name for c in registrator.cameras):
        raise ApiError(404, "the NVR has no camera of that name (Sync imports its cameras)")
    return VideoSource("nvr_camera", registrator.org, registrator.id, name, prefix=name + "/")


def source_of(request: web.Request, caller: Caller) -> VideoSource:
    if "name" in request.match_info:
        return nvr_camera_source(request, caller)
    return camera_source(request, caller)


SourceHook = Callable[[web.Application, VideoSource], Awaitable[None]]


class SourceHooks:
    """What must go when a source goes (a camera deleted, an NVR camera dropped by Sync,
    an NVR deleted): its live streams, thumbnail, recorder, archive and settings."""

    def __init__(self) -> None:
        self._hooks: list[SourceHook] = []

    def add(self, hook: SourceHook) -> None:
        self._hooks.append(hook)

    async def gone(self, app: web.Application, source: VideoSource) -> None:
        for hook in self._hooks:
            try:
                await hook(app, source)
            except Exception:
                log.exception("%s: cleaning up after it failed", source.key)


SOURCE_GONE = web.AppKey("video_source_gone", SourceHooks)


def camera(camera_id: str, org: str, name: str) -> VideoSource:
    return VideoSource("camera", org, camera_id, name)


def nvr_cameras(registrator: Registrator) -> list[VideoSource]:
    return [
        VideoSource("nvr_camera", registrator.org, registrator.id, name, prefix=name + "/")
        for name in (c.get("name") for c in registrator.cameras)
        if isinstance(name, str)
    ]
