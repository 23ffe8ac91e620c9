"""The fleet simulation derives its times from the real schedule, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.provisioning.schedule import ScheduleSettings
from benchmarks import fleet_sim


def test_steps_are_the_schedule_contract() -> None:
    steps = fleet_sim.derive_steps(ScheduleSettings(), horizon=3 * 3600)
    # First request at 0, five more 60 s apart, then hourly ± 10 %.
    assert steps.base[:5] == [60.0] * 5
    assert steps.span[:5] == [0.0] * 5
    assert all(b == 3600.0 for b in steps.base[5:])
    assert all(s == pytest.approx(360.0) for s in steps.span[5:])


def test_vectorised_times_equal_the_modules_request_by_request() -> None:
    for jitter in (0.1, 0.0, 0.5):
        assert fleet_sim.verify(ScheduleSettings(slow_jitter=jitter), 3 * 3600, seed=7) <= 1e-6


def test_a_schedule_that_is_not_affine_in_its_draw_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.provisioning import schedule

    original = schedule.PollSchedule._interval_after

    def squared(self: schedule.PollSchedule, attempt: int) -> float:
        base = original(self, attempt)
        return base + self._last_jitter**2

    monkeypatch.setattr(schedule.PollSchedule, "_interval_after", squared)
    with pytest.raises(ValueError, match="not affine"):
        fleet_sim.derive_steps(ScheduleSettings(), horizon=3 * 3600)


def test_small_fleet_rates_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "rate.png"
    sim = fleet_sim.simulate(20_000, 3.0, png)
    jittered, flat = sim.curves
    # Everyone's first request lands in the first second; nothing is lost or invented.
    assert flat.per_second[0] == jittered.per_second[0] == 20_000
    assert flat.peak == 20_000
    # Without jitter the herd stays a herd; with it the third hour spreads out.
    assert flat.last_hour_peak() == 20_000
    assert jittered.last_hour_peak() < 20_000 / 50
    assert jittered.steady() == pytest.approx(20_000 / 3600, rel=0.1)
    assert sim.worst_error_s <= 1e-6
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
