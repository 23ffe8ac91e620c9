"""Accounts and sessions: login, logout, the session list (docs/design.md §4, §11).

A session is two things: a public `id` (listed, used to end a session) and a bearer
secret given once at login; only the secret's SHA-256 is stored, so listing sessions
never reveals another session's credential.

Login, in order (`login_flow`):
1. too many recent failures for this login from this client address, or from this
   address at all → 429 `rate_limited` with Retry-After (cloud_mock.login_guard has the
   numbers), unless the attempt brings a captcha: then the captcha decides (step 2), so
   the right password with a solved captcha is never refused, and an attacker at one
   address cannot lock anyone else out;
2. a captcha when `settings.captcha` asks for one (`"always"`, or `{"after_failures": N}`
   failed attempts of this login since its last success), when this login failed too
   often lately from all addresses together, or when step 1 was passed with one: none
   given, or a wrong, expired, replaced, reused or another login's one → 428
   `captcha_required` with a NEW captcha for this login (the id sent is consumed either
   way); the password is not even looked at;
3. wrong password or unknown login → 401 `wrong_login`, the same body after as long a
   wait for both (an unknown login waits as long as a real scrypt check took lately,
   without running one: cloud_mock/password_check.py), so the answer does not reveal
   which logins exist; an address with 3 logins being checked already → 429;
4. at the session limit (the user's `max_sessions`, else the global one, else none) →
   409 `too_many_sessions` with the user's sessions (newest first) and a `resolve_token`
   (valid 120 s of the mock clock) that may end ONE session of that user:
   `DELETE /v1/sessions/{id}` with `Authorization: Bearer <resolve_token>`. The login
   retried afterwards from the same client, before the token would have expired, is
   spared the captcha once: the user already solved one to get the 409. The password is
   checked again, of course.
5. otherwise 200 `{session, session_id, user}`.

Sessions idle longer than `settings.session_idle_s` (default a week, mock clock) end by
themselves: every authenticated request and every login first deletes them, so they
neither count toward the limit, nor authenticate, nor show in lists.

Captchas, failure counts and resolve tokens live in memory: a restart forgets them.
Password hashing and the accounts made at start-up are in `user_accounts`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cloud_mock.api import ApiError, bearer_token, get_str, read_json_object
from cloud_mock.captcha import (
    CAPTCHA_TTL_S,
    CHECK_MESSAGES,
    CaptchaBook,
    CaptchaCheck,
    CaptchaFull,
    render_png,
)
from cloud_mock.client_address import client_key
from cloud_mock.fixtures import AccountSettings, parse_settings
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.login_guard import FailureLog, RenderBudget, ResolveGrants
from cloud_mock.password_check import ChecksBusy, PasswordChecks
from cloud_mock.store import Session, Store, User

# Passwords and the start-up accounts live in user_accounts; these stay importable from
# here, where the app and `cloud-mock` find them.
from cloud_mock.user_accounts import ADMIN_LOGIN as ADMIN_LOGIN
from cloud_mock.user_accounts import ADMIN_PASSWORD_FILE as ADMIN_PASSWORD_FILE
from cloud_mock.user_accounts import DUMMY_HASH, verify_password
from cloud_mock.user_accounts import apply_fixtures as apply_fixtures
from cloud_mock.user_accounts import ensure_admin as ensure_admin

log = logging.getLogger(__name__)

WRONG_LOGIN = "wrong login or password"
NO_SESSION = "no valid session: log in with POST /v1/auth/login and send Authorization: Bearer"
CAPTCHA_NEEDED = "a captcha is required: send captcha_id and captcha_answer with the login"
ROLES_THAT_CHANGE = ("owner", "manage_registrators")


# --- in-memory login state -------------------------------------------------------------------


@dataclass
class LoginState:
    captchas: CaptchaBook
    failures: FailureLog
    grants: ResolveGrants
    renders: RenderBudget
    passwords: PasswordChecks


LOGIN_STATE = web.AppKey("login_state", LoginState)


def account_settings(store: Store) -> AccountSettings:
    """The stored settings; fixtures were checked at start, but a data directory from an
    older run might hold something else: then the defaults, with a warning."""
    try:
        return parse_settings(store.accounts.settings())
    except ValueError as error:
        log.warning("stored settings ignored, using defaults: %s", error)
        return AccountSettings()


def _client(request: web.Request) -> str:
    return client_key(request.remote)


def _prune_idle(request: web.Request, settings: AccountSettings, now: float) -> None:
    ended = request.app[STORE].accounts.delete_idle_sessions(now - settings.session_idle_s)
    if ended:
        log.info("ended %d session(s) idle for more than %g s", ended, settings.session_idle_s)


# --- request authentication ----------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    user: User
    session: Session

    def may_change(self) -> bool:
        """Viewers only look; the other roles may add and remove things."""
        return self.user.role in ROLES_THAT_CHANGE


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def caller_from_secret(request: web.Request, secret: str) -> Caller | None:
    """The caller a session secret (from a Bearer header or a cookie) stands for, or None.

    Ends idle sessions first (this one included) and marks this one active now.
    """
    store = request.app[STORE]
    now = request.app[CLOCK].now()
    _prune_idle(request, account_settings(store), now)
    session = store.accounts.session_by_secret(_secret_hash(secret)) if secret else None
    user = store.accounts.get_user(session.login) if session else None
    if session is None or user is None:
        return None
    store.accounts.touch_session(session.id, now)
    return Caller(user, session)


def require_session(request: web.Request) -> Caller:
    secret = bearer_token(request)
    caller = caller_from_secret(request, secret) if secret else None
    if caller is None:
        raise ApiError(401, NO_SESSION, headers={"WWW-Authenticate": "Bearer"})
    return caller


def user_json(user: User) -> dict[str, Any]:
    return {"login": user.login, "org": user.org, "role": user.role}


def session_json(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "device": session.device,
        "software": session.software,
        "started": session.started,
        "last_activity": session.last_activity,
    }


def _coded(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> ApiError:
    """An error whose `error` is a stable code, with the human text in `message`."""
    return ApiError(
        status, message, headers=headers, extra={"error": code, "message": message, **fields}
    )


# --- captcha ---------------------------------------------------------------------------------


async def new_captcha(
    request: web.Request, login: str | None = None, replaces: str = "", *, needed: bool = False
) -> dict[str, Any]:
    """A fresh captcha for this client (for `login` only, when given; `replaces` dies): the
    GET /v1/auth/captcha body. ApiError 429 when this address holds too many live ones for
    that login, or it, or everybody, has had too many drawn lately: drawing one is CPU
    work. A login that needs a captcha (`needed`, or by its failures and the settings) is
    served from the reserve when everybody's budget is spent (login_guard.RenderBudget)."""
    state, now, client = request.app[LOGIN_STATE], request.app[CLOCK].now(), _client(request)
    try:
        state.captchas.room(client, now, login, replaces)
    except CaptchaFull as full:
        raise _too_many_captchas(math.ceil(full.retry_after)) from None
    if login is not None and not needed:
        needed = _login_needs_captcha(request, login, client, now)
    wait = state.renders.take(client, now, needed_by=login if needed else None)
    if wait is not None:
        raise _too_many_captchas(wait)
    try:
        captcha = state.captchas.issue(client, now, login=login, replaces=replaces)
    except CaptchaFull as full:  # a refresh of another client's captcha
        raise _too_many_captchas(math.ceil(full.retry_after)) from None
    png = await asyncio.to_thread(render_png, captcha.answer)
    return {
        "captcha_id": captcha.id,
        "image": base64.b64encode(png).decode(),
        "expires_in": int(CAPTCHA_TTL_S),
    }


