"""Registrators (virtual NVRs) of an organization, through the wizard steps of docs/design.md §3:
Details + Device (create, edit), Installation, Activation (the NVR's checks), Connect
(activate a code), Broadcast, Archive, Summary; then Sync and Sync all.

Anyone in the org may look; adding, activating, changing and deleting need the owner
or the manage-registrators permission and a business account; syncing needs the role.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiohttp import web

from agent.config import camera_name_problem
from agent.nvr.settings import without_credentials
from cloud_mock.api import ApiError, get_int, get_str, read_json_object
from cloud_mock.devices_ws import CHANNELS, HELLO_HOOKS, Channel, ChannelClosed
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.nvr import (
    ARCHIVE_DAYS,
    DEFAULT_ARCHIVE,
    DEFAULT_BROADCAST,
    MAX_NAME,
    MAX_NOTE,
    QUALITIES,
    close_channel,
    installation,
    make_room,
    mint_token,
    offer_tokens,
    org_of_body,
    parse_code,
    parse_device,
    registrator_json,
    require_manager,
)
from cloud_mock.store import Activation, Conflict, Link, Registrator
from cloud_mock.store.registrators import secret_hash_of
from cloud_mock.users import Caller, require_session
from cloud_mock.video import archive as video_archive
from cloud_mock.video import sources as video_sources

log = logging.getLogger("cloud_mock.nvr")

MAX_CAMERAS = 1000
MAX_URL = 2048


# --- helpers --------------------------------------------------------------------------------


def _registrator_of(request: web.Request, caller: Caller) -> Registrator:
    registrator = request.app[STORE].get_registrator(request.match_info["id"])
    # Another org's registrator is "not found": its existence is not the caller's business.
    if registrator is None or registrator.org != caller.user.org:
        raise ApiError(404, "no such registrator")
    return registrator


def _fresh(request: web.Request, registrator_id: str) -> Registrator:
    registrator = request.app[STORE].get_registrator(registrator_id)
    if registrator is None:  # deleted while we waited for the NVR
        raise ApiError(404, "no such registrator")
    return registrator


def _answer(request: web.Request, registrator_id: str, **extra: Any) -> web.Response:
    return web.json_response(
        {**registrator_json(request.app, _fresh(request, registrator_id)), **extra}
    )


# --- Details, Device, list, show, delete ----------------------------------------------------


async def create_registrator(request: web.Request) -> web.Response:
    caller = require_session(request)
    data = await read_json_object(request)
    org = org_of_body(data, caller)
    name = get_str(data, "name", max_len=MAX_NAME).strip()
    if not name:
        raise ApiError(400, "field 'name' must not be blank")
    note = get_str(data, "note", required=False, max_len=MAX_NOTE, allow_empty=True)
    device = parse_device(data, "virtual")
    assert device is not None
    require_manager(request, caller, "add NVRs")
    registrator = Registrator(
        id=uuid.uuid4().hex,
        org=org,
        name=name,
        note=note,
        device=device,
        created=request.app[CLOCK].now(),
        broadcast=dict(DEFAULT_BROADCAST),
        archive=dict(DEFAULT_ARCHIVE),
    )
    request.app[STORE].add_registrator(registrator)
    log.info("registrator %s (%r) added to %s", registrator.id, name, org)
    return web.json_response(registrator_json(request.app, registrator), status=201)


async def update_registrator(request: web.Request) -> web.Response:
    caller = require_session(request)
    data = await read_json_object(request)
    registrator = _registrator_of(request, caller)  # after the body: as it is now
    changes: dict[str, Any] = {}
    if data.get("name") is not None:
        name = get_str(data, "name", max_len=MAX_NAME).strip()
        if not name:
            raise ApiError(400, "field 'name' must not be blank")
        changes["name"] = name
    if data.get("note") is not None:
        changes["note"] = get_str(data, "note", max_len=MAX_NOTE, allow_empty=True)
    device = parse_device(data, None)
    if device is not None:
        changes["device"] = device
    require_manager(request, caller, "change NVRs")
    request.app[STORE].update_registrator(registrator.id, **changes)
    return _answer(request, registrator.id)


async def list_registrators(request: web.Request) -> web.Response:
    caller = require_session(request)
    registrators = request.app[STORE].registrators_of(caller.user.org)
    return web.json_response(
        {"registrators": [registrator_json(request.app, r) for r in registrators]}
    )


async def get_registrator(request: web.Request) -> web.Response:
    caller = require_session(request)
    return web.json_response(registrator_json(request.app, _registrator_of(request, caller)))


async def delete_registrator(request: web.Request) -> web.Response:
    caller = require_session(request)
    registrator = _registrator_of(request, caller)
    require_manager(request, caller, "delete NVRs")
    request.app[STORE].delete_registrator(registrator.id, request.app[CLOCK].now())
    close_channel(request.app, registrator.id)
    if registrator.device_id is not None:
        offer_tokens(request.app, registrator.device_id)  # another org's, if one waits
    log.info("registrator %s deleted, token revoked", registrator.id)
    for source in video_sources.nvr_cameras(registrator):
        await request.app[video_sources.SOURCE_GONE].gone(request.app, source)
    return web.Response(status=204)


# --- Installation, Activation, Connect ------------------------------------------------------


async def get_installation(request: web.Request) -> web.Response:
    caller = require_session(request)
    _registrator_of(request, caller)
    return web.json_response(installation(request.app))


def _known_activation(request: web.Request, code: str) -> Activation:
    activation = request.app[STORE].get_activation(code)
    if activation is None:
        raise ApiError(
            404, f"activation code {code} is unknown: check it against the code the NVR shows"
        )
    return activation


def _check_not_expired(request: web.Request, activation: Activation) -> None:
    if request.app[CLOCK].now() >= activation.expires_at:
        raise ApiError(
            410, f"activation code {activation.code} has expired: the NVR shows a new one"
        )


async def get_activation(request: web.Request) -> web.Response:
    """Wizard step Activation: the device-side checks of the NVR that registered a code."""
    caller = require_session(request)
    registrator = _registrator_of(request, caller)
    if "code" not in request.query:
        raise ApiError(400, "query parameter 'code' is required")
    code = parse_code(request.query["code"])
    require_manager(request, caller, "add NVRs")
    activation = _known_activation(request, code)
    activated = activation.activated_at is not None
    if activated and activation.registrator_id != registrator.id:
        raise ApiError(409, f"activation code {code} was already activated")
    if not activated:
        _check_not_expired(request, activation)
    return web.json_response(
        {
            "code": activation.code,
            "device_id": activation.device_id,
            "name": activation.name,
            "version": activation.version,
            "checks": activation.checks,
            "expires_at": activation.expires_at,
            "activated": activated,
        }
    )


async def activate(request: web.Request) -> web.Response:
    """Wizard step Connect: link the NVR that registered `code` to this registrator."""
    caller = require_session(request)
    data = await read_json_object(request)
    registrator = _registrator_of(request, caller)  # after the body: as it is now
    if "code" not in data:
        raise ApiError(400, "field 'code' is required")
    code = parse_code(data["code"])
    require_manager(request, caller, "add NVRs")
    store = request.app[STORE]
    activation = store.get_activation(code)
    if registrator.device_id is not None:
        if activation is not None and activation.registrator_id == registrator.id:
            return _answer(request, registrator.id)  # a repeated click: already done
        raise ApiError(
            409,
            f"registrator {registrator.name!r} is already linked to NVR "
            f"{registrator.device_id}: add another registrator for another NVR",
        )
    activation = _known_activation(request, code)
    if activation.activated_at is not None:
        raise ApiError(409, f"activation code {code} was already activated")
    _check_not_expired(request, activation)
    digest = secret_hash_of(activation.secret)
    make_room(request, activation.device_id, registrator.org, digest)
    token, jti = mint_token(
        request,
        device_id=activation.device_id,
        org=registrator.org,
        registrator_id=registrator.id,
    )
    now = request.app[CLOCK].now()
    link = Link(
        activation.device_id,
        activation.name,
        activation.version,
        activation.checks,
        jti,
        now,
        digest,
    )
    try:
        store.link_by_code(registrator.id, code, link, token, now)
    except Conflict as error:
        raise ApiError(409, str(error)) from None
    # The token waits for the NVR under the code's secret; offered now (unless another
    # organization's waits for an NVR of this device ID: then in turn), the NVR's held
    # poll re-checks at once and gets it.
    woken = offer_tokens(request.app, activation.device_id)
    log.info(
        "registrator %s linked to NVR %s by code %s (%d waiting poll(s) woken)",
        registrator.id,
        activation.device_id,
        code,
        woken,
    )
    return _answer(request, registrator.id)


# --- Broadcast, Archive: stored, and sent to the NVR with `configure` -----------------------


def _configure_args(registrator: Registrator) -> dict[str, Any]:
    return {"broadcast": registrator.broadcast, "archive": registrator.archive}


async def _deliver(app: web.Application, channel: Channel) -> tuple[bool, Any]:
    """Send the registrator's settings; clear its pending flag if they are still current.
    ChannelClosed, TimeoutError."""
    store = app[STORE]
    registrator = store.get_registrator(channel.peer.id)
    if registrator is None:
        raise ChannelClosed
    args = _configure_args(registrator)
    ok, result = await channel.command("configure", args, app[CONFIG].command_timeout_s)
    current = store.get_registrator(registrator.id)
    if current is not None and _configure_args(current) == args:
        store.update_registrator(registrator.id, pending_configure=False)
    return ok, result


async def _store_and_apply(
    request: web.Request, registrator: Registrator, **changes: Any
) -> web.Response:
    store = request.app[STORE]
    store.update_registrator(registrator.id, pending_configure=True, **changes)
    channel = request.app[CHANNELS].get(registrator.id)
    if channel is None:
        return _answer(
            request,
            registrator.id,
            applied=False,
            reason="NVR is offline: the settings are sent when it connects",
        )
    try:
        ok, result = await _deliver(request.app, channel)
    except (ChannelClosed, TimeoutError):
        return _answer(
            request,
            registrator.id,
            applied=False,
            reason="NVR did not answer: the settings are sent when it connects again",
        )
    if not ok:
        return _answer(
            request,
            registrator.id,
            applied=False,
            result=result,
            reason="the NVR refused the settings",
        )
    return _answer(request, registrator.id, applied=True, result=result)


def _enabled(data: dict[str, Any]) -> bool:
    enabled = data.get("enabled")
    if not isinstance(enabled, bool):
        raise ApiError(400, "field 'enabled' must be true or false")
    return enabled


async def set_broadcast(request: web.Request) -> web.Response:
    caller = require_session(request)
    data = await read_json_object(request)
    registrator = _registrator_of(request, caller)  # after the body: as it is now
    enabled = _enabled(data)
    quality = data.get("quality", registrator.broadcast.get("quality", "medium"))
    if quality not in QUALITIES:
        raise ApiError(400, f"field 'quality' must be one of {', '.join(QUALITIES)}")
    cameras = _broadcast_cameras(data, registrator)
    require_manager(request, caller, "change NVRs")
    broadcast: dict[str, Any] = {"enabled": enabled, "quality": quality}
    if cameras is not None:
        broadcast["cameras"] = cameras
    return await _store_and_apply(request, registrator, broadcast=broadcast)


def _broadcast_cameras(data: dict[str, Any], registrator: Registrator) -> list[str] | None:
    """`cameras`: the NVR cameras that may stream live (names); absent or null: all."""
    if "cameras" not in data:
        kept = registrator.broadcast.get("cameras")
        return list(kept) if isinstance(kept, list) else None
    cameras = data["cameras"]
    if cameras is None:
        return None
    if (
        not isinstance(cameras, list)
        or len(cameras) > MAX_CAMERAS
        or not all(isinstance(c, str) and 0 < len(c) <= MAX_NAME for c in cameras)
    ):
        raise ApiError(400, "field 'cameras' must be a list of camera names, or null for all")
    return list(dict.fromkeys(cameras))


async def set_archive(request: web.Request) -> web.Response:
    caller = require_session(request)
    data = await read_json_object(request)
    registrator = _registrator_of(request, caller)  # after the body: as it is now
    enabled = _enabled(data)
    days = registrator.archive.get("days", DEFAULT_ARCHIVE["days"])
    if "days" in data:
        days = get_int(data, "days", minimum=ARCHIVE_DAYS[0], maximum=ARCHIVE_DAYS[1])
    require_manager(request, caller, "change NVRs")
    archive = {"enabled": enabled, "days": days}
    response = await _store_and_apply(request, registrator, archive=archive)
    await video_archive.apply_registrator_archive(request.app, _fresh(request, registrator.id))
    return response


def _token_collected(app: web.Application, channel: Channel) -> None:
    """Hello hook: an NVR that connects has its token; it waits no more, and the next
    one waiting for this device ID (another organization's) may be offered."""
    if channel.peer.kind != "nvr":
        return
    device_id = app[STORE].nvr_token_collected(channel.peer.id)
    if device_id is not None:
        offer_tokens(app, device_id)


def _push_pending_settings(app: web.Application, channel: Channel) -> None:
    """Hello hook: settings changed while the NVR was away go to it now."""
    if channel.peer.kind != "nvr":
        return
    registrator = app[STORE].get_registrator(channel.peer.id)
    if registrator is None or not registrator.pending_configure:
        return
    app[TASKS].start(_push(app, channel))


async def _push(app: web.Application, channel: Channel) -> None:
    try:
        ok, result = await _deliver(app, channel)
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


# --- Summary --------------------------------------------------------------------------------


async def get_summary(request: web.Request) -> web.Response:
    caller = require_session(request)
    registrator = _registrator_of(request, caller)
    body = registrator_json(request.app, registrator)
    waiting_for = []
    if registrator.device_id is None:
        waiting_for.append("activation: enter the code the NVR shows, or register it with a token")
    elif body["status"] == "pending":
        waiting_for.append("the NVR to connect")
    if registrator.pending_configure:
        waiting_for.append("the NVR to take the broadcast and archive settings")
    return web.json_response(
        {
            **body,
            "installation": installation(request.app),
            "ready": registrator.device_id is not None,
            "waiting_for": waiting_for,
        }
    )


# --- Sync, Sync all -------------------------------------------------------------------------


def _cameras_from(data: Any) -> list[dict[str, str]]:
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


async def _sync(app: web.Application, registrator: Registrator) -> list[dict[str, str]]:
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
    cameras = _cameras_from(result)
    store = app[STORE]
    current = store.get_registrator(registrator.id)
    if current is None:
        return cameras
    before = {c.get("name") for c in current.cameras}
    after = {c["name"] for c in cameras}
    store.update_registrator(registrator.id, cameras=cameras)
    log.info("registrator %s synced: %d camera(s)", registrator.id, len(cameras))
    # Cameras gone from the NVR take their live streams, thumbnails and archive along;
    # new ones record as the registrator's Archive step says (§12.6).
    for source in video_sources.nvr_cameras(current):
        if source.name not in after:
            await app[video_sources.SOURCE_GONE].gone(app, source)
    updated = store.get_registrator(registrator.id)
    if updated is not None:
        await video_archive.apply_registrator_archive(app, updated, only=after - before)
    return cameras


async def sync(request: web.Request) -> web.Response:
    caller = require_session(request)
    registrator = _registrator_of(request, caller)
    require_manager(request, caller, "sync NVRs", business=False)
    return web.json_response({"cameras": await _sync(request.app, registrator)})


async def sync_all(request: web.Request) -> web.Response:
    caller = require_session(request)
    require_manager(request, caller, "sync NVRs", business=False)
    registrators = request.app[STORE].registrators_of(caller.user.org)

    async def one(registrator: Registrator) -> dict[str, Any]:
        result: dict[str, Any] = {"id": registrator.id, "name": registrator.name}
        try:
            result.update(ok=True, cameras=await _sync(request.app, registrator))
        except ApiError as error:
            result.update(ok=False, error=error.message)
        return result

    results = await asyncio.gather(*(one(r) for r in registrators))
    return web.json_response({"results": list(results)})


# --- wiring ---------------------------------------------------------------------------------


async def _cancel_tasks(app: web.Application) -> None:
    await app[TASKS].cancel_all()


def setup(app: web.Application) -> None:
    app[TASKS] = Tasks()
    app[HELLO_HOOKS].add(_token_collected)
    app[HELLO_HOOKS].add(_push_pending_settings)
    app.on_shutdown.append(_cancel_tasks)
    router = app.router
    router.add_post("/v1/registrators", create_registrator)
    router.add_get("/v1/registrators", list_registrators)
    router.add_post("/v1/registrators/sync-all", sync_all)
    router.add_get("/v1/registrators/{id}", get_registrator)
    router.add_patch("/v1/registrators/{id}", update_registrator)
    router.add_delete("/v1/registrators/{id}", delete_registrator)
    router.add_get("/v1/registrators/{id}/installation", get_installation)
    router.add_get("/v1/registrators/{id}/activation", get_activation)
    router.add_post("/v1/registrators/{id}/activate", activate)
    router.add_put("/v1/registrators/{id}/broadcast", set_broadcast)
    router.add_put("/v1/registrators/{id}/archive", set_archive)
    router.add_get("/v1/registrators/{id}/summary", get_summary)
    router.add_post("/v1/registrators/{id}/sync", sync)
