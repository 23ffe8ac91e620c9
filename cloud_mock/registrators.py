"""Registrators (virtual NVRs) of an organization, through the wizard steps of docs/design.md §3:
Details + Device (create, edit), Installation, Activation (the NVR's checks), Connect
(activate a code), Broadcast, Archive, Summary; then Sync and Sync all.

Anyone in the org may look; adding, activating, changing and deleting need the owner
or the manage-registrators permission and a business account; syncing needs the role.
What is said to the NVR itself (`configure`, `sync`, its hello) is in `nvr_channel`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiohttp import web

from cloud_mock import nvr_channel
from cloud_mock.api import ApiError, get_int, get_str, read_json_object
from cloud_mock.devices_ws import CHANNELS, ChannelClosed
from cloud_mock.keys import CLOCK, STORE
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

log = logging.getLogger(__name__)


# --- helpers --------------------------------------------------------------------------------


def _registrator_of(request: web.Request, caller: Caller) -> Registrator:
    registrator = request.app[STORE].registrators.get_registrator(request.match_info["id"])
    # Another org's registrator is "not found": its existence is not the caller's business.
    if registrator is None or registrator.org != caller.user.org:
        raise ApiError(404, "no such registrator")
    return registrator


def _fresh(request: web.Request, registrator_id: str) -> Registrator:
    registrator = request.app[STORE].registrators.get_registrator(registrator_id)
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
    request.app[STORE].registrators.add_registrator(registrator)
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
    request.app[STORE].registrators.update_registrator(registrator.id, **changes)
    return _answer(request, registrator.id)


async def list_registrators(request: web.Request) -> web.Response:
    caller = require_session(request)
    registrators = request.app[STORE].registrators.registrators_of(caller.user.org)
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
    request.app[STORE].registrators.delete_registrator(registrator.id, request.app[CLOCK].now())
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
    activation = request.app[STORE].registrators.get_activation(code)
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
    activation = store.registrators.get_activation(code)
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
        store.registrators.link_by_code(registrator.id, code, link, token, now)
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


async def _store_and_apply(
    request: web.Request, registrator: Registrator, **changes: Any
) -> web.Response:
    store = request.app[STORE]
    store.registrators.update_registrator(registrator.id, pending_configure=True, **changes)
    channel = request.app[CHANNELS].get(registrator.id)
    if channel is None:
        return _answer(
            request,
            registrator.id,
            applied=False,
            reason="NVR is offline: the settings are sent when it connects",
        )
    try:
        ok, result = await nvr_channel.deliver_settings(request.app, channel)
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
        or len(cameras) > nvr_channel.MAX_CAMERAS
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


async def sync(request: web.Request) -> web.Response:
    caller = require_session(request)
    registrator = _registrator_of(request, caller)
    require_manager(request, caller, "sync NVRs", business=False)
    return web.json_response({"cameras": await nvr_channel.sync_cameras(request.app, registrator)})


async def sync_all(request: web.Request) -> web.Response:
    caller = require_session(request)
    require_manager(request, caller, "sync NVRs", business=False)
    registrators = request.app[STORE].registrators.registrators_of(caller.user.org)

    async def one(registrator: Registrator) -> dict[str, Any]:
        result: dict[str, Any] = {"id": registrator.id, "name": registrator.name}
        try:
            result.update(ok=True, cameras=await nvr_channel.sync_cameras(request.app, registrator))
        except ApiError as error:
            result.update(ok=False, error=error.message)
        return result

    results = await asyncio.gather(*(one(r) for r in registrators))
    return web.json_response({"results": list(results)})


# --- wiring ---------------------------------------------------------------------------------


def setup(app: web.Application) -> None:
    nvr_channel.setup(app)
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
