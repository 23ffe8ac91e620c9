"""Capped exponential backoff with jitter (pure: the random draw is a parameter)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import Backoff


@pytest.mark.parametrize("failures", [0, -1, -100])
def test_no_failure_means_no_delay(failures: int) -> None:
    assert Backoff().delay(failures, 0.7) == 0.0


def test_delays_double_until_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    ceilings = [backoff.delay(n, 1.0) for n in range(1, 10)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_the_draw_places_the_delay_in_the_upper_half() -> None:
    backoff = Backoff(base=2.0, cap=100.0)
    assert backoff.delay(3, 0.0) == 4.0  # ceiling 8: at least half of it
    assert backoff.delay(3, 0.5) == 6.0
    assert backoff.delay(3, 0.999) == pytest.approx(7.996)


def test_huge_failure_counts_do_not_overflow() -> None:
    assert Backoff(base=0.5, cap=300.0).delay(10**9, 1.0) == 300.0


@given(
    base=st.floats(0.01, 100),
    cap=st.floats(0.01, 10_000),
    failures=st.integers(1, 10_000),
    draw=st.floats(0, 1, exclude_max=True),
)
def test_delay_lies_between_half_the_ceiling_and_the_ceiling(
    base: float, cap: float, failures: int, draw: float
) -> None:
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 1000))
    delay = Backoff(base=base, cap=cap).delay(failures, draw)
    assert ceiling / 2 * (1 - 1e-12) <= delay <= ceiling * (1 + 1e-12)


@given(failures=st.integers(1, 60), draw=st.floats(0, 1, exclude_max=True))
def test_more_failures_never_wait_less(failures: int, draw: float) -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    assert backoff.delay(failures + 1, draw) >= backoff.delay(failures, draw)
