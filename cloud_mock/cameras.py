"""Cameras of an organization: add (mint + store the token), list, show, delete, command.

Adding a camera is what a camera owner does in the cloud (DESIGN §2 step 1): it
computes K once, signs the camera's token, stores both for the provisioning service
and wakes any long-poll of that device that is waiting right now.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import derive_key, normalize_device_id
from agent.token_codec import sign_token
from cloud_mock.api import ApiError, get_str, read_json_object
from cloud_mock.devices_ws import CHANNELS, CLOSE_REVOKED, ChannelClosed
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.provisioning import WAITERS
from cloud_mock.store import Camera, Store
from cloud_mock.users import Caller, require_session

log = logging.getLogger("cloud_mock.cameras")

MAX_PASSWORD = 256
MAX_NAME = 128
MAX_COMMAND_NAME = 64
POLLS_SHOWN = 200


def camera_status(camera: Camera, online: bool) -> str:
    if online:
        return "online"
    return "offline" if camera.hello_at is not None else "waiting"


def camera_json(app: web.Application, camera: Camera) -> dict[str, Any]:
    """A camera as GET /v1/cameras shows it (the console's pages and live feed too)."""
    online = app[CHANNELS].is_online(camera.camera_id)
    return {
        "camera_id": camera.camera_id,
        "device_id": camera.device_id,
        "name": camera.name,
        "org": camera.org,
        "status": camera_status(camera, online),
        "last_seen": camera.last_seen,
        "created": camera.created,
    }


def _require_changer(caller: Caller) -> None:
    if not caller.may_change():
        raise ApiError(403, f"role {caller.user.role!r} may look at cameras but not change them")


def _camera_of(request: web.Request, caller: Caller) -> Camera:
    camera = request.app[STORE].get_camera(request.match_info["id"])
    # Another org's camera is "not found": its existence is not the caller's business.
    if camera is None or camera.org != caller.user.org:
        raise ApiError(404, "no such camera")
    return camera


def _check_free(store: Store, device_id: str) -> None:
    if store.camera_by_device(device_id) is not None:
        raise ApiError(409, f"a camera with device ID {device_id} already exists")
    if store.registrator_by_device(device_id) is not None:
        raise ApiError(409, f"device ID {device_id} belongs to an NVR, not a camera")


async def add_camera(request: web.Request) -> web.Response:
    caller = require_session(request)
    data = await read_json_object(request)
    org = get_str(data, "org", required=False, default=caller.user.org, max_len=MAX_NAME)
    raw_device_id = get_str(data, "device_id", max_len=256)
    password = get_str(data, "password", max_len=MAX_PASSWORD)
    name = get_str(data, "name", required=False, max_len=MAX_NAME, allow_empty=True)
    if org != caller.user.org:
        raise ApiError(403, f"you may add cameras only to your organization {caller.user.org!r}")
    _require_changer(caller)
    try:
        device_id = normalize_device_id(raw_device_id)
    except WireError as error:
        raise ApiError(400, str(error)) from None

    store, config = request.app[STORE], request.app[CONFIG]
    _check_free(store, device_id)
    # Slow on purpose (scrypt): off the event loop, once per camera.
    key = await asyncio.to_thread(derive_key, password, device_id)
    # Checked again: a concurrent request may have taken the ID while we derived K
    # (nothing awaits from here to the insert).
    _check_free(store, device_id)
    now = request.app[CLOCK].now()
    camera_id, jti = uuid.uuid4().hex, uuid.uuid4().hex
    token = sign_token(
        {
            "v": 1,
            "sub": device_id,
            "kind": "camera",
            "org": org,
            "api": config.url,
            "iat": int(now),
            "jti": jti,
            "cid": camera_id,
        },
        config.signing_key,
    )
    camera = Camera(camera_id, org, device_id, name or device_id, now, jti, None, None)
    store.add_camera(camera, key, token)
    woken = request.app[WAITERS].notify(device_id)
    log.info("camera %s added to %s (%d waiting poll(s) woken)", device_id, org, woken)
    return web.json_response(
        {"camera_id": camera_id, "token": token, "device_id": device_id}, status=201
    )


async def list_cameras(request: web.Request) -> web.Response:
    caller = require_session(request)
    cameras = request.app[STORE].cameras_of(caller.user.org)
    return web.json_response({"cameras": [camera_json(request.app, c) for c in cameras]})


async def get_camera(request: web.Request) -> web.Response:
    caller = require_session(request)
    camera = _camera_of(request, caller)
    polls = request.app[STORE].polls(camera.device_id, limit=POLLS_SHOWN)
    return web.json_response(
        {**camera_json(request.app, camera), "polls": [p.to_json() for p in polls]}
    )


async def delete_camera(request: web.Request) -> web.Response:
    caller = require_session(request)
    camera = _camera_of(request, caller)
    _require_changer(caller)
    request.app[STORE].delete_camera(camera.camera_id, request.app[CLOCK].now())
    channels = request.app[CHANNELS]
    channel = channels.get(camera.camera_id)
    if channel is not None:
        channels.close(channel, CLOSE_REVOKED, "token revoked")
    log.info("camera %s deleted, token revoked", camera.device_id)
    return web.Response(status=204)


async def send_command(request: web.Request) -> web.Response:
    caller = require_session(request)
    camera = _camera_of(request, caller)
    data = await read_json_object(request)
    name = get_str(data, "name", max_len=MAX_COMMAND_NAME)
    args = data.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ApiError(400, "field 'args' must be a JSON object")
    _require_changer(caller)
    channel = request.app[CHANNELS].get(camera.camera_id)
    if channel is None:
        raise ApiError(409, "camera is not connected")
    timeout = request.app[CONFIG].command_timeout_s
    try:
        ok, result = await channel.command(name, args, timeout)
    except ChannelClosed:
        raise ApiError(409, "camera disconnected before answering") from None
    except TimeoutError:
        raise ApiError(504, f"camera did not answer within {timeout:g} s") from None
    return web.json_response({"ok": ok, "data": result})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/cameras", add_camera)
    app.router.add_get("/v1/cameras", list_cameras)
    app.router.add_get("/v1/cameras/{id}", get_camera)
    app.router.add_delete("/v1/cameras/{id}", delete_camera)
    app.router.add_post("/v1/cameras/{id}/commands", send_command)
