"""The NVR's own calls (no user session): register an activation code, or link with a
registration token (docs/design.md §3).

With a code, the NVR also sends a secret (32 random bytes) that never leaves it again:
when a user activates the code, the NVR's token goes to the provisioning service under
that secret, so the NVR collects it with the ordinary long-poll and nobody else can.
With a registration token it sends the same secret: the link records its hash, and a
later link of that device ID in the same organization must show the same secret.

Nobody is authenticated here, so nothing here may let one caller hold anything against
another, or make the mock keep more than a bound:

- a code lives its first lifetime, whatever registers it again; codes of one device ID
  under different secrets (different NVRs, or a squatter and the NVR) live side by side
  and neither refuses nor evicts the other;
- registrations are rate-limited per client address (an IPv6 address counts as its /64),
  an address holds a bounded number of live codes, and all unused codes together are
  bounded; checks are bounded in number and size; expired codes are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import KEY_LEN, b64decode_strict
from cloud_mock.api import ApiError, get_str, read_json_object
from cloud_mock.client_address import client_key
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.log_limit import RateLimitedLogger
from cloud_mock.nvr import (
    DEFAULT_ARCHIVE,
    DEFAULT_BROADCAST,
    MANAGER_ROLES,
    MAX_NAME,
    MAX_VERSION,
    close_channel,
    device_id_of,
    make_room,
    mint_token,
    no_business,
    offer_tokens,
    parse_checks,
    parse_code,
)
from cloud_mock.store import Activation, Conflict, Link, RegistrationToken, Registrator, Store
from cloud_mock.store.registrators import secret_hash_of

log = logging.getLogger(__name__)
_quiet_log = RateLimitedLogger(log)

CODES_KEPT = 5  # unused codes kept per NVR (device ID and secret): the newest
MAX_TOKEN_TEXT = 4096
# An expired code answers "expired" this long, then it is forgotten.
CODE_GRACE_S = 3600.0
# An activated code (its registrator still there) is remembered this long past its expiry.
USED_CODE_KEPT_S = 30 * 86_400.0
PRUNE_EVERY_S = 60.0
HOUSEKEEPING_EVERY_S = 1.0
FULL_RETRY_AFTER_S = 600


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- what one client address may do --------------------------------------------------------


@dataclass(frozen=True)
class DeviceCallLimits:
    """The bounds of the NVR's unauthenticated calls."""

    # Registrations (codes and registration tokens) from one client address in a window:
    # an NVR registers a code at start and about once a day, a token once.
    per_client: int = 30
    window_s: float = 600.0
    # Unused, unexpired codes registered from one client address (an NVR has one or two).
    live_codes_per_client: int = 100
    # Unused codes in all (the expired ones until they are pruned).
    unused_codes: int = 5_000
    # Client addresses the rate limit remembers (the least recently seen go first).
    clients: int = 10_000


class DeviceCallGuard:
    """A sliding-window count of registrations per client, with a bounded table."""

    def __init__(self, limits: DeviceCallLimits | None = None) -> None:
        self.limits = limits or DeviceCallLimits()
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def admit(self, client: str, now: float) -> None:
        """Count one registration from `client`, or refuse it (429 with Retry-After)."""
        limits = self.limits
        times = self._times.pop(client, None) or deque()
        while times and times[0] <= now - limits.window_s:
            times.popleft()
        if len(times) >= limits.per_client:
            self._times[client] = times
            wait = max(1, math.ceil(times[0] + limits.window_s - now))
            raise _refusal(
                429,
                "rate_limited",
                f"too many NVR registrations from this address ({limits.per_client} in "
                f"{limits.window_s:g} s): try again in {wait} s",
                wait,
            )
        times.append(now)
        self._times[client] = times
        while len(self._times) > limits.clients:
            self._times.popitem(last=False)

    def __len__(self) -> int:
        return len(self._times)


GUARD = web.AppKey("nvr_device_guard", DeviceCallGuard)


def _refusal(status: int, code: str, message: str, retry_after: int) -> ApiError:
    """A refusal that passes: `{error: code, message, retry_after}` with Retry-After."""
    return ApiError(
        status,
        code,
        headers={"Retry-After": str(retry_after)},
        extra={"message": message, "retry_after": retry_after},
    )


