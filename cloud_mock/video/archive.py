"""The archive (docs/design.md §12.5, §12.6): recording settings per video source, the
recorders, retention, and the routes that show and play what was recorded.

    GET, PUT …/recording                  {mode: "off"|"continuous", retention_days: 1-365}
    GET …/archive?from=&to=               {recording, state, message, spans: [{start, end}]}
    GET …/archive/playlist.m3u8?start=&end=   an HLS VOD playlist of that time
    GET …/archive/files/{run}/{file}      its init.mp4 and seg*.m4s

`…` is `/v1/cameras/{id}` or `/v1/registrators/{id}/cameras/{name}`. Times are Unix
seconds of the mock clock (cloud_mock.video.archive_index, TIMES). The layout on disk,
the recorder and retention are in archive_index.py, recorder.py and retention.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
from collections.abc import Collection, Mapping
from typing import Any

from aiohttp import web

from cloud_mock.api import ApiError, get_int, read_json_object
from cloud_mock.devices_ws import CHANNELS, HELLO_HOOKS, Channel
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.store import Registrator
from cloud_mock.store.video import DEFAULT_RETENTION_DAYS, MODES, Recording
from cloud_mock.users import require_session
from cloud_mock.video import sources
from cloud_mock.video.archive_index import (
    INIT_NAME,
    ArchiveIndex,
    open_file,
    overlapping,
    spans,
    vod_playlist,
)
from cloud_mock.video.recorder import OFF, RETRYING, WAITING, Recorders
from cloud_mock.video.retention import Pruned, Pruner
from cloud_mock.video.settings import VIDEO_SETTINGS
from cloud_mock.video.sources import SOURCE_GONE, VideoSource, source_of

log = logging.getLogger(__name__)

DAY_S = 86_400.0
MAX_SPANS_RANGE_S = 366 * DAY_S  # GET …/archive
MAX_PLAYLIST_RANGE_S = DAY_S  # GET …/archive/playlist.m3u8
MAX_SPANS = 10_000
MAX_SECONDS = 1e11  # Unix seconds beyond year 5000 are a mistake
RETENTION_DAYS = (1, 365)
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


class Archive:
    """The archive of one app: its directory, index, recorders and pruner."""

    def __init__(self, app: web.Application) -> None:
        self.root = app[CONFIG].data_dir / "archive"
        self.index = ArchiveIndex(self.root)
        self.recorders = Recorders(app, self.index)
        self.pruner = Pruner(self.index)
        self.last_prune: Pruned | None = None
        self.maintenance: asyncio.Task[None] | None = None


ARCHIVE = web.AppKey("archive", Archive)


# --- which sources, and starting and stopping their recorders ----------------------------


def parse_key(key: str, org: str) -> VideoSource | None:
    """The source a settings row's key names (without asking whether it still exists)."""
    kind, _, rest = key.partition("/")
    if kind == "camera" and rest:
        return sources.camera(rest, org, "")
    registrator_id, _, name = rest.partition("/")
    if kind == "nvr" and registrator_id and name:
        return VideoSource("nvr_camera", org, registrator_id, name, prefix=name + "/")
    return None


def existing_source(app: web.Application, key: str, org: str) -> VideoSource | None:
    """The source of a settings row if its camera (or NVR camera) still exists."""
    source = parse_key(key, org)
    if source is None:
        return None
    store = app[STORE]
    if source.kind == "camera":
        camera = store.devices.get_camera(source.peer_id)
        return sources.camera(camera.camera_id, camera.org, camera.name) if camera else None
    registrator = store.registrators.get_registrator(source.peer_id)
    if registrator is None:
        return None
    return next((s for s in sources.nvr_cameras(registrator) if s.name == source.name), None)


async def apply_recording(app: web.Application, source: VideoSource, recording: Recording) -> None:
    """Start the source's recorder (if its device is online; else its hello will) or
    stop it: what was recorded stays until retention removes it."""
    recorders = app[ARCHIVE].recorders
    if recording.mode != "continuous":
        await recorders.stop(source.key)
    elif app[CHANNELS].is_online(source.peer_id):
        recorders.ensure(source)


