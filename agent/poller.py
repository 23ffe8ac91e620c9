"""Provisioning requests on the schedule: the key, the cloud's keys, the clock offset,
and, for an NVR, its activation code renewed while it waits.

The schedule itself is pure (agent.provisioning.schedule); this is its edge: it sleeps on
the injected Clock, asks the cloud over the injected HTTP session, and hands a token to
the gate. It ends when a token is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from agent import label_key
from agent.clock import Clock
from agent.config import Config
from agent.errors import CamagentError, TokenError
from agent.keeper import Change
from agent.provisioning.schedule import Phase, PollPlan, PollSchedule, ScheduleSettings
from agent.status import LastPoll, ProvisioningStatus, password_hint
from agent.trust import TokenSource, VerifiedToken

if TYPE_CHECKING:
    import aiohttp

    from agent.nvr.link import NvrLink
    from agent.provisioning.client import PollOutcome
    from agent.token_store import DeviceRecord

log = logging.getLogger(__name__)

# A request must have *ended* before the next is due; this covers the last hop back.
DEADLINE_MARGIN_S = 0.05

Http = Callable[[], "aiohttp.ClientSession"]
OnToken = Callable[[VerifiedToken], None]


class Keeper(Protocol):
    """What polling needs of the device state (agent.keeper.StateKeeper): K kept in the
    record, the cloud's keys, and the gate a polled token passes."""

    @property
    def record(self) -> DeviceRecord: ...

    @property
    def needs_keys(self) -> bool: ...

    def save(self, change: Change) -> None: ...

    def trust(self, config: Config, pems: Sequence[str]) -> None: ...

    def accept(self, raw: object, source: TokenSource) -> VerifiedToken: ...


