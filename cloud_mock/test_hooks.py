"""Hooks for tests, mounted only with `--test-hooks` (otherwise these paths are 404).

They move the mock clock, read the provisioning log and inject poll failures.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import normalize_device_id
from cloud_mock.api import ApiError, get_int, get_number, read_json_object
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.provisioning import FAULTS, Fault

FAULT_STATUSES = (429, 503)
LOG_LIMIT = 10_000


async def get_clock(request: web.Request) -> web.Response:
    return web.json_response({"now": request.app[CLOCK].now()})


async def advance_clock(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    seconds = get_number(data, "advance_s")
    return web.json_response({"now": request.app[CLOCK].advance(seconds)})


async def provisioning_log(request: web.Request) -> web.Response:
    device_id = request.query.get("device_id")
    if device_id:
        # "AA-BB-..." finds the polls of "aa:bb:..."; anything else is matched as given.
        with contextlib.suppress(WireError):
            device_id = normalize_device_id(device_id)
    polls = request.app[STORE].polls(device_id or None, limit=LOG_LIMIT)
    return web.json_response({"polls": [p.to_json() for p in polls]})


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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/test/clock", get_clock)
    app.router.add_post("/v1/test/clock", advance_clock)
    app.router.add_get("/v1/test/provisioning/log", provisioning_log)
    app.router.add_post("/v1/test/provisioning/fault", provisioning_fault)