async def apply_registrator_archive(
    app: web.Application, registrator: Registrator, only: Collection[str] | None = None
) -> None:
    """The registrator's Archive step (`archive.enabled`, `archive.days`) as the
    recording of each of its synced cameras (`only` those named: new ones after Sync)."""
    days = registrator.archive.get("days")
    if not isinstance(days, int) or not RETENTION_DAYS[0] <= days <= RETENTION_DAYS[1]:
        days = DEFAULT_RETENTION_DAYS
    mode = "continuous" if registrator.archive.get("enabled") is True else "off"
    recording = Recording(mode, days)
    store, now = app[STORE], app[CLOCK].now()
    for source in sources.nvr_cameras(registrator):
        if only is not None and source.name not in only:
            continue
        store.video.set_recording(source.key, registrator.org, recording, now)
        await apply_recording(app, source, recording)


def _on_hello(app: web.Application, channel: Channel) -> None:
    """Hello hook: the device's sources recording `continuous` start (or retry) now."""
    for row in app[STORE].video.recordings():
        if row.mode != "continuous":
            continue
        parsed = parse_key(row.source, row.org)
        if parsed is None or parsed.peer_id != channel.peer.id:
            continue
        source = existing_source(app, row.source, row.org)
        if source is not None:
            app[ARCHIVE].recorders.ensure(source)


async def _source_gone(app: web.Application, source: VideoSource) -> None:
    archive = app[ARCHIVE]
    await archive.recorders.stop(source.key)
    app[STORE].video.forget(source.key)
    directory = archive.index.source_dir(source.slug)
    await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
    archive.index.forget(directory)
    log.info("%s: recording settings and archive deleted", source.key)


# --- upkeep: retention, and recorders that should run -------------------------------------


async def reconcile(app: web.Application) -> None:
    """Every `continuous` source whose device is online has a recorder (one refused for
    the limit gets its chance here), and no other source has one."""
    recorders = app[ARCHIVE].recorders
    wanted: set[str] = set()
    for row in app[STORE].video.recordings():
        if row.mode != "continuous":
            continue
        wanted.add(row.source)
        source = existing_source(app, row.source, row.org)
        online = source is not None and app[CHANNELS].is_online(source.peer_id)
        if source is not None and online and recorders.get(source.key) is None:
            recorders.ensure(source)
    for recorder in recorders.all():
        if recorder.source.key not in wanted:
            await recorders.stop(recorder.source.key)


def prune(app: web.Application) -> Pruned:
    """One retention pass (mock clock): see cloud_mock.video.retention."""
    archive = app[ARCHIVE]
    retention = {
        s.slug: row.retention_days
        for row in app[STORE].video.recordings()
        if (s := parse_key(row.source, row.org)) is not None
    }
    result = archive.pruner.prune(
        app[CLOCK].now(),
        retention,
        DEFAULT_RETENTION_DAYS,
        app[VIDEO_SETTINGS].archive_max_mb * 1024 * 1024,
        archive.recorders.active_runs(),
    )
    if result.segments or result.runs:
        log.info(
            "archive: %d segment(s) and %d run(s) deleted, %d bytes freed, %d bytes kept",
            result.segments,
            result.runs,
            result.bytes,
            result.total,
        )
    archive.last_prune = result
    return result


async def _maintain(app: web.Application) -> None:
    while True:
        await asyncio.sleep(app[VIDEO_SETTINGS].prune_s)
        try:
            await reconcile(app)
            prune(app)
        except Exception:  # logged; the next pass tries again
            log.exception("archive upkeep failed")


async def _start(app: web.Application) -> None:
    archive = app[ARCHIVE]
    archive.root.mkdir(mode=0o700, exist_ok=True)
    archive.root.chmod(0o700)
    archive.maintenance = asyncio.create_task(_maintain(app), name="archive upkeep")


async def _stop(app: web.Application) -> None:
    # On shutdown, not at cleanup: the tunnels' handlers must end before the server does.
    archive = app[ARCHIVE]
    if archive.maintenance is not None:
        archive.maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await archive.maintenance
    await archive.recorders.stop_all()


# --- routes -----------------------------------------------------------------------------


def _recording_body(data: Mapping[str, Any]) -> Recording:
    for name in data:
        if name not in ("mode", "retention_days"):
            raise ApiError(400, f"unknown field {name!r}: send mode and retention_days")
    if "mode" not in data:
        raise ApiError(400, "field 'mode' is required")
    mode = data["mode"]
    if not isinstance(mode, str) or mode not in MODES:
        raise ApiError(400, "field 'mode' must be one of off, continuous")
    if "retention_days" not in data:
        raise ApiError(400, "field 'retention_days' is required")
    days = get_int(data, "retention_days", minimum=RETENTION_DAYS[0], maximum=RETENTION_DAYS[1])
    return Recording(mode, days)


async def get_recording(request: web.Request) -> web.Response:
    source = source_of(request, require_session(request))
    return web.json_response(request.app[STORE].video.recording(source.key).to_json())


