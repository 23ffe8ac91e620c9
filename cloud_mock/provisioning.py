"""The provisioning service (docs/design.md §2): `POST /v1/provisioning/poll` and `GET /v1/keys`.

Order of checks: size, injected fault, shape (400), clock window, replay, then device +
proof.  Unknown device, wrong proof and "no token yet" all answer 204 after the same
hold, so an observer cannot tell which it was. The proof is checked against the device's
eight places (cloud_mock/claims.py), read from memory, with the same work whatever they
hold: nothing a poll costs tells how many organizations claimed the device. Of the claims
whose K verifies the newest wins: its token is sealed, and an org whose claim the device
was connected under sees its camera `moved`, its token revoked.

The poll log is written after the answer has left (so that writing it shows in no
timing): a row in the history of each claim whose K the poll proved, and nowhere else;
every other poll is counted in one aggregated row per result and period (class PollLog).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import PollRequest, normalize_device_id, seal_token
from cloud_mock import claims
from cloud_mock.api import ApiError, read_body
from cloud_mock.clock import MockClock
from cloud_mock.devices_ws import CHANNELS, CLOSE_REVOKED
from cloud_mock.fixtures import AccountSettings
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.log_limit import RateLimitedLogger
from cloud_mock.pki import key_id, public_pem
from cloud_mock.resources import HeldPollCounter, HeldPollLimits, give_memory_back
from cloud_mock.store import PollRecord, Store
from cloud_mock.store.devices import Aggregated
from cloud_mock.users import account_settings

log = logging.getLogger(__name__)
_cap_log = RateLimitedLogger(log)

POLL_BODY_LIMIT = 4 * 1024
TS_WINDOW_S = 300
NONCE_PRUNE_EVERY_S = 10.0
# The poll log, kept by age (a setting) and: per claim, its newest rows (the API and the
# console show as many); rows that are nobody's (the aggregates), by count. Pruned after
# a write this often, or after this many rows.
POLL_LOG_ROWS_PER_CLAIM = 200
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
    verdict: claims.Verdict | None = None


def _check(app: web.Application, poll: PollRequest) -> _Outcome:
    """Check the proof against the device's places (and its NVR entry); let the newest
    verified claim win. Until a claim verifies, the work is the same whatever the device:
    one lookup of its places in memory, one of its NVR entry, `PROOF_SLOTS` HMACs, and
    no write (claims.py)."""
    store, now = app[STORE], app[CLOCK].now()
    ttl = account_settings(store).claim_ttl_s
    places = store.devices.claim_places(poll.device_id)
    entry = store.devices.provisioning_entry(poll.device_id)
    verdict = claims.verify(places, entry.key if entry is not None else None, poll, now, ttl)
    if verdict.winner is not None:
        token = _win(app, poll.device_id, verdict, now)
        if token is not None:
            return _Outcome("token", seal_token(verdict.winner.key, poll.device_id, token), verdict)
    if entry is not None and verdict.nvr_verified:
        if entry.token is None:
            return _Outcome("none", None, verdict)
        return _Outcome("token", seal_token(entry.key, poll.device_id, entry.token), verdict)
    if not verdict.claimed and entry is None:
        return _Outcome("unknown", None, verdict)
    return _Outcome("bad_proof", None, verdict)


def _win(app: web.Application, device_id: str, verdict: claims.Verdict, now: float) -> str | None:
    """Record the win and return the winner's token; claims of other orgs the device was
    connected under with the same password lose it (claims.to_move says why only those)."""
    store, winner = app[STORE], verdict.winner
    assert winner is not None
    camera = store.devices.get_camera(winner.camera_id)
    if camera is None or camera.token is None:  # the places are rebuilt on every change
        log.error("camera %s of %s: a place without its claim", device_id, winner.org)
        return None
    moved = claims.to_move(verdict)
    with store.devices.transaction():
        store.devices.mark_proven(winner.camera_id, now)
        for place in moved:
            store.devices.mark_moved(place.camera_id, now)
    for place in moved:
        channel = app[CHANNELS].get(place.camera_id)
        if channel is not None:
            app[CHANNELS].close(channel, CLOSE_REVOKED, "token revoked: the camera moved")
        log.info("camera %s of %s moved to another account", device_id, place.org)
    return camera.token


class PollLog:
    """The poll log's writer: what a poll showed is noted while it is answered (one
    append, whatever the device) and written in one transaction just after, never on the
    answer's path; bounded in memory.

    A poll leaves a row in the history of each claim whose K it proved, and of no other
    claim: a poll that proved none (unknown device, wrong proof, replay, clock skew, …)
    is nobody's and only counted, per result and period. Each claim keeps its newest
    `POLL_LOG_ROWS_PER_CLAIM` rows; the table is also kept by age (a setting), and the
    rows that are nobody's by count.
    """

    def __init__(self, store: Store, *, trace: bool, clock: MockClock | None = None) -> None:
        self._store = store
        self._trace = trace
        self._clock = clock  # with a clock, every flush may prune (without: `prune` only)
        self._proved: list[tuple[PollRecord, claims.Verdict]] = []
        self._traced: list[PollRecord] = []
        self._aggregated: dict[tuple[str, float], int] = {}
        self._flush_scheduled = False
        self._last_prune = 0.0
        self._written = 0
        self.dropped = 0
        self._failures = 0
        self._last_complaint = -COMPLAIN_EVERY_S

    def record(self, poll: PollRecord, outcome: _Outcome | None) -> None:
        """One poll: noted for the claims it proved, else counted in the aggregate."""
        if len(self._proved) + len(self._traced) >= MAX_PENDING_ROWS:
            self.dropped += 1
            self._complain(f"poll log behind: {self.dropped} row(s) dropped so far")
            return
        if self._trace:
            self._traced.append(poll)
        verdict = outcome.verdict if outcome is not None else None
        if verdict is not None and verdict.verified:
            self._proved.append((poll, verdict))
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
        proved, traced, aggregated = self._proved, self._traced, self._aggregated
        self._proved, self._traced, self._aggregated = [], [], {}
        rows = [
            PollRecord(poll.device_id, poll.at, result, poll.wait, poll.held_s, place.camera_id)
            for poll, verdict in proved
            for place in verdict.verified
            if (result := verdict.result_for(place.camera_id)) is not None
        ]
        self._written += len(rows) + len(aggregated)
        try:
            self._store.devices.log_polls(
                rows,
                [Aggregated(r, p, n) for (r, p), n in aggregated.items()],
                per_claim=POLL_LOG_ROWS_PER_CLAIM,
            )
            if traced:
                self._store.devices.trace_polls(traced, keep=TRACE_ROWS)
            if self._clock is not None:
                self.maybe_prune(self._clock.now(), account_settings(self._store))
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
        return self._store.devices.prune_poll_log(
            now - settings.poll_log_max_age_s, POLL_LOG_MAX_ROWS
        )


POLL_LOG = web.AppKey("poll_log", PollLog)


class _NoncePruner:
    """Drop nonces whose `ts` has left the window (they can never be accepted again)."""

    def __init__(self) -> None:
        self._last = 0.0

    def maybe_prune(self, store: Store, now: float) -> None:
        if time.monotonic() - self._last >= NONCE_PRUNE_EVERY_S:
            self._last = time.monotonic()
            store.devices.prune_nonces(now - TS_WINDOW_S)


PRUNER = web.AppKey("nonce_pruner", _NoncePruner)


def parse_poll(body: bytes) -> PollRequest:
    """Parse a poll; its `device_id` in canonical form (any MAC spelling the add accepts).

    An ID outside the grammar is a WireError (400 naming the rule), never a silent 204.
    The proof covers the canonical ID (docs/design.md).
    """
    request = PollRequest.parse(body)
    canonical = normalize_device_id(request.device_id)
    if canonical != request.device_id:
        request = dataclasses.replace(request, device_id=canonical)
    return request


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
    if not store.devices.remember_nonce(req.nonce, req.ts):
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
    app[POLL_LOG] = PollLog(app[STORE], trace=app[CONFIG].test_hooks, clock=app[CLOCK])
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
