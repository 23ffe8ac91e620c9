"""The video routes of the user API (docs/design.md §12.5) and their wiring: the same
handlers serve a camera (`/v1/cameras/{id}/…`) and an NVR's camera
(`/v1/registrators/{id}/cameras/{name}/…`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from cloud_mock.api import ApiError
from cloud_mock.keys import STORE
from cloud_mock.users import require_session
from cloud_mock.video import archive, live, probes, thumbnails, tunnels
from cloud_mock.video.settings import VIDEO_SETTINGS, VideoSettings
from cloud_mock.video.sources import SOURCE_GONE, SourceHooks, VideoSource, source_of

CAMERA = "/v1/cameras/{id}"
NVR_CAMERA = "/v1/registrators/{id}/cameras/{name}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def live_view(request: web.Request) -> web.StreamResponse:
    caller = require_session(request)
    source = source_of(request, caller)
    check_broadcast(request.app, source)
    stream = source.choose(request.app, request.query.get("stream", "auto"))
    return await live.watch(request, source, stream)


def check_broadcast(app: web.Application, source: VideoSource) -> None:
    """An NVR camera streams live only if its registrator's Broadcast step allows it."""
    if source.kind != "nvr_camera":
        return
    registrator = app[STORE].registrators.get_registrator(source.peer_id)
    broadcast = registrator.broadcast if registrator is not None else {}
    allowed = broadcast.get("cameras")
    if isinstance(allowed, list) and source.name not in allowed:
        raise ApiError(
            403, "live view is off for this camera (the registrator's Broadcast settings)"
        )


async def _stop_live(app: web.Application, source: VideoSource) -> None:
    for hub in app[live.HUBS].of_source(source):
        await app[live.HUBS].retire(hub)


async def _stop(app: web.Application) -> None:
    # On shutdown, not at cleanup: handlers holding tunnels and viewers end first.
    await app[live.HUBS].stop_all()


def setup(app: web.Application, settings: VideoSettings | None = None) -> None:
    app[VIDEO_SETTINGS] = settings or VideoSettings.from_env()
    app[live.HUBS] = live.Hubs()
    app[SOURCE_GONE] = SourceHooks()
    app[SOURCE_GONE].add(_stop_live)
    tunnels.setup(app)
    probes.setup(app)
    thumbnails.setup(app)
    archive.setup(app)
    app.on_shutdown.append(_stop)
    for prefix in (CAMERA, NVR_CAMERA):
        app.router.add_get(prefix + "/live", live_view)
        app.router.add_get(prefix + "/thumbnail", thumbnails.thumbnail)
        archive.add_routes(app, prefix)
