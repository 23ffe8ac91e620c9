"""`--fixtures FILE`: organizations, users and settings to load at start.

The file is checked completely before anything is changed, and every problem is
reported with the file name and the JSON path of the offending value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeGuard

ROLES = ("owner", "manage_registrators", "viewer")
RESERVED_LOGINS = ("admin",)  # its password lives in DATA_DIR/admin-password
DEFAULT_ORG = "demo"
MAX_NAME = 128
# A week: long enough that a test (or a person) moving a day ahead keeps its session.
DEFAULT_SESSION_IDLE_S = 7 * 86_400.0
# An unproven claim (a camera added but never proven by its device) expires after 30 days.
DEFAULT_CLAIM_TTL_S = 30 * 86_400.0
# The provisioning log keeps a week.
DEFAULT_POLL_LOG_MAX_AGE_S = 7 * 86_400.0
SETTINGS_KEYS = (
    "captcha",
    "max_sessions",
    "session_idle_s",
    "claim_ttl_s",
    "poll_log_max_age_s",
)


class FixtureError(Exception):
    """The fixtures file is unreadable or invalid; the message names file and place."""


@dataclass(frozen=True)
class OrgFixture:
    name: str
    business: bool


@dataclass(frozen=True)
class UserFixture:
    login: str
    password: str
    org: str
    role: str
    max_sessions: int | None


class CaptchaMode(Enum):
    OFF = "off"
    ALWAYS = "always"
    AFTER_FAILURES = "after_failures"


@dataclass(frozen=True)
class CaptchaPolicy:
    mode: CaptchaMode = CaptchaMode.OFF
    after_failures: int = 0

    def required(self, failures: int) -> bool:
        """Whether a login with `failures` failed attempts since its last success needs one."""
        if self.mode is CaptchaMode.AFTER_FAILURES:
            return failures >= self.after_failures
        return self.mode is CaptchaMode.ALWAYS


@dataclass(frozen=True)
class AccountSettings:
    """`settings` of the fixtures: captcha policy, session limit, idle expiry, how long
    an unproven claim lives, how long the provisioning log keeps its rows."""

    captcha: CaptchaPolicy = field(default_factory=CaptchaPolicy)
    max_sessions: int | None = None  # None: no limit (unless the user has one)
    session_idle_s: float = DEFAULT_SESSION_IDLE_S
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S
    poll_log_max_age_s: float = DEFAULT_POLL_LOG_MAX_AGE_S

    def session_limit(self, user_max_sessions: int | None) -> int | None:
        """The user's own limit beats the global one; None means unlimited."""
        return user_max_sessions if user_max_sessions is not None else self.max_sessions


@dataclass(frozen=True)
class Fixtures:
    orgs: list[OrgFixture] = field(default_factory=list)
    users: list[UserFixture] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def load_fixtures(path: Path) -> Fixtures:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FixtureError(f"{path}: cannot read fixtures: {error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise FixtureError(f"{path}: not valid JSON: {error}") from None
    try:
        return parse_fixtures(data)
    except ValueError as error:
        raise FixtureError(f"{path}: {error}") from None


def parse_fixtures(data: object) -> Fixtures:
    """Validate decoded JSON; ValueError names the first problem by its JSON path."""
    if not isinstance(data, dict):
        raise ValueError("the top level must be a JSON object with orgs, users, settings")
    unknown = sorted(set(data) - {"orgs", "users", "settings"})
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))} (expected orgs, users, settings)"
        )
    orgs = [_org(item, f"orgs[{i}]") for i, item in enumerate(_list(data, "orgs"))]
    org_names = {org.name for org in orgs} | {DEFAULT_ORG}
    _no_duplicates([org.name for org in orgs], "orgs", "name")
    users = [_user(item, f"users[{i}]", org_names) for i, item in enumerate(_list(data, "users"))]
    _no_duplicates([user.login for user in users], "users", "login")
    settings = data.get("settings", {})
    parse_settings(settings)
    return Fixtures(orgs=orgs, users=users, settings=settings)


