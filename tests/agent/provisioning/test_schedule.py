"""The provisioning schedule (docs/design.md §2.2): pure, every time a number the test passes."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import ProvisioningConfig
from agent.provisioning.schedule import (
    Phase,
    PollSchedule,
    ScheduleSettings,
    long_poll_wait,
)
from tests.examples import examples

DEFAULTS = ScheduleSettings()


def run_requests(schedule: PollSchedule, count: int, jitter: float = 0.0) -> list[float]:
    """Start `count` requests, each exactly when due and ending at once; return start times."""
    starts = []
    for _ in range(count):
        now = schedule.next_due
        plan = schedule.begin(now, jitter)
        starts.append(plan.starts_at)
        schedule.finish(now)
    return starts


# -- the defaults of docs/design.md §2 and §9 ----------------------------------------------------


def test_defaults_match_the_design() -> None:
    expected = ScheduleSettings(
        fast_interval=60, fast_attempts=5, slow_interval=3600, slow_jitter=0.10, long_poll=50
    )
    assert expected == DEFAULTS


def test_from_config_copies_every_field() -> None:
    cfg = ProvisioningConfig(
        fast_interval=7, fast_attempts=2, slow_interval=99, slow_jitter=0.3, long_poll=4
    )
    assert ScheduleSettings.from_config(cfg) == ScheduleSettings(7, 2, 99, 0.3, 4)


def test_first_request_at_start_then_five_every_minute_then_hourly() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    assert schedule.delay(0.0) == 0.0
    assert run_requests(schedule, 7) == [0, 60, 120, 180, 240, 300, 3900]


def test_start_time_offset_is_kept() -> None:
    schedule = PollSchedule(DEFAULTS, now=1000.0)
    assert run_requests(schedule, 7) == [1000 + t for t in (0, 60, 120, 180, 240, 300, 3900)]


@pytest.mark.parametrize("jitter", [-1.0, -0.5, 0.5, 1.0])
def test_first_slow_interval_follows_the_jitter(jitter: float) -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    starts = run_requests(schedule, 7, jitter)
    assert starts[:6] == [0, 60, 120, 180, 240, 300]  # jitter never touches the fast phase
    assert starts[6] == pytest.approx(300 + 3600 * (1 + 0.1 * jitter))


@pytest.mark.parametrize("jitter", [-7.0, 7.0])
def test_jitter_outside_minus_one_to_one_is_clamped(jitter: float) -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    starts = run_requests(schedule, 7, jitter)
    assert starts[6] == pytest.approx(300 + 3600 * (1 + 0.1 * math.copysign(1, jitter)))


def test_phases_of_each_request() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    first = schedule.phase  # read into a local: mypy would hold `schedule.phase` to FAST
    assert first is Phase.FAST
    phases = []
    attempts = []
    for _ in range(8):
        plan = schedule.begin(schedule.next_due, 0.0)
        phases.append(plan.phase)
        attempts.append(plan.attempt)
        schedule.finish(plan.starts_at)
    # The first request and the five fast ones after it are "fast"; then hourly.
    assert phases == [Phase.FAST] * 6 + [Phase.SLOW] * 2
    assert attempts == list(range(1, 9))
    assert schedule.phase is Phase.SLOW
    assert schedule.attempts == 8


def test_hourly_phase_goes_on_forever_with_jitter_within_ten_percent() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    run_requests(schedule, 6)
    draws = [((i * 37) % 201 - 100) / 100 for i in range(100)]  # spread over [-1, 1]
    starts = [schedule.next_due]
    for j in draws:
        now = schedule.next_due
        plan = schedule.begin(now, j)
        assert plan.phase is Phase.SLOW
        assert plan.deadline - plan.starts_at == pytest.approx(3600 * (1 + 0.1 * j))
        schedule.finish(now + 1.0)
        starts.append(schedule.next_due)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 100
    assert all(3240 - 1e-6 <= g <= 3960 + 1e-6 for g in gaps)
    assert max(gaps) - min(gaps) > 600  # the jitter really spreads the fleet
    assert schedule.attempts == 106


def test_begin_before_due_raises_and_changes_nothing() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    schedule.finish(1.0)
    with pytest.raises(ValueError, match="before it was due"):
        schedule.begin(59.999, 0.0)
    assert schedule.attempts == 1
    assert schedule.next_due == 60.0
    assert schedule.begin(60.0, 0.0).attempt == 2


def test_begin_later_than_due_counts_from_the_real_start() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    plan = schedule.begin(75.0, 0.0)  # the device was busy: the interval runs from 75
    assert plan.deadline == 135.0
    assert schedule.next_due == 135.0


def test_deadline_is_the_next_start() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    for _ in range(10):
        plan = schedule.begin(schedule.next_due, 0.3)
        assert plan.deadline == schedule.next_due
        schedule.finish(plan.starts_at + 2)
        assert schedule.next_due == plan.deadline


def test_delay_counts_down_and_never_goes_negative() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    assert schedule.delay(0.0) == 60.0
    assert schedule.delay(45.5) == 14.5
    assert schedule.delay(61.0) == 0.0


# -- long-poll ---------------------------------------------------------------------------


def test_default_wait_is_fifty_seconds_in_both_phases() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    waits = []
    for _ in range(8):
        plan = schedule.begin(schedule.next_due, -1.0)
        waits.append(plan.wait)
        assert plan.starts_at + plan.wait < plan.deadline
    assert waits == [50] * 8


def test_tiny_intervals_clamp_the_wait_so_the_request_ends_in_time() -> None:
    schedule = PollSchedule(ScheduleSettings(fast_interval=2, long_poll=50), now=0.0)
    plan = schedule.begin(0.0, 0.0)
    assert plan.wait <= 1
    assert plan.starts_at + plan.wait < plan.deadline


@pytest.mark.parametrize(
    ("long_poll", "interval", "expected"),
    [
        (50, 60, 50),  # margin 6 s: 54 s would fit, 50 asked
        (50, 55, 49),  # 55 - 5.5 = 49.5 -> 49
        (50, 10, 9),  # margin at least 1 s
        (50, 2, 1),
        (50, 1, 0),  # too short for any wait: a plain poll
        (50, 0.5, 0),
        (0, 3600, 0),  # long_poll = 0: plain polls
        (50, 3600, 50),
    ],
)
def test_long_poll_wait(long_poll: float, interval: float, expected: int) -> None:
    assert long_poll_wait(long_poll, interval) == expected


# -- Retry-After and errors --------------------------------------------------------------


def test_retry_after_pushes_the_next_request_later() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    schedule.finish(2.0, retry_after=120.0)
    assert schedule.next_due == 122.0
    assert schedule.delay(2.0) == 120.0


def test_retry_after_never_brings_the_next_request_earlier() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    schedule.finish(2.0, retry_after=10.0)
    assert schedule.next_due == 60.0


@pytest.mark.parametrize("retry_after", [0.0, -5.0, None])
def test_retry_after_zero_negative_or_absent_keeps_the_cadence(retry_after: float | None) -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    schedule.finish(3.0, retry_after=retry_after)
    assert schedule.next_due == 60.0


def test_retry_after_is_capped_at_one_slow_interval() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    schedule.finish(5.0, retry_after=10 * 86400)
    assert schedule.next_due == 5.0 + 3600


def test_errors_count_as_requests_and_keep_the_cadence() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    starts = []
    for _ in range(7):
        plan = schedule.begin(schedule.next_due, 0.0)
        starts.append(plan.starts_at)
        schedule.finish(plan.starts_at + 0.2)  # e.g. connection refused: no Retry-After
    assert starts == [0, 60, 120, 180, 240, 300, 3900]


def test_no_fast_attempts_goes_slow_after_the_first_request() -> None:
    schedule = PollSchedule(ScheduleSettings(fast_attempts=0), now=0.0)
    first = schedule.begin(0.0, 0.0)
    assert first.phase is Phase.FAST
    assert first.deadline == 3600.0
    second = schedule.begin(3600.0, 1.0)
    assert second.phase is Phase.SLOW
    assert second.deadline == pytest.approx(3600 + 3960)


# -- the property ------------------------------------------------------------------------

settings_strategy = st.builds(
    ScheduleSettings,
    fast_interval=st.floats(0.05, 500, allow_nan=False),
    fast_attempts=st.integers(0, 8),
    slow_interval=st.floats(0.05, 20_000, allow_nan=False),
    slow_jitter=st.floats(0, 0.5, allow_nan=False),
    long_poll=st.floats(0, 400, allow_nan=False),
)

poll_op = st.tuples(
    st.just("poll"),
    st.floats(0, 100, allow_nan=False),  # how late after due the request starts
    st.floats(0, 0.999, allow_nan=False),  # how much of the time to the deadline it takes
    st.one_of(st.none(), st.floats(-10, 50_000, allow_nan=False)),  # Retry-After
    st.floats(-1, 1, allow_nan=False),  # jitter draw
)
restart_op = st.tuples(st.just("restart"), st.floats(0, 10_000, allow_nan=False))


@settings(max_examples=examples(150), deadline=None)
@given(
    s=settings_strategy,
    start=st.floats(0, 1e6, allow_nan=False),
    ops=st.lists(st.one_of(poll_op, poll_op, poll_op, restart_op), max_size=40),
)
def test_schedule_property(s: ScheduleSettings, start: float, ops: list[tuple[Any, ...]]) -> None:
    schedule = PollSchedule(s, now=start)
    now = start
    previous = None  # the last plan since the last (re)start
    count = 0
    for op in ops:
        if op[0] == "restart":
            now += op[1]
            schedule = PollSchedule(s, now=now)  # the daemon restarts with a new schedule
            assert (schedule.attempts, schedule.next_due, schedule.phase) == (0, now, Phase.FAST)
            previous, count = None, 0
            continue
        _, late, fraction, retry_after, jitter = op
        due = schedule.next_due
        if due > now:  # never before due
            with pytest.raises(ValueError, match="before it was due"):
                schedule.begin(now, jitter)
        starts_at = max(now, due) + late
        plan = schedule.begin(starts_at, jitter)
        count += 1
        interval = plan.deadline - plan.starts_at
        assert plan.starts_at == starts_at
        assert plan.attempt == count
        assert plan.phase is (Phase.FAST if count <= s.fast_attempts + 1 else Phase.SLOW)
        if count <= s.fast_attempts:
            assert interval == pytest.approx(s.fast_interval)
        else:
            low, high = s.slow_interval * (1 - s.slow_jitter), s.slow_interval * (1 + s.slow_jitter)
            assert low * (1 - 1e-9) <= interval <= high * (1 + 1e-9)
        if previous is not None:
            # consecutive starts are at least the planned interval apart
            assert plan.starts_at >= previous.deadline
            prev_interval = previous.deadline - previous.starts_at
            assert plan.starts_at - previous.starts_at >= prev_interval * (1 - 1e-9)
        assert 0 <= plan.wait <= s.long_poll
        if interval >= 2:
            assert plan.wait <= interval - 1 + 1e-6
        # The request ends before the next one is due.
        ends_at = plan.starts_at + fraction * interval
        assert ends_at <= plan.deadline
        schedule.finish(ends_at, retry_after)
        assert schedule.next_due >= plan.deadline
        if retry_after is not None and retry_after > 0:
            honoured = ends_at + min(retry_after, s.slow_interval)
            assert schedule.next_due == max(plan.deadline, honoured)
        else:
            assert schedule.next_due == plan.deadline
        now, previous = ends_at, plan


# -- reconfigure (SIGHUP) ----------------------------------------------------------------


def test_reconfigure_before_the_first_request_keeps_it_due() -> None:
    schedule = PollSchedule(DEFAULTS, now=5.0)
    schedule.reconfigure(ScheduleSettings(fast_interval=2))
    assert schedule.next_due == 5.0
    assert schedule.begin(5.0, 0.0).deadline == 7.0


def test_reconfigure_applies_the_new_fast_interval_from_the_last_start() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    run_requests(schedule, 2)  # at 0 and 60; the next is due at 120
    schedule.reconfigure(ScheduleSettings(fast_interval=10))
    assert schedule.next_due == 70.0
    assert run_requests(schedule, 2) == [70.0, 80.0]


def test_reconfigure_in_the_slow_phase_keeps_the_jitter_draw() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    run_requests(schedule, 6)
    plan = schedule.begin(schedule.next_due, 0.5)  # the first slow request, at 3900
    assert plan.starts_at == 3900.0
    schedule.reconfigure(ScheduleSettings(slow_interval=100, slow_jitter=0.2))
    assert schedule.next_due == pytest.approx(plan.starts_at + 100 * (1 + 0.2 * 0.5))
    assert schedule.phase is Phase.SLOW


def test_reconfigure_with_fewer_fast_attempts_moves_to_the_slow_phase() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    run_requests(schedule, 3)  # at 0, 60, 120
    schedule.reconfigure(ScheduleSettings(fast_attempts=2, slow_interval=1000, slow_jitter=0))
    assert schedule.phase is Phase.SLOW
    assert schedule.next_due == 1120.0


def test_reconfigure_with_new_long_poll_applies_to_the_next_plan() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    schedule.reconfigure(ScheduleSettings(long_poll=5))
    assert schedule.begin(schedule.next_due, 0.0).wait == 5


def test_reconfigure_with_the_same_settings_keeps_a_retry_after() -> None:
    schedule = PollSchedule(DEFAULTS, now=0.0)
    schedule.begin(0.0, 0.0)
    schedule.finish(2.0, retry_after=120.0)
    assert schedule.next_due == 122.0
    schedule.reconfigure(ScheduleSettings())
    assert schedule.next_due == 122.0
