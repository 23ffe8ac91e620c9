"""What stands between a password guesser and an account: failure counts and rate limits,
and the short-lived grants that let a user at the session limit end a session.

All of it is pure bookkeeping with time passed in (the mock clock), kept in memory: a
restart forgets failures and outstanding grants, which only makes the mock friendlier.
Every table is bounded, so a flood of made-up logins cannot grow memory without end.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass

MAX_KEYS = 10_000
RESOLVE_TTL_S = 120.0


@dataclass(frozen=True)
class RateLimit:
    """At most `failures` failed logins within `window_s` seconds."""

    failures: int
    window_s: float


# Per login from one client address: a person mistyping gets ten tries; a guesser at
# that address gets ten per five minutes. Only that address waits: a lock per login
# alone would let anyone lock the owner out (issue 17).
LOGIN_LIMIT = RateLimit(10, 300.0)
# Per client address, whatever the login: higher, since offices share one address.
CLIENT_LIMIT = RateLimit(30, 300.0)
# Per login from everywhere: past this, every login of it needs a captcha (a guesser
# spread over many addresses), but nobody is locked out.
LOGIN_CAPTCHA_LIMIT = RateLimit(20, 300.0)
# Captcha images are CPU work: per client address, and for everybody together.
CAPTCHA_CLIENT_LIMIT = RateLimit(20, 60.0)
CAPTCHA_GLOBAL_LIMIT = RateLimit(600, 60.0)
# When everybody's budget is spent, a login that needs a captcha still gets one: from a
# reserve of a few draws per (login, client address) — a person's captcha and a refresh
# or two — bounded for everybody together (issue 25: 800 draws from 40 addresses emptied
# the budget and the owner's right password got 429). Emptying the reserve takes
# `CAPTCHA_RESERVE_LIMIT.failures / CAPTCHA_RESERVE_PER_CLIENT.failures` client addresses
# (IPv4 addresses or IPv6 /64s) drawing for logins that need a captcha, every minute.
CAPTCHA_RESERVE_PER_CLIENT = RateLimit(3, 60.0)
CAPTCHA_RESERVE_LIMIT = RateLimit(600, 60.0)


class _Windows:
    """Failure times per key within a sliding window, with bounded keys."""

    def __init__(self, limit: RateLimit, max_keys: int) -> None:
        self.limit = limit
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._max_keys = max_keys

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._times.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.limit.window_s:
            times.popleft()
        if not times:
            del self._times[key]
        return times

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until `key` may try again, or None if it may now."""
        times = self._recent(key, now)
        if len(times) < self.limit.failures:
            return None
        # The window frees a place when the oldest failure that keeps it full leaves.
        blocking = times[len(times) - self.limit.failures]
        return blocking + self.limit.window_s - now

    def add(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if key not in self._times:
            self._evict(now)
            self._times[key] = times
        times.append(now)
        # Only the newest `failures` entries can ever matter.
        while len(times) > self.limit.failures:
            times.popleft()
        self._times.move_to_end(key)

    def clear(self, key: str) -> None:
        self._times.pop(key, None)

    def _evict(self, now: float) -> None:
        if len(self._times) < self._max_keys:
            return
        for key in [k for k, t in self._times.items() if t[-1] <= now - self.limit.window_s]:
            del self._times[key]
        while len(self._times) >= self._max_keys:
            self._times.popitem(last=False)


class FailureLog:
    """Failed logins: rate limits per (login, client address) and per client address, a
    captcha requirement per login, and the per-login count of failures since the last
    success (what `captcha: {after_failures: N}` looks at).

    Unknown logins are counted exactly like known ones, so neither the captcha nor the
    rate limit tells which logins exist.
    """

    def __init__(
        self,
        per_login: RateLimit = LOGIN_LIMIT,
        per_client: RateLimit = CLIENT_LIMIT,
        captcha_after: RateLimit = LOGIN_CAPTCHA_LIMIT,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._pair = _Windows(per_login, max_keys)
        self._client = _Windows(per_client, max_keys)
        self._login = _Windows(captcha_after, max_keys)
        self._streaks: OrderedDict[str, int] = OrderedDict()
        self._max_keys = max_keys

    def retry_after(self, login: str, client: str, now: float) -> int | None:
        """Whole seconds (at least 1) until this login from this client may try again
        without a captcha."""
        waits = [
            w
            for w in (
                self._pair.retry_after(_pair(login, client), now),
                self._client.retry_after(client, now),
            )
            if w is not None
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    def needs_captcha(self, login: str, now: float) -> bool:
        """So many recent failures of `login`, from wherever, that it needs a captcha."""
        return self._login.retry_after(login, now) is not None

    def failed(self, login: str, client: str, now: float) -> None:
        self._pair.add(_pair(login, client), now)
        self._client.add(client, now)
        self._login.add(login, now)
        self._streaks[login] = self._streaks.pop(login, 0) + 1
        while len(self._streaks) > self._max_keys:
            self._streaks.popitem(last=False)

    def succeeded(self, login: str, client: str) -> None:
        self._streaks.pop(login, None)
        self._pair.clear(_pair(login, client))

    def failures(self, login: str) -> int:
        """Failed attempts for `login` since its last successful login."""
        return self._streaks.get(login, 0)


def _pair(login: str, client: str) -> str:
    return f"{client}\0{login}"


class RenderBudget:
    """How many captcha images a client address, and everybody, may have drawn; and the
    reserve that keeps a login that needs a captcha from ever being refused one because
    other addresses spent everybody's budget."""

    def __init__(
        self,
        per_client: RateLimit = CAPTCHA_CLIENT_LIMIT,
        overall: RateLimit = CAPTCHA_GLOBAL_LIMIT,
        max_keys: int = MAX_KEYS,
        reserve_per_client: RateLimit = CAPTCHA_RESERVE_PER_CLIENT,
        reserve: RateLimit = CAPTCHA_RESERVE_LIMIT,
    ) -> None:
        self._client = _Windows(per_client, max_keys)
        self._all = _Windows(overall, 1)
        self._reserve_pair = _Windows(reserve_per_client, max_keys)
        self._reserve = _Windows(reserve, 1)

    def take(self, client: str, now: float, needed_by: str | None = None) -> int | None:
        """None: draw one (it is counted). Otherwise whole seconds to wait.

        `needed_by`: the login this captcha is for, when that login needs one to log in:
        its draw may come from the reserve once everybody's budget is spent. A client
        over its own limit waits whatever the reserve holds."""
        own = self._client.retry_after(client, now)
        if own is not None:
            return max(1, math.ceil(own))
        everybody = self._all.retry_after("*", now)
        if everybody is None:
            self._client.add(client, now)
            self._all.add("*", now)
            return None
        if needed_by is None:
            return max(1, math.ceil(everybody))
        if self._from_reserve(_pair(needed_by, client), now):
            self._client.add(client, now)
            return None
        # The sooner of everybody's budget and this login's reserve frees a draw.
        return max(1, math.ceil(min(everybody, self._reserve_wait(needed_by, client, now))))

    def _from_reserve(self, key: str, now: float) -> bool:
        if self._reserve_pair.retry_after(key, now) is not None:
            return False
        if self._reserve.retry_after("*", now) is not None:
            return False
        self._reserve_pair.add(key, now)
        self._reserve.add("*", now)
        return True

    def _reserve_wait(self, login: str, client: str, now: float) -> float:
        waits = [
            w
            for w in (
                self._reserve_pair.retry_after(_pair(login, client), now),
                self._reserve.retry_after("*", now),
            )
            if w is not None
        ]
        return max(waits) if waits else 0.0


@dataclass(frozen=True)
class ResolveGrant:
    """Given with a 409 at the session limit: may end one session of `login`."""

    login: str
    client: str
    expires_at: float


class ResolveGrants:
    """Resolve tokens (only their hashes are kept) and, after one was used, a single
    captcha-free retry of the login from the same client until the token would have
    expired: the user already solved a captcha to get the 409."""

    def __init__(self, ttl_s: float = RESOLVE_TTL_S, max_keys: int = MAX_KEYS) -> None:
        self.ttl_s = ttl_s
        self._grants: OrderedDict[str, ResolveGrant] = OrderedDict()
        self._captcha_passes: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_keys = max_keys

    def issue(self, login: str, client: str, now: float) -> str:
        self._prune(now)
        token = "rs_" + secrets.token_urlsafe(24)
        self._grants[_hash(token)] = ResolveGrant(login, client, now + self.ttl_s)
        return token

    def find(self, token: str) -> ResolveGrant | None:
        """The grant of `token` (perhaps expired: the caller says so), or None."""
        return self._grants.get(_hash(token))

    def use(self, token: str) -> None:
        """`token` ended a session: it is spent, and its client may retry without captcha."""
        grant = self._grants.pop(_hash(token), None)
        if grant is None:
            return
        key = (grant.login, grant.client)
        self._captcha_passes.pop(key, None)
        self._captcha_passes[key] = grant.expires_at
        while len(self._captcha_passes) > self._max_keys:
            self._captcha_passes.popitem(last=False)

    def take_captcha_pass(self, login: str, client: str, now: float) -> bool:
        """Use up the captcha-free retry of `login` from `client`, if one is due."""
        expires_at = self._captcha_passes.pop((login, client), None)
        return expires_at is not None and now < expires_at

    def _prune(self, now: float) -> None:
        # Expired grants are kept a while so that using one says "expired", not "unknown".
        horizon = now - 10 * self.ttl_s
        for key in [k for k, g in self._grants.items() if g.expires_at < horizon]:
            del self._grants[key]
        while len(self._grants) >= self._max_keys:
            self._grants.popitem(last=False)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