def _too_many_captchas(wait: int) -> ApiError:
    return _coded(
        429,
        "rate_limited",
        f"too many captchas asked for: try again in {wait} s",
        headers={"Retry-After": str(wait)},
        retry_after=wait,
    )


def _login_needs_captcha(request: web.Request, login: str, client: str, now: float) -> bool:
    """Whether `login`, tried now from `client`, would be asked for a captcha."""
    state = request.app[LOGIN_STATE]
    settings = account_settings(request.app[STORE])
    return (
        settings.captcha.required(state.failures.failures(login))
        or state.failures.needs_captcha(login, now)
        or state.failures.retry_after(login, client, now) is not None
    )


async def _captcha_required(request: web.Request, message: str, login: str) -> ApiError:
    return _coded(
        428, "captcha_required", message, **await new_captcha(request, login, needed=True)
    )


async def _check_captcha(request: web.Request, attempt: LoginRequest) -> None:
    if not attempt.captcha_id:
        raise await _captcha_required(request, CAPTCHA_NEEDED, attempt.login)
    book = request.app[LOGIN_STATE].captchas
    result = book.check(
        attempt.captcha_id, attempt.captcha_answer, request.app[CLOCK].now(), attempt.login
    )
    if result is not CaptchaCheck.OK:
        raise await _captcha_required(request, CHECK_MESSAGES[result], attempt.login)


