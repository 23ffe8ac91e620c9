"""Users' passwords and the accounts made at start-up (docs/design.md §4).

Passwords are stored as scrypt hashes (`hash_password`, `verify_password`: slow on
purpose, so call them through asyncio.to_thread). At start the mock applies its fixtures
(organizations, users, settings) and makes sure of the built-in owner, `admin` of org
`demo`, whose password it makes once and keeps in DATA_DIR/admin-password. A hash is
made again only when the stored one does not match the password given: restarts stay
fast. `users` does the logins and sessions with these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from agent.atomic_file import write_atomic
from cloud_mock.fixtures import DEFAULT_ORG, Fixtures
from cloud_mock.store import Store, User

ADMIN_LOGIN = "admin"
ADMIN_PASSWORD_FILE = "admin-password"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


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
DUMMY_HASH = hash_password(secrets.token_hex(16))


# --- start-up: fixtures and the built-in owner --------------------------------------------


def apply_fixtures(store: Store, fixtures: Fixtures) -> None:
    # Users of `demo` need it to exist before the built-in owner is made.
    store.accounts.ensure_org(DEFAULT_ORG, True)
    for org in fixtures.orgs:
        store.accounts.upsert_org(org.name, org.business)
    for user in fixtures.users:
        existing = store.accounts.get_user(user.login)
        password_hash = (
            existing.password_hash
            if existing is not None and verify_password(user.password, existing.password_hash)
            else hash_password(user.password)
        )
        store.accounts.upsert_user(
            User(user.login, user.org, user.role, password_hash, user.max_sessions)
        )
    if fixtures.settings:
        store.accounts.set_settings(fixtures.settings)


def ensure_admin(store: Store, data_dir: Path) -> None:
    """User `admin`, owner of org `demo`; its password is created once, kept.

    `demo` is made with a business account; fixtures may say otherwise, and win.
    """
    store.accounts.ensure_org(DEFAULT_ORG, True)
    path = data_dir / ADMIN_PASSWORD_FILE
    password = path.read_text().strip() if path.exists() else ""
    if not password:
        password = secrets.token_urlsafe(12)
        write_atomic(path, (password + "\n").encode(), 0o600)
    existing = store.accounts.get_user(ADMIN_LOGIN)
    if (
        existing is not None
        and existing.org == DEFAULT_ORG
        and existing.role == "owner"
        and verify_password(password, existing.password_hash)
    ):
        return
    store.accounts.upsert_user(
        User(
            ADMIN_LOGIN,
            DEFAULT_ORG,
            "owner",
            hash_password(password),
            existing.max_sessions if existing else None,
        )
    )