class Poller:
    def __init__(
        self,
        config: Config,
        device_id: str,
        keeper: Keeper,
        http: Http,
        clock: Clock,
        on_token: OnToken,
        nvr: NvrLink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.keeper = keeper
        self.http = http
        self.clock = clock
        self.on_token = on_token
        self.nvr = nvr
        self.rng = rng or random.Random()
        self.schedule: PollSchedule | None = None
        self.last_poll: LastPoll | None = None
        self.clock_offset: float | None = None
        self._answered = 0  # polls since the schedule started that the cloud answered 204
        self._rescheduled = asyncio.Event()  # wakes the loop when the schedule moved

    # -- the schedule ------------------------------------------------------------------

    def restart(self) -> None:
        """From the first step: a request is due now (start, reset, poll-now, new link)."""
        settings = ScheduleSettings.from_config(self.config.provisioning)
        self.schedule = PollSchedule(settings, self.clock.monotonic())
        self._answered = 0
        self._rescheduled.set()

    def stop(self) -> None:
        self.schedule = None

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new intervals apply at once."""
        self.config = config
        if self.schedule is not None:
            self.schedule.reconfigure(ScheduleSettings.from_config(config.provisioning))
            self._rescheduled.set()

    def status(self, polling: bool) -> ProvisioningStatus:
        schedule = self.schedule
        if schedule is None or not polling:
            return ProvisioningStatus(last=self.last_poll)
        return ProvisioningStatus(
            attempts=schedule.attempts,
            phase=schedule.phase.value,
            next_poll_in=round(schedule.delay(self.clock.monotonic()), 3),
            last=self.last_poll,
            hint=self._hint(schedule),
        )

    def _hint(self, schedule: PollSchedule) -> str | None:
        """A camera the cloud answered every time, yet no token: most often the cloud
        knows it under another key, i.e. password_file does not hold the label password."""
        if self.nvr is not None or schedule.phase is not Phase.SLOW:
            return None
        if schedule.attempts == 0 or self._answered < schedule.attempts:
            return None
        return password_hint(schedule.attempts)

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until a token is accepted; the supervisor restarts this if it fails."""
        # Imports and the session before the clock of the first request starts (and a
        # failure here, e.g. out of descriptors, is a failed attempt the supervisor retries).
        import agent.provisioning.client  # noqa: F401

        self.http()
        while (schedule := self.schedule) is not None:
            await self._sleep_until_due(schedule)
            if schedule is not self.schedule:
                continue  # restarted while asleep
            plan = schedule.begin(self.clock.monotonic(), self.rng.uniform(-1.0, 1.0))
            outcome, token = await self._poll(plan)
            schedule.finish(self.clock.monotonic(), outcome.retry_after)
            self.last_poll = LastPoll(plan.attempt, outcome.detail, self.clock.wall())
            if outcome.answered and schedule is self.schedule:
                self._answered += 1
            if token is not None:
                log.info("poll %d (%s phase): token received", plan.attempt, plan.phase.value)
                self.on_token(token)
                return
            log.info(
                "poll %d (%s phase, wait %d s): %s; next in %.1f s",
                plan.attempt,
                plan.phase.value,
                plan.wait,
                outcome.detail,
                schedule.delay(self.clock.monotonic()),
            )

    async def _sleep_until_due(self, schedule: PollSchedule) -> None:
        """Sleep until the next request is due; an NVR wakes up to renew its code too."""
        while schedule is self.schedule and (delay := schedule.delay(self.clock.monotonic())) > 0:
            renew_at = self.nvr.renew_at() if self.nvr else None
            if renew_at is not None and renew_at <= self.clock.wall():
                await self._renew_code()
                continue
            if renew_at is not None:
                delay = min(delay, renew_at - self.clock.wall())
            self._rescheduled.clear()
            await _first(self.clock.sleep(delay), self._rescheduled.wait())

    async def _renew_code(self) -> None:
        assert self.nvr is not None
        try:
            await self.nvr.key(self.http())
        except CamagentError as exc:
            # The cloud is unreachable: try again at the next poll rather than spin.
            log.warning("cannot renew the activation code: %s", exc)
            await self.clock.sleep(min(60.0, self.config.provisioning.fast_interval))

    async def _poll(self, plan: PollPlan) -> tuple[PollOutcome, VerifiedToken | None]:
        """One request; every failure becomes an outcome without a token."""
        from agent.provisioning.client import PollOutcome, poll_once

        session = self.http()
        try:
            key = await self._provisioning_key()
            # The key fetch shares the request's slot: on a dead link it must not run past
            # the moment the next request is due.
            await self._ensure_trusted_keys(timeout=self._time_left(plan))
        except CamagentError as exc:
            return PollOutcome(None, str(exc)), None
        timeout = self._time_left(plan)
        outcome = await poll_once(
            session,
            self.config.cloud.url,
            key,
            self.device_id,
            wait=min(plan.wait, int(timeout)),
            timeout=timeout,
            clock_offset=self.clock_offset,
            wall=self.clock.wall,
        )
        if outcome.clock_offset is not None:
            self.clock_offset = outcome.clock_offset
        if outcome.token is None:
            return outcome, None
        try:
            return outcome, self.keeper.accept(outcome.token, "poll")
        except TokenError as exc:
            log.warning("discarding the token from the cloud: %s", exc)
            return replace(outcome, token=None, detail=f"token refused: {exc}"), None

    def _time_left(self, plan: PollPlan) -> float:
        return max(0.1, plan.deadline - self.clock.monotonic() - DEADLINE_MARGIN_S)

    async def _provisioning_key(self) -> bytes:
        """K, derived once from the password file and kept in the state.

        An NVR has no password: it polls with the secret of its activation code.
        """
        if self.nvr is not None:
            return await self.nvr.key(self.http())
        stamp = label_key.stamp_of(self.config)
        key = label_key.cached(self.keeper.record, stamp)
        if key is not None:
            return key
        key = await asyncio.to_thread(label_key.derive, self.config, self.device_id)
        self.keeper.save(label_key.kept(key, stamp))
        log.info("provisioning key derived from %s", self.config.device.password_file)
        return key

    async def _ensure_trusted_keys(self, timeout: float) -> None:
        if not self.keeper.needs_keys:
            return
        from agent.provisioning.client import fetch_keys

        pems = await fetch_keys(self.http(), self.config.cloud.url, timeout=timeout)
        self.keeper.trust(self.config, pems)
        log.info(
            "trusting %d token-signing key(s) fetched from %s", len(pems), self.config.cloud.url
        )


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait for the first of these coroutines to finish; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
