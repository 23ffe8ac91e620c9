"""Hooks for tests, mounted only with `--test-hooks` (otherwise these paths are 404).

They move the mock clock, read the provisioning log and the number of held polls, inject
poll failures, read captcha answers and change the account settings of a running mock.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import normalize_device_id
from cloud_mock.api import ApiError, get_int, get_number, read_json_object
from cloud_mock.fixtures import parse_settings
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.provisioning import FAULTS, WAITERS, Fault
from cloud_mock.users import LOGIN_STATE

FAULT_STATUSES = (429, 503)
LOG_LIMIT = 10_000
MAX_ADVANCE_S = 100 * 365 * 86_400  # a clock moved further would leave what dates can say


async def get_clock(request: web.Request) -> web.Response:
    return web.json_response({"now": request.app[CLOCK].now()})


async def advance_clock(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    seconds = get_number(data, "advance_s")
    if abs(seconds) > MAX_ADVANCE_S:
        raise ApiError(400, f"field 'advance_s' must be from -{MAX_ADVANCE_S} to {MAX_ADVANCE_S}")
    return web.json_response({"now": request.app[CLOCK].advance(seconds)})


async def provisioning_log(request: web.Request) -> web.Response:
    device_id = request.query.get("device_id")
    if device_id:
        # "AA-BB-..." finds the polls of "aa:bb:..."; anything else is matched as given.
        with contextlib.suppress(WireError):
            device_id = normalize_device_id(device_id)
    polls = request.app[STORE].devices.traced_polls(device_id or None, limit=LOG_LIMIT)
    return web.json_response({"polls": [p.to_json() for p in polls]})


async def provisioning_held(request: web.Request) -> web.Response:
    """How many polls are held now: what a test waits on before it acts on a held poll."""
    return web.json_response({"held": len(request.app[WAITERS])})


async def provisioning_fault(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    status = data.get("status")
    if status not in FAULT_STATUSES or isinstance(status, bool):
        raise ApiError(400, "field 'status' must be 429 or 503")
    retry_after = get_int(data, "retry_after", minimum=0, maximum=86_400)
    count = get_int(data, "count", minimum=0, maximum=1_000_000)
    faults = request.app[FAULTS]
    # count 0 clears a pending fault.
    faults.pending = Fault(int(status), retry_after, count) if count else None
    return web.json_response({"status": status, "retry_after": retry_after, "count": count})


async def captcha_answer(request: web.Request) -> web.Response:
    captcha = request.app[LOGIN_STATE].captchas.peek(request.match_info["id"])
    if captcha is None:
        raise ApiError(404, "no live captcha with this id (used, replaced or never issued)")
    return web.json_response({"answer": captcha.answer})


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE].accounts.settings())


async def change_settings(request: web.Request) -> web.Response:
    """Merge the body into the settings, as fixtures would set them; null removes a key."""
    changes = await read_json_object(request)
    store = request.app[STORE]
    merged = {**store.accounts.settings(), **changes}
    merged = {key: value for key, value in merged.items() if value is not None}
    try:
        parse_settings(merged)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    store.accounts.delete_settings([key for key, value in changes.items() if value is None])
    store.accounts.set_settings({key: value for key, value in changes.items() if value is not None})
    return web.json_response(store.accounts.settings())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/test/clock", get_clock)
    app.router.add_post("/v1/test/clock", advance_clock)
    app.router.add_get("/v1/test/provisioning/log", provisioning_log)
    app.router.add_get("/v1/test/provisioning/held", provisioning_held)
    app.router.add_post("/v1/test/provisioning/fault", provisioning_fault)
    app.router.add_get("/v1/test/captcha/{id}", captcha_answer)
    app.router.add_get("/v1/test/settings", get_settings)
    app.router.add_post("/v1/test/settings", change_settings)