async def put_recording(request: web.Request) -> web.Response:
    caller = require_session(request)
    source = source_of(request, caller)
    if not caller.may_change():
        raise ApiError(
            403, f"role {caller.user.role!r} may look at cameras but not change their recording"
        )
    recording = _recording_body(await read_json_object(request))
    app = request.app
    app[STORE].video.set_recording(source.key, source.org, recording, app[CLOCK].now())
    await apply_recording(app, source, recording)
    log.info("%s: recording %s, %d day(s)", source.key, recording.mode, recording.retention_days)
    return web.json_response(recording.to_json())


def state_of(app: web.Application, source: VideoSource, recording: Recording) -> tuple[str, str]:
    """(state, message) for the API: recording, off, retrying or waiting."""
    if recording.mode != "continuous":
        return OFF, "recording is off"
    if not app[CHANNELS].is_online(source.peer_id):
        return WAITING, "the device is offline; recording starts when it connects"
    recorders = app[ARCHIVE].recorders
    recorder = recorders.get(source.key)
    if recorder is not None:
        return recorder.state, recorder.message
    refused = recorders.refused.get(source.key)
    return RETRYING, refused or "the recorder is starting"


def _seconds(query: Mapping[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise ApiError(400, f"query parameter {name!r} must be Unix seconds (0 to {MAX_SECONDS:g})")
    return value


def time_range(
    request: web.Request, lo_name: str, hi_name: str, longest: float
) -> tuple[float, float]:
    """[lo, hi] from the query: `hi` defaults to now, `lo` to 24 h before `hi`."""
    hi = _seconds(request.query, hi_name)
    lo = _seconds(request.query, lo_name)
    if hi is None:
        hi = request.app[CLOCK].now()
    if lo is None:
        lo = hi - DAY_S
    if lo >= hi:
        raise ApiError(400, f"query parameter {lo_name!r} must be before {hi_name!r}")
    if hi - lo > longest:
        raise ApiError(
            400, f"from {lo_name!r} to {hi_name!r} may be at most {longest / DAY_S:g} day(s)"
        )
    return lo, hi


async def get_archive(request: web.Request) -> web.Response:
    source = source_of(request, require_session(request))
    lo, hi = time_range(request, "from", "to", MAX_SPANS_RANGE_S)
    app = request.app
    recording = app[STORE].video.recording(source.key)
    state, message = state_of(app, source, recording)
    index = app[ARCHIVE].index
    found = spans(overlapping(index.runs(index.source_dir(source.slug)), lo, hi))
    shown = [
        {"start": round(max(start, lo), 3), "end": round(min(end, hi), 3)}
        for start, end in found[:MAX_SPANS]
    ]
    return web.json_response(
        {
            "recording": recording.to_json(),
            "state": state,
            "message": message,
            "from": lo,
            "to": hi,
            "spans": shown,
        }
    )


async def get_playlist(request: web.Request) -> web.Response:
    source = source_of(request, require_session(request))
    lo, hi = time_range(request, "start", "end", MAX_PLAYLIST_RANGE_S)
    index = request.app[ARCHIVE].index
    segments = overlapping(index.runs(index.source_dir(source.slug)), lo, hi)
    if not segments:
        raise ApiError(404, "nothing of this camera was recorded in that time")
    return web.Response(
        text=vod_playlist(segments),
        content_type=PLAYLIST_TYPE,
        headers={"Cache-Control": "no-store"},
    )


async def get_file(request: web.Request) -> web.Response:
    source = source_of(request, require_session(request))
    run, name = request.match_info["run"], request.match_info["file"]
    root = request.app[ARCHIVE].root
    data = await asyncio.to_thread(open_file, root, source.slug, run, name)
    if data is None:
        raise ApiError(404, "no such archive file")
    return web.Response(
        body=data,
        content_type="video/mp4" if name == INIT_NAME else "video/iso.segment",
        headers={"Cache-Control": "private, max-age=3600"},
    )


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(prefix + "/recording", get_recording)
    app.router.add_put(prefix + "/recording", put_recording)
    app.router.add_get(prefix + "/archive", get_archive)
    app.router.add_get(prefix + "/archive/playlist.m3u8", get_playlist)
    app.router.add_get(prefix + "/archive/files/{run}/{file}", get_file)


def setup(app: web.Application) -> None:
    app[ARCHIVE] = Archive(app)
    app[HELLO_HOOKS].add(_on_hello)
    app[SOURCE_GONE].add(_source_gone)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
