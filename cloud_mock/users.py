"""Accounts and sessions: login, logout, the session list (DESIGN §4).

A session is two things: a public `id` (listed, used to end a session) and a bearer
secret given once at login; only the secret's SHA-256 is stored, so listing sessions
never reveals another session's credential.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.atomic_file import write_atomic
from cloud_mock.api import ApiError, bearer_token, get_str, read_json_object
from cloud_mock.fixtures import DEFAULT_ORG, Fixtures
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.store import Session, Store, User

log = logging.getLogger("cloud_mock.users")

ADMIN_LOGIN = "admin"
ADMIN_PASSWORD_FILE = "admin-password"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
WRONG_LOGIN = "wrong login or password"
NO_SESSION = "no valid session: log in with POST /v1/auth/login and send Authorization: Bearer"
ROLES_THAT_CHANGE = ("owner", "manage_registrators")


# --- password hashing (slow on purpose: call through asyncio.to_thread) -----------------


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        (
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 * 1024 * 1024
    )


# A hash of a random password: unknown logins are checked against it, so that they cost
# the same time as known ones and the answer does not reveal which logins exist.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


# --- start-up: fixtures and the built-in owner --------------------------------------------


def apply_fixtures(store: Store, fixtures: Fixtures) -> None:
    # Users of `demo` need it to exist before the built-in owner is made.
    store.ensure_org(DEFAULT_ORG, True)
    for org in fixtures.orgs:
        store.upsert_org(org.name, org.business)
    for user in fixtures.users:
        existing = store.get_user(user.login)
        password_hash = (
            existing.password_hash
            if existing is not None and verify_password(user.password, existing.password_hash)
            else hash_password(user.password)
        )
        store.upsert_user(User(user.login, user.org, user.role, password_hash, user.max_sessions))
    if fixtures.settings:
        store.set_settings(fixtures.settings)


def ensure_admin(store: Store, data_dir: Path) -> None:
    """User `admin`, owner of org `demo`; its password is created once, kept.

    `demo` is made with a business account; fixtures may say otherwise, and win.
    """
    store.ensure_org(DEFAULT_ORG, True)
    path = data_dir / ADMIN_PASSWORD_FILE
    password = path.read_text().strip() if path.exists() else ""
    if not password:
        password = secrets.token_urlsafe(12)
        write_atomic(path, (password + "\n").encode(), 0o600)
    existing = store.get_user(ADMIN_LOGIN)
    if (
        existing is not None
        and existing.org == DEFAULT_ORG
        and existing.role == "owner"
        and verify_password(password, existing.password_hash)
    ):
        return
    store.upsert_user(
        User(
            ADMIN_LOGIN,
            DEFAULT_ORG,
            "owner",
            hash_password(password),
            existing.max_sessions if existing else None,
        )
    )


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


def require_session(request: web.Request) -> Caller:
    store = request.app[STORE]
    secret = bearer_token(request)
    session = store.session_by_secret(_secret_hash(secret)) if secret else None
    user = store.get_user(session.login) if session else None
    if session is None or user is None:
        raise ApiError(401, NO_SESSION, headers={"WWW-Authenticate": "Bearer"})
    now = request.app[CLOCK].now()
    store.touch_session(session.id, now)
    return Caller(user, session)


def user_json(user: User) -> dict[str, Any]:
    return {"login": user.login, "org": user.org, "role": user.role}


# --- handlers -------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    login_name = get_str(data, "login", max_len=256)
    password = get_str(data, "password", max_len=1024)
    device = get_str(data, "device", required=False, default="unknown device", max_len=256)
    software = get_str(data, "software", required=False, default="unknown software", max_len=256)
    store = request.app[STORE]
    user = store.get_user(login_name)
    stored = user.password_hash if user else _DUMMY_HASH
    matches = await asyncio.to_thread(verify_password, password, stored)
    if user is None or not matches:
        log.info("login refused for %r", login_name)
        raise ApiError(401, WRONG_LOGIN)
    secret = secrets.token_urlsafe(32)
    now = request.app[CLOCK].now()
    session = Session(uuid.uuid4().hex, user.login, device, software, now, now)
    store.add_session(session, _secret_hash(secret))
    log.info("login %r (%s, %s)", user.login, device, software)
    return web.json_response({"session": secret, "session_id": session.id, "user": user_json(user)})


async def logout(request: web.Request) -> web.Response:
    caller = require_session(request)
    request.app[STORE].delete_session(caller.session.id, caller.user.login)
    return web.Response(status=204)


async def list_sessions(request: web.Request) -> web.Response:
    caller = require_session(request)
    sessions = request.app[STORE].sessions_of(caller.user.login)
    # A bare list, newest first (DESIGN §4: the order the user picks one to end).
    return web.json_response(
        [
            {
                "id": s.id,
                "device": s.device,
                "software": s.software,
                "started": s.started,
                "last_activity": s.last_activity,
                "current": s.id == caller.session.id,
            }
            for s in sessions
        ]
    )


async def end_session(request: web.Request) -> web.Response:
    caller = require_session(request)
    if not request.app[STORE].delete_session(request.match_info["id"], caller.user.login):
        raise ApiError(404, "no such session")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/auth/login", login)
    app.router.add_post("/v1/auth/logout", logout)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_delete("/v1/sessions/{id}", end_session)
