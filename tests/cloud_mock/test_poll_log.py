"""The poll log's writer: after the answer, in batches, bounded, complaining once a minute;
a claim's rows are the polls that proved its K, bounded per claim; the rest is nobody's
(aggregated, bounded by count)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from cloud_mock import claims, provisioning
from cloud_mock.clock import MockClock
from cloud_mock.provisioning import PollLog
from cloud_mock.store import Camera, PollRecord, Store
from cloud_mock.store.devices import Aggregated


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open_in(tmp_path)


def poll(n: int, result: str = "unknown") -> PollRecord:
    return PollRecord(f"02:00:00:00:00:{n:02x}", 60.0 + n, result, 0, 0.0)


async def test_rows_are_written_after_the_current_step_in_one_batch(store: Store) -> None:
    writer = PollLog(store, trace=True)
    for n in range(3):
        writer.record(poll(n), None)
    assert store.devices.poll_log_rows() == 0  # nothing on the answer's path
    await asyncio.sleep(0)
    assert [(p.result, p.count) for p in store.devices.aggregated_polls()] == [("unknown", 3)]
    assert len(store.devices.traced_polls()) == 3


async def test_without_test_hooks_nothing_is_traced(store: Store) -> None:
    writer = PollLog(store, trace=False)
    writer.record(poll(1), None)
    await asyncio.sleep(0)
    assert store.devices.traced_polls() == []
    assert store.devices.poll_log_rows() == 1


async def test_pending_rows_are_bounded_and_drops_complained_about_once(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(provisioning, "MAX_PENDING_ROWS", 4)
    writer = PollLog(store, trace=True)
    with caplog.at_level(logging.WARNING, "cloud_mock.provisioning"):
        for n in range(10):  # the same step: no flush in between
            writer.record(poll(n), None)
    assert writer.dropped == 6
    assert len([r for r in caplog.records if "dropped" in r.message]) == 1
    await asyncio.sleep(0)
    assert len(store.devices.traced_polls()) == 4


async def test_a_failing_write_loses_the_batch_not_the_poll(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store.devices, "log_polls", broken)
    writer = PollLog(store, trace=False)
    with caplog.at_level(logging.WARNING, "cloud_mock.provisioning"):
        for n in range(3):
            writer.record(poll(n), None)
            await asyncio.sleep(0)
    warnings = [r for r in caplog.records if "failed" in r.message]
    assert len(warnings) == 1  # three failures, one line a minute


def _camera(camera_id: str, org: str, device_id: str = "02:00:00:00:00:01") -> Camera:
    return Camera(
        camera_id, org, device_id, "cam", 0.0, f"j-{camera_id}", None, None, b"k" * 32, "t", 0.0
    )


def _verdict(winner: str | None, verified: list[str]) -> claims.Verdict:
    places = {
        c: claims.Place(c, f"org-{c}", bytes([n]) * 32, float(n), False)
        for n, c in enumerate(["a", "b", "c"])
    }
    won = places[winner] if winner is not None else None
    return claims.Verdict(won, tuple(places[c] for c in verified), False, True)


async def test_a_poll_leaves_rows_only_for_the_claims_whose_key_it_proved(store: Store) -> None:
    writer = PollLog(store, trace=False)
    at = PollRecord("02:00:00:00:00:01", 60.0, "token", 0, 0.0)
    writer.record(at, provisioning._Outcome("token", "sealed", _verdict("b", ["a", "b"])))
    wrong = PollRecord("02:00:00:00:00:01", 61.0, "bad_proof", 0, 0.0)
    writer.record(wrong, provisioning._Outcome("bad_proof", None, _verdict(None, [])))
    await asyncio.sleep(0)
    assert [p.result for p in store.devices.polls("a")] == ["none"]  # proved, a newer claim won
    assert [p.result for p in store.devices.polls("b")] == ["token"]
    assert store.devices.polls("c") == []  # a claim of the device this poll did not prove
    assert [(p.result, p.count) for p in store.devices.aggregated_polls()] == [("bad_proof", 1)]


def test_each_claim_keeps_its_own_newest_rows(store: Store) -> None:
    store.accounts.upsert_org("o1", False)
    store.accounts.upsert_org("o2", False)
    store.devices.insert_camera(_camera("a", "o1"))
    store.devices.insert_camera(_camera("b", "o2"))
    store.devices.log_polls([PollRecord("02:00:00:00:00:01", 1.0, "token", 0, 0.0, "a")], [])
    noisy = [PollRecord("02:00:00:00:00:01", float(i), "token", 0, 0.0, "b") for i in range(50)]
    store.devices.log_polls(noisy, [], per_claim=5)
    assert [p.at for p in store.devices.polls("b")] == [45.0, 46.0, 47.0, 48.0, 49.0]
    assert [p.at for p in store.devices.polls("a")] == [1.0]  # b's rows never push a's out
    assert store.devices.poll_rows_of_device("02:00:00:00:00:01") == 6


def test_pruning_by_count_touches_only_the_rows_that_are_nobodys(store: Store) -> None:
    store.accounts.upsert_org("o1", False)
    store.devices.insert_camera(_camera("a", "o1"))
    store.devices.log_polls(
        [
            PollRecord("02:00:00:00:00:01", 100.0, "token", 0, 0.0, "a"),
            PollRecord("02:00:00:00:00:09", 101.0, "token", 0, 0.0, "gone"),  # deleted since
        ],
        [Aggregated("unknown", 60.0 * n, 1) for n in range(2, 12)],
    )
    assert store.devices.prune_poll_log(older_than=0.0, keep=3) == 8  # 7 aggregates + the orphan
    assert [p.result for p in store.devices.polls("a")] == ["token"]
    assert [p.at for p in store.devices.aggregated_polls()] == [540.0, 600.0, 660.0]
    assert store.devices.prune_poll_log(older_than=200.0, keep=3) == 1  # by age: the claim row too
    assert store.devices.polls("a") == []


def test_deleting_a_camera_deletes_its_history(store: Store) -> None:
    store.accounts.upsert_org("o1", False)
    store.devices.insert_camera(_camera("a", "o1"))
    store.devices.log_polls([PollRecord("02:00:00:00:00:01", 100.0, "token", 0, 0.0, "a")], [])
    store.devices.delete_camera("a", at=200.0)
    assert store.devices.poll_log_rows() == 0


async def test_with_a_clock_the_writer_prunes_after_writing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provisioning, "POLL_LOG_MAX_ROWS", 2)
    monkeypatch.setattr(provisioning, "POLL_LOG_PRUNE_EVERY_S", 0.0)
    writer = PollLog(store, trace=False, clock=MockClock())
    for n in range(5):  # five periods, one aggregated row each
        writer.record(PollRecord("", time.time() - 60.0 * n, "unknown", 0, 0.0), None)
        await asyncio.sleep(0)
    assert store.devices.poll_log_rows() == 2
