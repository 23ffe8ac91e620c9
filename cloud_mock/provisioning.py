"""The provisioning service (DESIGN §2): `POST /v1/provisioning/poll` and `GET /v1/keys`.

Order of checks: size, injected fault, shape (400), clock window, replay, then device +
proof.  Unknown device, wrong proof and "no token yet" all answer 204 after the same
hold, so an observer cannot tell which it was; only the poll log (test hooks) can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass

from aiohttp import web

from agent.errors import WireError
from agent.provisioning.wire import PollRequest, proof_matches, seal_token
from cloud_mock.api import ApiError, read_body
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.log_limit import RateLimitedLogger
from cloud_mock.pki import key_id, public_pem
from cloud_mock.resources import HeldPollCounter, HeldPollLimits, give_memory_back
from cloud_mock.store import PollRecord, Store

log = logging.getLogger("cloud_mock.provisioning")
_cap_log = RateLimitedLogger(log)

POLL_BODY_LIMIT = 4 * 1024
TS_WINDOW_S = 300
NONCE_PRUNE_EVERY_S = 10.0
# Unknown devices are "checked" against this key, so they cost the same HMAC as known ones.
_DUMMY_KEY = os.urandom(32)


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


def _check(store: Store, poll: PollRequest) -> _Outcome:
    entry = store.provisioning_entry(poll.device_id)
    key = entry.key if entry is not None else _DUMMY_KEY
    proof_ok = proof_matches(key, poll.device_id, poll.ts, poll.nonce, poll.proof)
    if entry is None:
        return _Outcome("unknown")
    if not proof_ok:
        return _Outcome("bad_proof")
    if entry.token is None:
        return _Outcome("none")
    return _Outcome("token", seal_token(entry.key, poll.device_id, entry.token))


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

    def record(device_id: str, result: str, wait: int = 0) -> None:
        held = time.monotonic() - started
        store.log_poll(PollRecord(device_id, arrived, result, wait, held))

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
    if not store.remember_nonce(req.nonce, req.ts):
        record(req.device_id, "replay", req.wait)
        return web.Response(status=204)

    outcome = _check(store, req)
    if outcome.sealed is None:
        try:
            outcome = await _hold(request, req, outcome)
        except asyncio.CancelledError:  # the device hung up while its poll was held
            record(req.device_id, "abandoned", req.wait)
            raise
    record(req.device_id, outcome.result, req.wait)
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
        outcome = _check(request.app[STORE], req)
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


def setup(app: web.Application) -> None:
    app[WAITERS] = PollWaiters(app[CONFIG].held_polls)
    app[FAULTS] = FaultInjector()
    app[PRUNER] = _NoncePruner()
    app.on_shutdown.append(_close_waiters)
    app.router.add_post("/v1/provisioning/poll", poll)
    app.router.add_get("/v1/keys", keys)