def _secret_of(data: dict[str, object]) -> bytes:
    try:
        secret = b64decode_strict(data.get("secret"), "secret")
    except WireError as error:
        raise ApiError(400, str(error)) from None
    if len(secret) != KEY_LEN:
        raise ApiError(400, f"field 'secret' must be base64 of {KEY_LEN} random bytes")
    return secret


# --- activation codes ------------------------------------------------------------------------


async def register_code(request: web.Request) -> web.Response:
    """`POST /v1/nvr/activations {device_id, code, secret, name, version, checks}`."""
    data = await read_json_object(request)
    device_id = device_id_of(data)
    code = parse_code(data.get("code"))
    secret = _secret_of(data)
    name = get_str(data, "name", required=False, max_len=MAX_NAME, allow_empty=True)
    version = get_str(data, "version", required=False, max_len=MAX_VERSION, allow_empty=True)
    checks = parse_checks(data)

    config, store = request.app[CONFIG], request.app[STORE]
    now = request.app[CLOCK].now()
    client = client_key(request.remote)
    request.app[GUARD].admit(client, now)
    stored = register_activation(
        store,
        Activation(
            code,
            device_id,
            secret,
            name,
            version,
            checks,
            now,
            now + config.code_ttl_s,
            client=client,
        ),
        now,
        request.app[GUARD].limits,
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


def register_activation(
    store: Store, activation: Activation, now: float, limits: DeviceCallLimits | None = None
) -> Activation:
    """Store a code an NVR registered; return what is stored (409, 429, 503 if refused).

    The same NVR (device ID and secret) registering the same code again updates its
    details, never its expiry: a code lives its first lifetime, whatever registers it
    again (an activated code stays as it is). A code that is live or activated for
    another registration is refused (409), and so is an expired one until it is
    forgotten (`CODE_GRACE_S` after its expiry): only then may its text make a new code.

    Codes of one device ID under other secrets are neither looked at nor touched: each
    NVR (secret) keeps its `CODES_KEPT` newest codes, so a registration under another
    secret, a squatter's, can neither push an NVR's code out nor keep the NVR from
    registering its own, and its answer says nothing of them.
    """
    limits = limits or DeviceCallLimits()
    with store.registrators.transaction():
        old = store.registrators.get_activation(activation.code)
        if old is not None:
            live_or_used = old.activated_at is not None or old.expires_at > now
            same_nvr = old.device_id == activation.device_id and hmac.compare_digest(
                old.secret, activation.secret
            )
            if same_nvr and live_or_used:
                if old.activated_at is None:
                    store.registrators.refresh_activation(activation)
                return store.registrators.get_activation(activation.code) or old
            if live_or_used:
                raise ApiError(409, "code already in use")
            if now < old.expires_at + CODE_GRACE_S:
                raise ApiError(409, "code expired: register a new one")
            store.registrators.delete_activation(activation.code)
        _check_room(store, activation.client, now, limits)
        store.registrators.insert_activation(activation)
        store.registrators.keep_newest_activations(
            activation.device_id, activation.secret, CODES_KEPT
        )
    return activation


def _check_room(store: Store, client: str, now: float, limits: DeviceCallLimits) -> None:
    if store.registrators.live_codes_of_client(client, now) >= limits.live_codes_per_client:
        raise _refusal(
            429,
            "rate_limited",
            f"this address holds {limits.live_codes_per_client} live activation codes "
            "already: try again when some have expired or been used",
            FULL_RETRY_AFTER_S,
        )
    if store.registrators.unused_codes() >= limits.unused_codes:
        prune(store, now)
        if store.registrators.unused_codes() >= limits.unused_codes:
            _quiet_log.warning(
                "%d unused activation codes: refusing new ones until some expire",
                limits.unused_codes,
            )
            raise _refusal(
                503,
                "codes_full",
                "too many activation codes are waiting to be used: try again later",
                FULL_RETRY_AFTER_S,
            )


def prune(store: Store, now: float) -> int:
    """Forget codes that expired more than `CODE_GRACE_S` ago (activated ones after
    `USED_CODE_KEPT_S`, once their token no longer waits)."""
    return store.registrators.prune_activations(now - CODE_GRACE_S, now - USED_CODE_KEPT_S)


# --- registration tokens ---------------------------------------------------------------------


def _usable(store: Store, token: RegistrationToken | None, now: float) -> RegistrationToken:
    if token is None:
        raise ApiError(404, "unknown registration token")
    if token.used_at is not None:
        raise ApiError(409, "registration token already used")
    if now >= token.expires_at:
        raise ApiError(410, "registration token expired (valid 6 hours)")
    creator = store.accounts.get_user(token.created_by)
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
    if not store.accounts.org_is_business(token.org):
        raise ApiError(403, no_business(token.org))
    return token


async def register_with_token(request: web.Request) -> web.Response:
    """`POST /v1/nvr/register {token, device_id, secret, name, version, checks}`: Cloud
    Registration."""
    data = await read_json_object(request)
    text = get_str(data, "token", max_len=MAX_TOKEN_TEXT).strip()
    device_id = device_id_of(data)
    secret = _secret_of(data)
    name = get_str(data, "name", required=False, max_len=MAX_NAME, allow_empty=True)
    version = get_str(data, "version", required=False, max_len=MAX_VERSION, allow_empty=True)
    checks = parse_checks(data)

    # From here on nothing awaits: concurrent uses of one token are decided in order
    # (and the store's guarded update makes sure of it).
    store = request.app[STORE]
    now = request.app[CLOCK].now()
    request.app[GUARD].admit(client_key(request.remote), now)
    token = _usable(store, store.registrators.registration_token_by_hash(token_hash(text)), now)
    digest = secret_hash_of(secret)
    # The same NVR (its secret) registering again, e.g. after `camagent reset`: its
    # registrator is linked anew rather than left behind, unlinked, beside a new one.
    current = store.registrators.registrator_of(token.org, device_id)
    if (
        current is None
        or current.secret_hash is None
        or not hmac.compare_digest(current.secret_hash, digest)
    ):
        current = None
        make_room(request, device_id, token.org, digest)
    registrator_id = current.id if current is not None else uuid.uuid4().hex
    device_token, jti = mint_token(
        request, device_id=device_id, org=token.org, registrator_id=registrator_id
    )
    link = Link(device_id, name, version, checks, jti, now, digest)
    try:
        if current is not None:
            store.registrators.relink_by_token(token.id, registrator_id, link, now)
            close_channel(request.app, registrator_id)
            offer_tokens(request.app, device_id)
        else:
            store.registrators.add_registrator_by_token(
                token.id, new_registrator(registrator_id, token, name, device_id, now), link
            )
    except Conflict:
        raise ApiError(409, "registration token already used") from None
    log.info(
        "NVR %s registered with a token: registrator %s of %s%s",
        device_id,
        registrator_id,
        token.org,
        " (linked anew)" if current is not None else "",
    )
    return web.json_response({"registrator_id": registrator_id, "token": device_token}, status=201)


def new_registrator(
    registrator_id: str, token: RegistrationToken, name: str, device_id: str, now: float
) -> Registrator:
    """A registrator made by a registration token: named after the NVR (the name it
    registered with; without one the token's title, else its device ID); the token's
    title and note are its note."""
    return Registrator(
        id=registrator_id,
        org=token.org,
        name=name.strip() or token.title.strip() or device_id,
        note=" — ".join(part for part in (token.title.strip(), token.note.strip()) if part),
        device="virtual",
        created=now,
        broadcast=dict(DEFAULT_BROADCAST),
        archive=dict(DEFAULT_ARCHIVE),
    )


# --- housekeeping ----------------------------------------------------------------------------


class Housekeeping:
    """Once a second: turns of the tokens waiting for NVRs of one device ID; once a
    minute: expired codes pruned. All by the mock clock."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._last_prune = -math.inf

    def tick(self) -> None:
        app = self._app
        store = app[STORE]
        for device_id in store.registrators.devices_with_waiting_tokens(at_least=2):
            offer_tokens(app, device_id)
        if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
            pruned = prune(store, app[CLOCK].now())
            if pruned:
                log.info("%d expired activation code(s) forgotten", pruned)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY_S)
            try:
                self.tick()
            except Exception as error:  # the next tick tries again; said once a minute
                _quiet_log.warning("NVR housekeeping failed: %r", error)


HOUSEKEEPING = web.AppKey("nvr_housekeeping", Housekeeping)


async def _housekeeping_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs while the store is open (the store's context comes first)."""
    housekeeping = app[HOUSEKEEPING] = Housekeeping(app)
    task = asyncio.create_task(housekeeping.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def add_routes(app: web.Application) -> None:
    app[GUARD] = DeviceCallGuard()
    app.cleanup_ctx.append(_housekeeping_ctx)
    app.router.add_post("/v1/nvr/activations", register_code)
    app.router.add_post("/v1/nvr/register", register_with_token)