def parse_settings(data: object, where: str = "settings") -> AccountSettings:
    """Validate a settings object; ValueError names the offending path under `where`."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a JSON object")
    unknown = sorted(set(data) - set(SETTINGS_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} "
            f"(expected {', '.join(SETTINGS_KEYS)})"
        )
    max_sessions = data.get("max_sessions")
    if max_sessions is not None and not _positive_int(max_sessions):
        raise ValueError(f"{where}.max_sessions: must be a positive integer (at most {MAX_COUNT})")
    return AccountSettings(
        captcha=_captcha_policy(data.get("captcha", "off"), f"{where}.captcha"),
        max_sessions=max_sessions,
        session_idle_s=_seconds(data, "session_idle_s", DEFAULT_SESSION_IDLE_S, where),
        claim_ttl_s=_seconds(data, "claim_ttl_s", DEFAULT_CLAIM_TTL_S, where),
        poll_log_max_age_s=_seconds(data, "poll_log_max_age_s", DEFAULT_POLL_LOG_MAX_AGE_S, where),
    )


MAX_SECONDS = 100 * 365 * 86_400.0


def _seconds(data: dict[str, Any], key: str, default: float, where: str) -> float:
    value = data.get(key, default)
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 < value <= MAX_SECONDS
    ):
        raise ValueError(
            f"{where}.{key}: must be a number of seconds greater than 0 "
            f"and at most {MAX_SECONDS:.0f}"
        )
    return float(value)


def _captcha_policy(value: object, where: str) -> CaptchaPolicy:
    if value in (CaptchaMode.OFF.value, CaptchaMode.ALWAYS.value):
        return CaptchaPolicy(CaptchaMode(value))
    if isinstance(value, dict):
        _keys(value, where, {"after_failures"})
        count = value.get("after_failures")
        if not _positive_int(count):
            raise ValueError(
                f"{where}.after_failures: must be a positive integer (at most {MAX_COUNT}) "
                '(use "always" for 0)'
            )
        return CaptchaPolicy(CaptchaMode.AFTER_FAILURES, count)
    raise ValueError(f'{where}: must be "off", "always" or {{"after_failures": N}}')


MAX_COUNT = 1_000_000  # any count in the settings (sessions, failures): range-checked


def _positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_COUNT


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key}: must be a list")
    return value


def _no_duplicates(names: list[str], section: str, key: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{section}: {key} {name!r} appears twice")
        seen.add(name)


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}.{key}: must be a non-empty string")
    if len(value) > MAX_NAME:
        raise ValueError(f"{where}.{key}: longer than {MAX_NAME} characters")
    return value


def _keys(item: object, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be a JSON object")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    return item


def _org(item: object, where: str) -> OrgFixture:
    org = _keys(item, where, {"name", "business"})
    business = org.get("business", False)
    if not isinstance(business, bool):
        raise ValueError(f"{where}.business: must be true or false")
    return OrgFixture(name=_text(org, "name", where), business=business)


def _user(item: object, where: str, org_names: set[str]) -> UserFixture:
    user = _keys(item, where, {"login", "password", "org", "role", "max_sessions"})
    login = _text(user, "login", where)
    if login in RESERVED_LOGINS:
        raise ValueError(
            f"{where}.login: {login!r} is reserved for the built-in owner "
            "(its password is in the data directory's admin-password)"
        )
    org = _text(user, "org", where)
    if org not in org_names:
        raise ValueError(f"{where}.org: {org!r} is not an org of this file (nor {DEFAULT_ORG!r})")
    role = user.get("role")
    if role not in ROLES:
        raise ValueError(f"{where}.role: must be one of {', '.join(ROLES)}")
    max_sessions = user.get("max_sessions")
    if max_sessions is not None and not _positive_int(max_sessions):
        raise ValueError(f"{where}.max_sessions: must be a positive integer (at most {MAX_COUNT})")
    password = user.get("password")
    if not isinstance(password, str) or not password:
        raise ValueError(f"{where}.password: must be a non-empty string")
    return UserFixture(
        login=login, password=password, org=org, role=str(role), max_sessions=max_sessions
    )
