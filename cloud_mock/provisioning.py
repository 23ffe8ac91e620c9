"""The provisioning service (docs/design.md §2): `POST /v1/provisioning/poll` and `GET /v1/keys`.

Order of checks: size, injected fault, shape (400), clock window, replay, then device +
proof.  Unknown device, wrong proof and "no token yet" all answer 204 after the same
hold, so an observer cannot tell which it was; the proof is checked against every open
claim of the device with the same number of HMACs whatever the device (see claims.py).
Of the claims whose K verifies the newest wins: its token is sealed, and an org whose
claim the device was connected under sees its camera `moved`, its token revoked.

The poll log is written after the answer has left (so that writing it shows in no
timing), one row per (poll, claim) and one aggregated row per period for polls that
belong to no claim; it is kept by age (a setting) and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import PollRequest, seal_token
from cloud_mock import claims
from cloud_mock.api import ApiError, read_body
from cloud_mock.devices_ws import CHANNELS, CLOSE_REVOKED
from cloud_mock.fixtures import AccountSettings
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.log_limit import RateLimitedLogger
from cloud_mock.pki import key_id, public_pem
from cloud_mock.resources import HeldPollCounter, HeldPollLimits, give_memory_back
from cloud_mock.store import Camera, PollRecord, Store
from cloud_mock.store.devices import Aggregated
from cloud_mock.users import account_settings

log = logging.getLogger("cloud_mock.provisioning")
_cap_log = RateLimitedLogger(log)

POLL_BODY_LIMIT = 4 * 1024
TS_WINDOW_S = 300
NONCE_PRUNE_EVERY_S = 10.0
# The poll log: at most this many rows (besides the age limit, a setting), pruned this often.
POLL_LOG_MAX_ROWS = 100_000
POLL_LOG_PRUNE_EVERY_S = 10.0
POLL_LOG_PRUNE_AFTER_ROWS = 1_000
# Polls that belong to no claim are counted per result and per period of this length.
AGGREGATE_PERIOD_S = 60.0
# The test hooks' per-poll trace keeps this many rows.
TRACE_ROWS = 10_000
# Log rows waiting to be written; beyond this they are counted and dropped.
MAX_PENDING_ROWS = 10_000
COMPLAIN_EVERY_S = 60.0


class PollWaiters:
    """Held polls, keyed by device_id: O(1) to add, to time out, and to wake one device.

    A waiter is a bare future; `notify` resolves every future of one device with True
    (something changed: check again), `close` resolves all with False (shutting down).
    How many are held is capped in total and per client address (cloud_mock.resources);
    a poll over a cap is not held.
    """

    # After a burst this big has gone, freed memory is handed back to the system.
    TRIM_AFTER = 256

    def __init__(self, limits: HeldPollLimits | None = None) -> None:
        self._waiting: dict[str, set[asyncio.Future[bool]]] = {}
        self._closed = False
        self.held = HeldPollCounter(limits or HeldPollLimits())
        self._peak = 0

    def __len__(self) -> int:
        return len(self.held)

    async def wait(self, device_id: str, timeout: float, client: str = "") -> bool:
        """True if woken for this device within `timeout`, False on timeout, shutdown, or
        when a cap says this poll may not be held."""
        if self._closed or timeout <= 0:
            return False
        if not self.held.try_enter(client):
            _cap_log.warning(
                "held-poll cap reached (%d in total, %d per address): a poll from %s "
                "was answered at once",
                self.held.limits.total,
                self.held.limits.per_client,
                client,
            )
            return False
        self._peak = max(self._peak, len(self.held))
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        bucket = self._waiting.setdefault(device_id, set())
        bucket.add(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            bucket.discard(future)
            if not bucket and self._waiting.get(device_id) is bucket:
                del self._waiting[device_id]
            self.held.leave(client)
            if not self.held and self._peak >= self.TRIM_AFTER:
                self._peak = 0
                give_memory_back()

    def notify(self, device_id: str) -> int:
        bucket = self._waiting.pop(device_id, set())
        for future in bucket:
            if not future.done():
                future.set_result(True)
        return len(bucket)

    def close(self) -> None:
        self._closed = True
        for bucket in self._waiting.values():
            for future in bucket:
                if not future.done():
                    future.set_result(False)
        self._waiting.clear()


@dataclass
class Fault:
    status: int
    retry_after: int
    count: int


class FaultInjector:
    """Test hook state: the next `count` polls answer `status` with Retry-After."""

    def __init__(self) -> None:
        self.pending: Fault | None = None

    def take(self) -> Fault | None:
        fault = self.pending
        if fault is None:
            return None
        fault.count -= 1
        if fault.count <= 0:
            self.pending = None
        return fault


WAITERS = web.AppKey("poll_waiters", PollWaiters)
FAULTS = web.AppKey("poll_faults", FaultInjector)


@dataclass
class _Outcome:
    result: str  # token | none | unknown | bad_proof
    sealed: str | None = None
    checked: list[Camera] = field(default_factory=list)  # the live claims checked
    verdict: claims.Verdict | None = None


def _check(app: web.Application, poll: PollRequest) -> _Outcome:
    """Check the proof against every live claim of the device (and its NVR entry); let
    the newest verified claim win."""
    store, now = app[STORE], app[CLOCK].now()
    ttl = account_settings(store).claim_ttl_s
    open_claims = store.claims_on(poll.device_id, pad_to=claims.MAX_OPEN_CLAIMS)
    for claim in claims.expired(open_claims, now, ttl):
        store.mark_dropped(claim.camera_id, now)
    live = claims.live_claims(open_claims, now, ttl)
    entry = store.provisioning_entry(poll.device_id)
    verdict = claims.verify(live, entry.key if entry is not None else None, poll)
    if verdict.winner is not None:
        token = _win(app, live, verdict, now)
        sealed = seal_token(verdict.winner.key or b"", poll.device_id, token)
        return _Outcome("token", sealed, live, verdict)
    if entry is not None and verdict.nvr_verified:
        if entry.token is None:
            return _Outcome("none", None, live, verdict)
        return _Outcome("token", seal_token(entry.key, poll.device_id, entry.token), live, verdict)
    if not live and entry is None:
        return _Outcome("unknown", None, live, verdict)
    return _Outcome("bad_proof", None, live, verdict)


def _win(app: web.Application, live: list[Camera], verdict: claims.Verdict, now: float) -> str:
    """Record the win; claims of other orgs the device was connected under with the same
    password lose it (claims.to_move says why only those)."""
    store, winner = app[STORE], verdict.winner
    assert winner is not None
    with store.transaction():
        store.mark_proven(winner.camera_id, now)
        moved = claims.to_move(live, verdict)
        for claim in moved:
            store.mark_moved(claim.camera_id, now)
    for claim in moved:
        channel = app[CHANNELS].get(claim.camera_id)
        if channel is not None:
            app[CHANNELS].close(channel, CLOSE_REVOKED, "token revoked: the camera moved")
        log.info("camera %s of %s moved to another account", claim.device_id, claim.org)
    return winner.token or ""


class PollLog:
    """The poll log's writer: rows are collected while a poll is answered and written in
    one transaction just after (never on the answer's path); bounded in memory, and the
    table kept by age and count."""

    def __init__(self, store: Store, *, trace: bool) -> None:
        self._store = store
        self._trace = trace
        self._rows: list[PollRecord] = []
        self._traced: list[PollRecord] = []
        self._aggregated: dict[tuple[str, float], int] = {}
        self._flush_scheduled = False
        self._last_prune = 0.0
        self._written = 0
        self.dropped = 0
        self._failures = 0
        self._last_complaint = -COMPLAIN_EVERY_S

    def record(self, poll: PollRecord, outcome: _Outcome | None) -> None:
        """One poll: a row for each claim it was checked against, else the aggregate."""
        if len(self._rows) + len(self._traced) >= MAX_PENDING_ROWS:
            self.dropped += 1
            self._complain(f"poll log behind: {self.dropped} row(s) dropped so far")
            return
        if self._trace:
            self._traced.append(poll)
        if outcome is not None and outcome.verdict is not None and outcome.checked:
            for claim in outcome.checked:
                result = outcome.verdict.result_for(claim)
                self._rows.append(
                    PollRecord(
                        claim.device_id, poll.at, result, poll.wait, poll.held_s, claim.camera_id
                    )
                )
        else:
            period = math.floor(poll.at / AGGREGATE_PERIOD_S) * AGGREGATE_PERIOD_S
            key = (poll.result, period)
            self._aggregated[key] = self._aggregated.get(key, 0) + 1
        self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # After the current task step: the answer is written by then.
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        rows, traced, aggregated = self._rows, self._traced, self._aggregated
        self._rows, self._traced, self._aggregated = [], [], {}
        self._written += len(rows) + len(aggregated)
        try:
            self._store.log_polls(rows, [Aggregated(r, p, n) for (r, p), n in aggregated.items()])
            if traced:
                self._store.trace_polls(traced, keep=TRACE_ROWS)
        except Exception:  # the log must never take a poll down with it
            self._failures += 1
            self._complain(
                f"writing the poll log failed {self._failures} time(s), "
                f"{len(rows) + len(traced)} row(s) lost now",
                exc_info=True,
            )

    def _complain(self, message: str, *, exc_info: bool = False) -> None:
        """At most one warning a minute: a flood of polls must not flood the log too."""
        if time.monotonic() - self._last_complaint >= COMPLAIN_EVERY_S:
            self._last_complaint = time.monotonic()
            log.warning("%s", message, exc_info=exc_info)

    def maybe_prune(self, now: float, settings: AccountSettings) -> None:
        """Every few seconds, or sooner when many rows were written since the last time."""
        due = time.monotonic() - self._last_prune >= POLL_LOG_PRUNE_EVERY_S
        if due or self._written >= POLL_LOG_PRUNE_AFTER_ROWS:
            self._last_prune = time.monotonic()
            self._written = 0
            self.prune(now, settings)

    def prune(self, now: float, settings: AccountSettings) -> int:
        return self._store.prune_poll_log(now - settings.poll_log_max_age_s, POLL_LOG_MAX_ROWS)


POLL_LOG = web.AppKey("poll_log", PollLog)


class _NoncePruner:
    """Drop nonces whose `ts` has left the window (they can never be accepted again)."""

    def __init__(self) -> None:
        self._last = 0.0

    def maybe_prune(self, store: Store, now: float) -> None:
        if time.monotonic() - self._last >= NONCE_PRUNE_EVERY_S:
            self._last = time.monotonic()
            store.prune_nonces(now - TS_WINDOW_S)


PRUNER = web.AppKey("nonce_pruner", _NoncePruner)


def parse_poll(body: bytes) -> PollRequest:
    return PollRequest.parse(body)


def _device_id_for_log(body: bytes) -> str:
    with contextlib.suppress(WireError):
        return parse_poll(body).device_id
    return ""


async def poll(request: web.Request) -> web.StreamResponse:
    store, clock = request.app[STORE], request.app[CLOCK]
    # `at` is when the poll arrived (schedules run from the start of one request to the
    # start of the next); `held_s` says how long it was held.
    arrived, started = clock.now(), time.monotonic()

    def record(device_id: str, result: str, wait: int = 0, outcome: _Outcome | None = None) -> None:
        held = time.monotonic() - started
        request.app[POLL_LOG].record(PollRecord(device_id, arrived, result, wait, held), outcome)

    try:
        body = await read_body(request, POLL_BODY_LIMIT)
    except ApiError:
        record("", "malformed")
        raise
    fault = request.app[FAULTS].take()
    if fault is not None:
        record(_device_id_for_log(body), "fault")
        raise ApiError(
            fault.status,
            "provisioning service unavailable (injected fault)",
            headers={"Retry-After": str(fault.retry_after)},
        )
    try:
        req = parse_poll(body)
    except WireError as error:
        record("", "malformed")
        raise ApiError(400, str(error)) from None

    now = clock.now()
    if abs(req.ts - now) > TS_WINDOW_S:
        # Answered at once: the Date header lets a device without a clock correct `ts`.
        record(req.device_id, "clock_skew", req.wait)
        return web.Response(status=204)
    request.app[PRUNER].maybe_prune(store, now)
    request.app[POLL_LOG].maybe_prune(now, account_settings(store))
    if not store.remember_nonce(req.nonce, req.ts):
        record(req.device_id, "replay", req.wait)
        return web.Response(status=204)

    outcome = _check(request.app, req)
    if outcome.sealed is None:
        try:
            outcome = await _hold(request, req, outcome)
        except asyncio.CancelledError:  # the device hung up while its poll was held
            record(req.device_id, "abandoned", req.wait, outcome)
            raise
    record(req.device_id, outcome.result, req.wait, outcome)
    if outcome.sealed is None:
        return web.Response(status=204)
    log.info("token handed to %s", req.device_id)
    return web.json_response({"sealed_token": outcome.sealed})


async def _hold(request: web.Request, req: PollRequest, outcome: _Outcome) -> _Outcome:
    """Long-poll: wait for the device's camera to appear, re-checking on every wake-up."""
    hold = min(float(req.wait), request.app[CONFIG].max_hold_s)
    if hold <= 0:
        return outcome
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold
    waiters = request.app[WAITERS]
    while (remaining := deadline - loop.time()) > 0:
        if not await waiters.wait(req.device_id, remaining, request.remote or ""):
            break  # timed out, or the server is shutting down
        outcome = _check(request.app, req)
        if outcome.sealed is not None:
            break
    return outcome


async def keys(request: web.Request) -> web.Response:
    public = request.app[CONFIG].signing_key.public_key()
    return web.json_response(
        {"keys": [{"kid": key_id(public), "alg": "Ed25519", "pem": public_pem(public)}]}
    )


async def _close_waiters(app: web.Application) -> None:
    app[WAITERS].close()


async def _poll_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """The writer lives as long as the store (opened in an earlier cleanup context)."""
    app[POLL_LOG] = PollLog(app[STORE], trace=app[CONFIG].test_hooks)
    yield
    app[POLL_LOG].flush()


def setup(app: web.Application) -> None:
    app[WAITERS] = PollWaiters(app[CONFIG].held_polls)
    app[FAULTS] = FaultInjector()
    app[PRUNER] = _NoncePruner()
    app.on_shutdown.append(_close_waiters)
    app.cleanup_ctx.append(_poll_log_ctx)
    app.router.add_post("/v1/provisioning/poll", poll)
    app.router.add_get("/v1/keys", keys)
