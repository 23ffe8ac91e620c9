"""Registration tokens (docs/design.md §3): made by a user for an org, valid 6 hours by the mock
clock, single use, pasted on an NVR (`camagent nvr register --token-file -`).

Only a SHA-256 of a token is stored: the token itself is shown once, when it is made.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any

from aiohttp import web

from cloud_mock.api import ApiError, get_str, read_json_object
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.nvr import MAX_NAME, MAX_NOTE, org_of_body, require_manager
from cloud_mock.nvr_device import token_hash
from cloud_mock.store import RegistrationToken
from cloud_mock.users import require_session

log = logging.getLogger(__name__)

TOKEN_TTL_S = 6 * 3600
TOKEN_PREFIX = "rt_"


def _token_json(token: RegistrationToken, now: float) -> dict[str, Any]:
    return {
        "id": token.id,
        "org": token.org,
        "title": token.title,
        "note": token.note,
        "created": token.created,
        "created_by": token.created_by,
        "expires_at": token.expires_at,
        "expired": token.used_at is None and now >= token.expires_at,
        "used": token.used_at is not None,
        "used_at": token.used_at,
        "registrator_id": token.registrator_id,
    }


async def create_token(request: web.Request) -> web.Response:
    caller = require_session(request)
    data = await read_json_object(request)
    org = org_of_body(data, caller)
    title = get_str(data, "title", required=False, max_len=MAX_NAME, allow_empty=True).strip()
    note = get_str(data, "note", required=False, max_len=MAX_NOTE, allow_empty=True)
    require_manager(request, caller, "add NVRs")
    now = request.app[CLOCK].now()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = RegistrationToken(
        id=uuid.uuid4().hex,
        org=org,
        created_by=caller.user.login,
        title=title,
        note=note,
        created=now,
        expires_at=now + TOKEN_TTL_S,
    )
    request.app[STORE].registrators.add_registration_token(token, token_hash(secret))
    log.info("registration token %s made for %s by %s", token.id, org, caller.user.login)
    return web.json_response({**_token_json(token, now), "token": secret}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    caller = require_session(request)
    now = request.app[CLOCK].now()
    tokens = request.app[STORE].registrators.registration_tokens_of(caller.user.org)
    return web.json_response({"tokens": [_token_json(t, now) for t in tokens]})


async def delete_token(request: web.Request) -> web.Response:
    caller = require_session(request)
    require_manager(request, caller, "revoke registration tokens", business=False)
    if not request.app[STORE].registrators.delete_registration_token(
        request.match_info["id"], caller.user.org
    ):
        raise ApiError(404, "no such registration token")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/registrator-tokens", create_token)
    app.router.add_get("/v1/registrator-tokens", list_tokens)
    app.router.add_delete("/v1/registrator-tokens/{id}", delete_token)