# --- login -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginRequest:
    login: str
    password: str
    device: str
    software: str
    captcha_id: str
    captcha_answer: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoginRequest:
        return cls(
            login=get_str(data, "login", max_len=256),
            password=get_str(data, "password", max_len=1024),
            device=get_str(data, "device", required=False, default="unknown device", max_len=256),
            software=get_str(
                data, "software", required=False, default="unknown software", max_len=256
            ),
            captcha_id=get_str(data, "captcha_id", required=False, max_len=128),
            # An empty answer is just a wrong one (and uses the captcha up).
            captcha_answer=get_str(
                data, "captcha_answer", required=False, max_len=64, allow_empty=True
            ),
        )


async def login_flow(request: web.Request, data: dict[str, Any]) -> dict[str, Any]:
    """Everything POST /v1/auth/login does with its JSON object: the 200 body, or ApiError
    (400, 401, 409, 428, 429; see the module docstring)."""
    attempt = LoginRequest.from_json(data)
    state = request.app[LOGIN_STATE]
    store = request.app[STORE]
    clock = request.app[CLOCK]
    client = _client(request)
    settings = account_settings(store)

    retry_after = state.failures.retry_after(attempt.login, client, clock.now())
    if retry_after is not None and not attempt.captcha_id:
        log.info("login of %r from %s rate-limited for %d s", attempt.login, client, retry_after)
        raise _rate_limited(retry_after)
    wanted = settings.captcha.required(
        state.failures.failures(attempt.login)
    ) or state.failures.needs_captcha(attempt.login, clock.now())
    if retry_after is not None or (
        wanted and not state.grants.take_captcha_pass(attempt.login, client, clock.now())
    ):
        await _check_captcha(request, attempt)

    user = store.accounts.get_user(attempt.login)
    try:
        matches = await state.passwords.check(
            client, attempt.password, user.password_hash if user else None
        )
    except ChecksBusy:
        raise _coded(
            429,
            "rate_limited",
            f"{state.passwords.per_client} logins from this address are being checked "
            "already: try again in 1 s",
            headers={"Retry-After": "1"},
            retry_after=1,
        ) from None
    # Nothing below awaits: the limit check and the new session are one step for the loop.
    now = clock.now()
    if user is None or not matches:
        state.failures.failed(attempt.login, client, now)
        log.info("login refused for %r from %s", attempt.login, client)
        raise _coded(401, "wrong_login", WRONG_LOGIN)
    state.failures.succeeded(user.login, client)

    _prune_idle(request, settings, now)
    limit = settings.session_limit(user.max_sessions)
    sessions = store.accounts.sessions_of(user.login)
    if limit is not None and len(sessions) >= limit:
        log.info("login %r refused: %d of %d sessions open", user.login, len(sessions), limit)
        token = state.grants.issue(user.login, client, now)
        raise _too_many_sessions(user, sessions, limit, token, state.grants.ttl_s)

    secret = secrets.token_urlsafe(32)
    session = Session(uuid.uuid4().hex, user.login, attempt.device, attempt.software, now, now)
    store.accounts.add_session(session, _secret_hash(secret))
    log.info("login %r (%s, %s)", user.login, attempt.device, attempt.software)
    return {"session": secret, "session_id": session.id, "user": user_json(user)}


