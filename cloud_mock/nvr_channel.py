"""What the mock asks of a linked NVR over its control channel (docs/design.md §3):
`configure` (the registrator's Broadcast and Archive settings) and `sync` (its cameras),
and what an NVR's hello sets off: its token counted as collected, and settings changed
while it was away pushed to it.

The routes that start these are in `registrators`; this module answers in ApiError
where a person waits for the result, and logs where nobody does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from agent.config import camera_name_problem
from agent.nvr.settings import without_credentials
from cloud_mock.api import ApiError
from cloud_mock.devices_ws import CHANNELS, HELLO_HOOKS, Channel, ChannelClosed
from cloud_mock.keys import CONFIG, STORE
from cloud_mock.nvr import MAX_NAME, offer_tokens
from cloud_mock.store import Registrator
from cloud_mock.video import archive as video_archive
from cloud_mock.video import sources as video_sources

# The same logger as the registrator routes: one place to read an NVR's story.
log = logging.getLogger(__name__)

MAX_CAMERAS = 1000
MAX_URL = 2048


# --- configure: Broadcast and Archive -------------------------------------------------------


def _configure_args(registrator: Registrator) -> dict[str, Any]:
    return {"broadcast": registrator.broadcast, "archive": registrator.archive}


async def deliver_settings(app: web.Application, channel: Channel) -> tuple[bool, Any]:
    """Send the registrator's settings; clear its pending flag if they are still current.
    ChannelClosed, TimeoutError."""
    store = app[STORE]
    registrator = store.registrators.get_registrator(channel.peer.id)
    if registrator is None:
        raise ChannelClosed
    args = _configure_args(registrator)
    ok, result = await channel.command("configure", args, app[CONFIG].command_timeout_s)
    current = store.registrators.get_registrator(registrator.id)
    if current is not None and _configure_args(current) == args:
        store.registrators.update_registrator(registrator.id, pending_configure=False)
    return ok, result


def token_collected(app: web.Application, channel: Channel) -> None:
    """Hello hook: an NVR that connects has its token; it waits no more, and the next
    one waiting for this device ID (another organization's) may be offered."""
    if channel.peer.kind != "nvr":
        return
    device_id = app[STORE].registrators.nvr_token_collected(channel.peer.id)
    if device_id is not None:
        offer_tokens(app, device_id)


def push_pending_settings(app: web.Application, channel: Channel) -> None:
    """Hello hook: settings changed while the NVR was away go to it now."""
    if channel.peer.kind != "nvr":
        return
    registrator = app[STORE].registrators.get_registrator(channel.peer.id)
    if registrator is None or not registrator.pending_configure:
        return
    app[TASKS].start(_push(app, channel))


async def _push(app: web.Application, channel: Channel) -> None:
    try:
        ok, result = await deliver_settings(app, channel)
    except (ChannelClosed, TimeoutError):
        log.info("%s: pending settings not delivered; next time", channel.device_id)
        return
    log.info("%s: pending settings sent (ok=%s, %r)", channel.device_id, ok, result)


class Tasks:
    """Background tasks of this module, kept referenced and cancelled at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


TASKS = web.AppKey("registrator_tasks", Tasks)


# --- sync -----------------------------------------------------------------------------------


def cameras_from(data: Any) -> list[dict[str, str]]:
    """The camera list of a `sync` result; malformed entries are left out."""
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise ApiError(502, "the NVR's answer to sync has no camera list")
    cameras: list[dict[str, str]] = []
    for item in data["cameras"][:MAX_CAMERAS]:
        if not isinstance(item, dict):
            continue
        name, url = item.get("name"), item.get("url")
        if not isinstance(name, str) or camera_name_problem(name) or len(name) > MAX_NAME:
            continue
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            continue
        if any(c["name"] == name for c in cameras):
            continue
        camera = {"name": name, "url": without_credentials(url)}
        for key in ("sub_url", "onvif_url"):
            value = item.get(key)
            if isinstance(value, str) and value and len(value) <= MAX_URL:
                camera[key] = without_credentials(value)
        cameras.append(camera)
    return cameras


async def sync_cameras(app: web.Application, registrator: Registrator) -> list[dict[str, str]]:
    """Ask the NVR for its cameras and store them (the list is replaced); ApiError."""
    if registrator.device_id is None:
        raise ApiError(409, "no NVR is linked yet: activate one first")
    channel = app[CHANNELS].get(registrator.id)
    if channel is None:
        raise ApiError(409, "NVR is offline")
    timeout = app[CONFIG].command_timeout_s
    try:
        ok, result = await channel.command("sync", {}, timeout)
    except ChannelClosed:
        raise ApiError(409, "NVR disconnected before answering") from None
    except TimeoutError:
        raise ApiError(504, f"NVR did not answer within {timeout:g} s") from None
    if not ok:
        raise ApiError(502, f"the NVR could not list its cameras: {result}")
    cameras = cameras_from(result)
    store = app[STORE]
    current = store.registrators.get_registrator(registrator.id)
    if current is None:
        return cameras
    before = {c.get("name") for c in current.cameras}
    after = {c["name"] for c in cameras}
    store.registrators.update_registrator(registrator.id, cameras=cameras)
    log.info("registrator %s synced: %d camera(s)", registrator.id, len(cameras))
    # Cameras gone from the NVR take their live streams, thumbnails and archive along;
    # new ones record as the registrator's Archive step says (§12.6).
    for source in video_sources.nvr_cameras(current):
        if source.name not in after:
            await app[video_sources.SOURCE_GONE].gone(app, source)
    updated = store.registrators.get_registrator(registrator.id)
    if updated is not None:
        await video_archive.apply_registrator_archive(app, updated, only=after - before)
    return cameras


# --- wiring ---------------------------------------------------------------------------------


async def _cancel_tasks(app: web.Application) -> None:
    await app[TASKS].cancel_all()


def setup(app: web.Application) -> None:
    app[TASKS] = Tasks()
    app[HELLO_HOOKS].add(token_collected)
    app[HELLO_HOOKS].add(push_pending_settings)
    app.on_shutdown.append(_cancel_tasks)
