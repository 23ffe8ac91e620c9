"""The NVR's own calls (no user session): register an activation code, or link with a
registration token (docs/design.md §3).

With a code, the NVR also sends a secret (32 random bytes) that never leaves it again:
when a user activates the code, the NVR's token goes to the provisioning service under
that secret, so the NVR collects it with the ordinary long-poll and nobody else can.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import KEY_LEN, b64decode_strict
from cloud_mock.api import ApiError, get_str, read_json_object
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.nvr import (
    DEFAULT_ARCHIVE,
    DEFAULT_BROADCAST,
    MANAGER_ROLES,
    MAX_NAME,
    MAX_VERSION,
    device_id_of,
    make_room,
    mint_token,
    no_business,
    parse_checks,
    parse_code,
)
from cloud_mock.store import Activation, Conflict, Link, RegistrationToken, Registrator, Store

log = logging.getLogger("cloud_mock.nvr")

CODES_KEPT = 5  # live codes per device: the newest ones (renewals overlap)
MAX_TOKEN_TEXT = 4096


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def register_code(request: web.Request) -> web.Response:
    """`POST /v1/nvr/activations {device_id, code, secret, name, version, checks}`."""
    data = await read_json_object(request)
    device_id = device_id_of(data)
    code = parse_code(data.get("code"))
    try:
        secret = b64decode_strict(data.get("secret"), "secret")
    except WireError as error:
        raise ApiError(400, str(error)) from None
    if len(secret) != KEY_LEN:
        raise ApiError(400, f"field 'secret' must be base64 of {KEY_LEN} random bytes")
    name = get_str(data, "name", required=False, max_len=MAX_NAME, allow_empty=True)
    version = get_str(data, "version", required=False, max_len=MAX_VERSION, allow_empty=True)
    checks = parse_checks(data)

    config, store = request.app[CONFIG], request.app[STORE]
    now = request.app[CLOCK].now()
    stored = register_activation(
        store,
        Activation(code, device_id, secret, name, version, checks, now, now + config.code_ttl_s),
        now,
    )
    log.info("NVR %s registered activation code %s", device_id, code)
    return web.json_response(
        {
            "code": stored.code,
            "expires_at": stored.expires_at,
            "activation_url": f"{config.url}/registrators/activate?code={stored.code}",
        },
        status=201,
    )


def register_activation(store: Store, activation: Activation, now: float) -> Activation:
    """Store a code an NVR registered; return what is stored (409 if refused).

    The same NVR (device_id and secret) registering the same code again refreshes it
    (an activated code stays as it is). A code that is live or activated for another
    registration is refused; an expired, unused one is replaced. A device ID whose live
    code was registered under another secret is refused too, and nothing is evicted:
    only the NVR holding that secret (the one that polls with it) may register codes
    for it until the code is used or expires. Only the `CODES_KEPT` newest codes of a
    device are kept (all under one secret, so an NVR only ever pushes out its own).
    """
    with store.transaction():
        for live in store.activations_of(activation.device_id):
            if (
                live.activated_at is None
                and live.expires_at > now
                and not hmac.compare_digest(live.secret, activation.secret)
            ):
                raise ApiError(
                    409,
                    f"device ID {activation.device_id} has a live activation code registered "
                    "by another NVR (another secret): only that NVR may register codes for it "
                    "until its code is used or expires",
                )
        old = store.get_activation(activation.code)
        if old is not None:
            if old.device_id == activation.device_id and hmac.compare_digest(
                old.secret, activation.secret
            ):
                if old.activated_at is None:
                    store.refresh_activation(activation)
                return store.get_activation(activation.code) or old
            if old.activated_at is not None or old.expires_at > now:
                raise ApiError(409, "code already in use")
            store.delete_activation(activation.code)
        store.insert_activation(activation)
        store.keep_newest_activations(activation.device_id, CODES_KEPT)
    return activation


def _usable(store: Store, token: RegistrationToken | None, now: float) -> RegistrationToken:
    if token is None:
        raise ApiError(404, "unknown registration token")
    if token.used_at is not None:
        raise ApiError(409, "registration token already used")
    if now >= token.expires_at:
        raise ApiError(410, "registration token expired (valid 6 hours)")
    creator = store.get_user(token.created_by)
    if creator is None:
        raise ApiError(
            403,
            f"{token.created_by!r}, who made this registration token, no longer exists: "
            "ask for a new token",
        )
    if creator.org != token.org or creator.role not in MANAGER_ROLES:
        raise ApiError(
            403,
            f"{creator.login!r}, who made this registration token, may no longer add NVRs "
            f"to {token.org!r}: ask for a new token",
        )
    if not store.org_is_business(token.org):
        raise ApiError(403, no_business(token.org))
    return token


async def register_with_token(request: web.Request) -> web.Response:
    """`POST /v1/nvr/register {token, device_id, name, version, checks}`: Cloud Registration."""
    data = await read_json_object(request)
    secret = get_str(data, "token", max_len=MAX_TOKEN_TEXT).strip()
    device_id = device_id_of(data)
    name = get_str(data, "name", required=False, max_len=MAX_NAME, allow_empty=True)
    version = get_str(data, "version", required=False, max_len=MAX_VERSION, allow_empty=True)
    checks = parse_checks(data)

    # From here on nothing awaits: concurrent uses of one token are decided in order
    # (and the store's guarded update makes sure of it).
    store = request.app[STORE]
    now = request.app[CLOCK].now()
    token = _usable(store, store.registration_token_by_hash(token_hash(secret)), now)
    make_room(request, device_id, token.org)
    registrator_id = uuid.uuid4().hex
    device_token, jti = mint_token(
        request, device_id=device_id, org=token.org, registrator_id=registrator_id
    )
    registrator = Registrator(
        id=registrator_id,
        org=token.org,
        # The title the user gave the token names it in the cloud; the NVR's own name
        # (often generic) stays visible as its device_name.
        name=token.title or name.strip() or device_id,
        note=token.note,
        device="virtual",
        created=now,
        broadcast=dict(DEFAULT_BROADCAST),
        archive=dict(DEFAULT_ARCHIVE),
    )
    link = Link(device_id, name, version, checks, jti, now)
    try:
        store.add_registrator_by_token(token.id, registrator, link)
    except Conflict:
        raise ApiError(409, "registration token already used") from None
    log.info(
        "NVR %s registered with a token: registrator %s of %s", device_id, registrator_id, token.org
    )
    return web.json_response({"registrator_id": registrator_id, "token": device_token}, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/nvr/activations", register_code)
    app.router.add_post("/v1/nvr/register", register_with_token)
