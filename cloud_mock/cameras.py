"""Cameras of an organization: add (a claim: mint + store the token), list, show,
change the password of a waiting claim, delete, command.

Adding a camera is what a camera owner does in the cloud (docs/design.md §2.1): it
computes K once, signs the camera's token, stores both as the org's claim on the device
ID and wakes any long-poll of that device that is waiting right now. Another org's claim
on the same ID is no obstacle and is never revealed: the add answers exactly as a fresh
one (claims.py has the rules of who wins).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import derive_key, normalize_device_id, seal_token
from agent.token_codec import sign_token
from cloud_mock import claims
from cloud_mock.api import ApiError, get_str, read_json_object
from cloud_mock.devices_ws import CHANNELS, CLOSE_REVOKED, ChannelClosed
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.provisioning import WAITERS
from cloud_mock.store import Camera, PollRecord, Store
from cloud_mock.users import Caller, account_settings, require_session
from cloud_mock.video import sources as video_sources
from cloud_mock.video.info import video_json

log = logging.getLogger(__name__)

MAX_PASSWORD = 256
MAX_NAME = 128
MAX_COMMAND_NAME = 64
CLOUD_ONLY_COMMANDS = frozenset({"tunnel_open"})
POLLS_SHOWN = 200


def camera_status(camera: Camera, online: bool, now: float, claim_ttl_s: float) -> str:
    """moved (another org's claim won the device) > online > offline > waiting, and
    expired for a claim no device proved or connected within the claim TTL of its add. A
    claim outside its device's eight places is `waiting` like any other (claims.py)."""
    if camera.moved_at is not None:
        return "moved"
    if online:
        return "online"
    if camera.hello_at is not None:
        return "offline"
    if camera.proven_at is None and not claims.is_live(camera, now, claim_ttl_s):
        return "expired"
    return "waiting"


def camera_json(app: web.Application, camera: Camera) -> dict[str, Any]:
    """A camera as GET /v1/cameras shows it (the console's pages and live feed too)."""
    online = app[CHANNELS].is_online(camera.camera_id)
    ttl = account_settings(app[STORE]).claim_ttl_s
    return {
        "camera_id": camera.camera_id,
        "device_id": camera.device_id,
        "name": camera.name,
        "org": camera.org,
        "status": camera_status(camera, online, app[CLOCK].now(), ttl),
        "last_seen": camera.last_seen,
        "created": camera.created,
        "moved_at": camera.moved_at,
        "video": video_json(app, video_sources.camera(camera.camera_id, camera.org, camera.name)),
    }


def camera_polls(
    app: web.Application, camera: Camera, limit: int = POLLS_SHOWN
) -> list[PollRecord]:
    """The provisioning requests this camera's claim saw (at most one row per poll)."""
    return app[STORE].devices.polls(camera.camera_id, limit=limit)


def _require_changer(caller: Caller) -> None:
    if not caller.may_change():
        raise ApiError(403, f"role {caller.user.role!r} may look at cameras but not change them")


def _camera_of(request: web.Request, caller: Caller) -> Camera:
    camera = request.app[STORE].devices.get_camera(request.match_info["id"])
    # Another org's camera is "not found": its existence is not the caller's business.
    if camera is None or camera.org != caller.user.org:
        raise ApiError(404, "no such camera")
    return camera


def _check_free(app: web.Application, org: str, device_id: str) -> None:
    """Only the caller's own org may say "taken": another org's claim is not revealed.

    The 409 names the org's own camera (id and status), so that a client can change a
    waiting camera's password (PATCH) or delete a moved one and add it again."""
    store = app[STORE]
    own = store.devices.camera_of(org, device_id)
    if own is not None:
        status = camera_json(app, own)["status"]
        hint = {
            "waiting": ": change its password with PATCH /v1/cameras/{id}",
            "moved": ": it moved to another account; delete it to add it again",
            "expired": ": its claim expired; delete it to add it again",
        }.get(status, "")
        raise ApiError(
            409,
            f"a camera with device ID {device_id} already exists ({status}){hint}",
            extra={"camera_id": own.camera_id, "status": status},
        )
    registrator = store.registrators.registrator_by_device(device_id)
    if registrator is not None and registrator.org == org:
        raise ApiError(409, f"device ID {device_id} belongs to an NVR, not a camera")


def _device_id(raw: str) -> str:
    try:
        return normalize_device_id(raw)
    except WireError as error:
        raise ApiError(400, str(error)) from None


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
    device_id = _device_id(raw_device_id)

    store, config = request.app[STORE], request.app[CONFIG]
    _check_free(request.app, org, device_id)
    # Slow on purpose (scrypt): off the event loop, once per camera.
    key = await asyncio.to_thread(derive_key, password, device_id)
    # Checked again: a concurrent request may have taken the ID while we derived K
    # (nothing awaits from here to the insert).
    _check_free(request.app, org, device_id)
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
    camera = Camera(
        camera_id, org, device_id, name or device_id, now, jti, None, None, key, token, now
    )
    _claim(store, camera)
    woken = request.app[WAITERS].notify(device_id)
    log.info("camera %s claimed by %s (%d waiting poll(s) woken)", device_id, org, woken)
    return web.json_response(
        {
            "camera_id": camera_id,
            "token": token,
            "sealed_token": seal_token(key, device_id, token),
            "device_id": device_id,
        },
        status=201,
    )


def _claim(store: Store, camera: Camera) -> None:
    """Store the claim. Nothing of another org's claim changes: which claims a poll
    checks (the device's eight places) follows from the claims as they are
    (claims.places_for), so an add never drops a proven or connected claim, and the
    answer is the same whether the new claim got a place or waits for one."""
    store.devices.insert_camera(camera)


async def change_password(request: web.Request) -> web.Response:
    """`PATCH /v1/cameras/{id} {password}`: a waiting claim takes another password (an
    installer's mistake undone); 409 once the device has proven a claim. The claim keeps
    its age: it still expires claim_ttl_s after its add, and keeps its rank among the
    device's claims (a PATCH neither renews a claim nor moves it ahead of others)."""
    caller = require_session(request)
    camera = _camera_of(request, caller)
    data = await read_json_object(request)
    password = get_str(data, "password", max_len=MAX_PASSWORD)
    _require_changer(caller)
    store = request.app[STORE]
    _require_waiting(request.app, camera)
    key = await asyncio.to_thread(derive_key, password, camera.device_id)
    current = store.devices.get_camera(camera.camera_id)  # again: we awaited
    if current is None or current.org != caller.user.org:
        raise ApiError(404, "no such camera")
    _require_waiting(request.app, current)
    store.devices.set_claim_password(current.camera_id, key, request.app[CLOCK].now())
    request.app[WAITERS].notify(current.device_id)
    log.info("camera %s of %s: password changed", current.device_id, current.org)
    assert current.token is not None  # a waiting claim has its token
    return web.json_response(
        {
            "camera_id": current.camera_id,
            "token": current.token,
            "sealed_token": seal_token(key, current.device_id, current.token),
        }
    )


async def get_sealed_token(request: web.Request) -> web.Response:
    """`GET /v1/cameras/{id}/token`: the camera's token sealed under its claim's K, for a
    card or a LAN push (docs/design.md §2.9). A camera opens it only if the password the
    org typed is its label's: a squatter's is useless to it."""
    caller = require_session(request)
    camera = _camera_of(request, caller)
    _require_changer(caller)
    if camera.key is None or camera.token is None:
        status = camera_json(request.app, camera)["status"]
        raise ApiError(409, f"this camera's claim is closed ({status}): add it again")
    sealed = seal_token(camera.key, camera.device_id, camera.token)
    return web.json_response({"camera_id": camera.camera_id, "sealed_token": sealed})


def _require_waiting(app: web.Application, camera: Camera) -> None:
    """Waiting = no device has proven this claim yet (and it has not expired)."""
    status = camera_json(app, camera)["status"]
    if status != "waiting" or camera.proven_at is not None or camera.token is None:
        raise ApiError(
            409, "only a waiting camera's password can be changed (its device has not polled)"
        )


async def list_cameras(request: web.Request) -> web.Response:
    caller = require_session(request)
    cameras = request.app[STORE].devices.cameras_of(caller.user.org)
    return web.json_response({"cameras": [camera_json(request.app, c) for c in cameras]})


async def get_camera(request: web.Request) -> web.Response:
    caller = require_session(request)
    camera = _camera_of(request, caller)
    polls = camera_polls(request.app, camera)
    return web.json_response(
        {**camera_json(request.app, camera), "polls": [p.to_json() for p in polls]}
    )


async def delete_camera(request: web.Request) -> web.Response:
    caller = require_session(request)
    camera = _camera_of(request, caller)
    _require_changer(caller)
    request.app[STORE].devices.delete_camera(camera.camera_id, request.app[CLOCK].now())
    channels = request.app[CHANNELS]
    channel = channels.get(camera.camera_id)
    if channel is not None:
        channels.close(channel, CLOSE_REVOKED, "token revoked")
    log.info("camera %s deleted, token revoked", camera.device_id)
    source = video_sources.camera(camera.camera_id, camera.org, camera.name)
    await request.app[video_sources.SOURCE_GONE].gone(request.app, source)
    return web.Response(status=204)


async def send_command(request: web.Request) -> web.Response:
    caller = require_session(request)
    camera = _camera_of(request, caller)
    data = await read_json_object(request)
    name = get_str(data, "name", max_len=MAX_COMMAND_NAME)
    if name in CLOUD_ONLY_COMMANDS:
        # Its result carries the camera's stream credentials, for one session of the
        # cloud's own puller: never for an API caller (docs/security.md).
        raise ApiError(403, f"{name} is the cloud's own command; watch with GET …/live")
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
    app.router.add_patch("/v1/cameras/{id}", change_password)
    app.router.add_delete("/v1/cameras/{id}", delete_camera)
    app.router.add_get("/v1/cameras/{id}/token", get_sealed_token)
    app.router.add_post("/v1/cameras/{id}/commands", send_command)
