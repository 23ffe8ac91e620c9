"""The wrong-password throttle on a fake clock: per address, a global slow-down, bounded,
kept across a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.local_api.lockout import AddressState, Lockout, LockoutPolicy

POLICY = LockoutPolicy(after=5, base_s=30.0, max_s=3600.0)
A, B = "192.0.2.1", "192.0.2.2"


def lockout(tmp_path: Path, policy: LockoutPolicy = POLICY) -> Lockout:
    return Lockout(tmp_path / "l.json", policy, clock=lambda: 0.0)


def test_delays_double_from_the_fifth_failure_and_stop_at_an_hour() -> None:
    assert [POLICY.delay(n, 5) for n in range(1, 5)] == [0.0] * 4
    assert [POLICY.delay(n, 5) for n in range(5, 13)] == [
        30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0,
    ]  # fmt: skip
    assert POLICY.delay(10_000, 5) == 3600.0
    assert POLICY.delay(1, 1) == 30.0  # under the global slow-down


def test_an_address_waits_and_no_other_address_does(tmp_path: Path) -> None:
    t = lockout(tmp_path)
    now = 100.0
    for failed in range(1, 5):
        t.failure(A, now)
        assert t.retry_after(A, now) == 0
        assert t.tries_left(A, now) == 5 - failed
    t.failure(A, now)
    assert t.retry_after(A, now) == 30.0
    assert t.retry_after(A, now + 29.5) == 0.5
    assert t.retry_after(A, now + 30) == 0
    t.failure(A, now + 30)
    assert t.retry_after(A, now + 30) == 60.0
    # The owner at another address is not touched: all its tries, no wait.
    assert t.retry_after(B, now + 30) == 0
    assert t.tries_left(B, now + 30) == 5
    t.success(A, now + 90)
    assert t.tries_left(A, now + 90) == 5  # a right answer starts the address over


def test_many_wrong_answers_from_many_addresses_slow_every_address_down(
    tmp_path: Path,
) -> None:
    t = lockout(tmp_path)
    now = 1000.0
    for i in range(POLICY.pressure_failures - 1):
        t.failure(f"10.0.0.{i}", now + i)  # one guess per address: none waits
        assert t.retry_after(f"10.0.0.{i}", now + i) == 0
    assert not t.under_pressure(now + 19)
    t.failure("10.0.0.99", now + 19)
    assert t.under_pressure(now + 19)
    # From now on an address waits after its first wrong answer …
    t.failure("10.0.1.1", now + 20)
    assert t.retry_after("10.0.1.1", now + 20) == 30.0
    # … but an address that has not failed may still try at once: no global lock.
    assert t.retry_after(B, now + 20) == 0
    assert t.tries_left(B, now + 20) == 1
    # Once the window has passed without that many wrong answers, back to normal.
    later = now + 20 + POLICY.pressure_window_s + 1
    assert not t.under_pressure(later)
    assert t.tries_left(B, later) == 5


def test_the_address_table_is_bounded_and_forgets_quiet_addresses(tmp_path: Path) -> None:
    small = LockoutPolicy(max_addresses=4, forget_s=100.0, pressure_failures=1000)
    t = lockout(tmp_path, small)
    for i in range(4):
        t.failure(f"10.0.0.{i}", float(i))
    assert list(t.addresses) == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert t.tries_left("10.0.0.3", 50.0) == 4
    assert t.tries_left("10.0.0.3", 200.0) == 5  # a day (here 100 s) of quiet: forgotten
    assert "10.0.0.3" not in t.addresses


def test_addresses_beyond_a_full_table_share_one_strict_wait(tmp_path: Path) -> None:
    """Rotating over more addresses than the table holds buys no fresh tries: every
    address outside the full table shares the overflow's wait, from its first wrong
    answer, and a full table forgets no one to make room."""
    small = LockoutPolicy(max_addresses=4, forget_s=100.0, pressure_failures=1000)
    t = lockout(tmp_path, small)
    for i in range(4):
        t.failure(f"10.0.0.{i}", float(i))
    assert t.tries_left("10.0.9.9", 4.0) == 1  # stricter than a tracked address's 5
    t.failure("10.0.0.4", 4.0)
    assert list(t.addresses) == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
    # The next rotating address finds the wait the last one earned.
    assert t.retry_after("10.0.0.5", 4.0) == small.base_s
    t.failure("10.0.0.5", 4.0 + small.base_s)
    assert t.retry_after("10.0.0.6", 4.0 + small.base_s) == 2 * small.base_s
    # A right answer through the overflow clears nothing.
    t.success("10.0.0.6", 5.0 + small.base_s)
    assert t.retry_after("10.0.0.7", 5.0 + small.base_s) > 0
    # Once the tracked addresses go quiet, there is room again and a new address is clean.
    later = 10_000.0
    assert t.tries_left("10.0.0.8", later) == small.after


def test_a_locked_address_is_not_forgotten_before_its_wait_ends(tmp_path: Path) -> None:
    t = lockout(tmp_path, LockoutPolicy(after=1, base_s=500.0, forget_s=100.0))
    t.failure(A, 0.0)
    assert t.retry_after(A, 150.0) == 350.0


def test_the_table_survives_a_restart_written_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    first = Lockout(path, POLICY)
    for i in range(6):
        first.failure(A, 1000.0 + i * 0.1)  # six within 0.6 s: one write
    assert json.loads(path.read_text())["addresses"][A][0] == 1
    assert path.stat().st_mode & 0o777 == 0o600
    first.flush()  # what the daemon does on stop
    again = Lockout(path, POLICY)  # a new daemon
    assert again.state(A, 1000.5) == AddressState(6, 1000.5 + 60.0, 1000.5)
    assert again.retry_after(A, 1000.5) == 60.0
    assert again.retry_after(B, 1000.5) == 0
    assert list(again.recent) == [1000.0 + i * 0.1 for i in range(6)]
    again.success(A, 1002.0)
    assert Lockout(path, POLICY).addresses == {}


def test_a_clock_stepped_back_never_makes_a_wait_longer_than_the_cap() -> None:
    state = AddressState(failures=99, locked_until=1e12)
    assert state.retry_after(0.0, POLICY) == 3600.0


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        json.dumps({"failures": 9, "locked_until": 0}),  # the old device-wide lock
        json.dumps({"version": 2, "addresses": {A: [-1, 0, 0]}, "recent": []}),
        json.dumps({"version": 2, "addresses": {A: [1, "x", 0]}, "recent": []}),
        json.dumps({"version": 2, "addresses": {}, "recent": [1e999]}),
    ],
)
def test_a_broken_file_starts_the_global_slow_down(tmp_path: Path, text: str) -> None:
    path = tmp_path / "l.json"
    path.write_text(text)
    t = Lockout(path, POLICY, clock=lambda: 5000.0)
    assert t.under_pressure(5000.0)
    t.failure(B, 5000.0)
    assert t.retry_after(B, 5000.0) == 30.0  # the first wrong answer makes it wait
    assert t.retry_after(A, 5000.0) == 0  # and still no global lock


def test_a_missing_file_is_a_clean_slate(tmp_path: Path) -> None:
    t = lockout(tmp_path)
    assert not t.under_pressure(0.0)
    assert t.addresses == {}


def test_an_unwritable_state_dir_keeps_the_throttle_in_memory(tmp_path: Path) -> None:
    t = Lockout(tmp_path / "gone" / "l.json", POLICY)
    for _ in range(5):
        t.failure(A, 0.0)
    assert t.retry_after(A, 0.0) == 30.0