def _rate_limited(retry_after: int) -> ApiError:
    return _coded(
        429,
        "rate_limited",
        f"too many failed logins from this address: try again in {retry_after} s, or "
        "answer a captcha (GET /v1/auth/captcha?login=LOGIN) with the login",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


def _too_many_sessions(
    user: User, sessions: list[Session], limit: int, resolve_token: str, ttl_s: float
) -> ApiError:
    return _coded(
        409,
        "too_many_sessions",
        f"{user.login} already has {len(sessions)} session(s), the most allowed is {limit}: "
        "end one (work not saved in it may be lost) with DELETE /v1/sessions/{id} and "
        "Authorization: Bearer <resolve_token>, then log in again",
        sessions=[session_json(s) for s in sessions],
        resolve_token=resolve_token,
        resolve_expires_in=int(ttl_s),
        max_sessions=limit,
    )


# --- ending sessions -----------------------------------------------------------------------


def end_session_as(request: web.Request, session_id: str, credential: str) -> None:
    """End session `session_id` on the authority of `credential`: a session secret (then
    only that user's own sessions, the current one included) or a resolve token from a
    409 (then one session of the user it was given for). ApiError 401 or 404."""
    store = request.app[STORE]
    caller = caller_from_secret(request, credential)
    not_found = ApiError(
        404, f"no session {session_id[:64]!r} among yours (it may have ended already)"
    )
    if caller is not None:
        if not store.accounts.delete_session(session_id, caller.user.login):
            raise not_found
        log.info("session %s of %r ended by %s", session_id, caller.user.login, caller.session.id)
        return
    grants = request.app[LOGIN_STATE].grants
    grant = grants.find(credential)
    if grant is None:
        raise ApiError(401, NO_SESSION, headers={"WWW-Authenticate": "Bearer"})
    if request.app[CLOCK].now() >= grant.expires_at:
        raise ApiError(
            401,
            "the resolve token expired: log in again to get the session list and a new one",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not store.accounts.delete_session(session_id, grant.login):
        raise not_found
    grants.use(credential)
    log.info("session %s of %r ended with a resolve token", session_id, grant.login)


# --- handlers -------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    return web.json_response(await login_flow(request, await read_json_object(request)))


async def captcha(request: web.Request) -> web.Response:
    """`GET /v1/auth/captcha[?login=L][&replaces=ID]`: a new captcha, for login L only when
    given; ID (a refresh) dies and passes its login on."""
    login = request.query.get("login", "")[:256] or None
    replaces = request.query.get("replaces", "")[:128]
    return web.json_response(
        await new_captcha(request, login, replaces), headers={"Cache-Control": "no-store"}
    )


async def logout(request: web.Request) -> web.Response:
    caller = require_session(request)
    request.app[STORE].accounts.delete_session(caller.session.id, caller.user.login)
    return web.Response(status=204)


async def list_sessions(request: web.Request) -> web.Response:
    caller = require_session(request)
    sessions = request.app[STORE].accounts.sessions_of(caller.user.login)
    # A bare list, newest first (docs/design.md §4: the order the user picks one to end).
    return web.json_response(
        [{**session_json(s), "current": s.id == caller.session.id} for s in sessions]
    )


async def end_session(request: web.Request) -> web.Response:
    credential = bearer_token(request)
    if credential is None:
        raise ApiError(401, NO_SESSION, headers={"WWW-Authenticate": "Bearer"})
    end_session_as(request, request.match_info["id"], credential)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app[LOGIN_STATE] = LoginState(
        CaptchaBook(),
        FailureLog(),
        ResolveGrants(),
        RenderBudget(),
        PasswordChecks(verify_password, DUMMY_HASH),
    )
    app.router.add_post("/v1/auth/login", login)
    app.router.add_get("/v1/auth/captcha", captcha)
    app.router.add_post("/v1/auth/logout", logout)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_delete("/v1/sessions/{id}", end_session)
