"""Lockout: growing delays on a fake clock, kept across a restart, capped."""

from __future__ import annotations

import json
from pathlib import Path

from agent.local_api.lockout import Lockout, LockoutPolicy, LockoutState, load

POLICY = LockoutPolicy(after=5, base_s=30.0, max_s=3600.0)


def test_delays_double_from_the_fifth_failure_and_stop_at_an_hour() -> None:
    assert [POLICY.delay(n) for n in range(1, 5)] == [0.0] * 4
    assert [POLICY.delay(n) for n in range(5, 13)] == [
        30.0,
        60.0,
        120.0,
        240.0,
        480.0,
        960.0,
        1920.0,
        3600.0,
    ]
    assert POLICY.delay(10_000) == 3600.0


def test_a_lock_holds_until_its_time(tmp_path: Path) -> None:
    lockout = Lockout(tmp_path / "l.json", POLICY)
    now = 100.0
    for _ in range(4):
        lockout.failure(now)
        assert lockout.retry_after(now) == 0
    lockout.failure(now)
    assert lockout.retry_after(now) == 30.0
    assert lockout.retry_after(now + 29.5) == 0.5
    assert lockout.retry_after(now + 30) == 0
    lockout.failure(now + 30)
    assert lockout.retry_after(now + 30) == 60.0


def test_the_counter_survives_a_restart_and_a_success_clears_it(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    first = Lockout(path, POLICY)
    for _ in range(6):
        first.failure(1000.0)
    assert path.stat().st_mode & 0o777 == 0o600
    again = Lockout(path, POLICY)  # a new daemon
    assert again.state == LockoutState(6, 1060.0)
    assert again.retry_after(1000.0) == 60.0
    again.success()
    assert Lockout(path, POLICY).state == LockoutState()


def test_a_clock_stepped_back_never_locks_for_longer_than_the_cap() -> None:
    state = LockoutState(failures=99, locked_until=1e12)
    assert state.retry_after(0.0, POLICY) == 3600.0


def test_a_broken_file_is_not_a_clean_slate(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    for text in (
        "{",
        "[]",
        json.dumps({"failures": "x", "locked_until": 0}),
        json.dumps({"failures": -1, "locked_until": 0}),
    ):
        path.write_text(text)
        state = load(path)
        assert state.failures == POLICY.after
        # the next wrong password locks at once
        assert state.failed(0.0, POLICY).locked_until > 0
    assert load(tmp_path / "missing.json") == LockoutState()


def test_an_unwritable_state_dir_keeps_the_lock_in_memory(tmp_path: Path) -> None:
    lockout = Lockout(tmp_path / "gone" / "l.json", POLICY)
    for _ in range(5):
        lockout.failure(0.0)
    assert lockout.retry_after(0.0) == 30.0
