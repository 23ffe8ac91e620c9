"""The poll log's writer: after the answer, in batches, bounded, complaining once a minute."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from cloud_mock import provisioning
from cloud_mock.provisioning import PollLog
from cloud_mock.store import PollRecord, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open_in(tmp_path)


def poll(n: int, result: str = "unknown") -> PollRecord:
    return PollRecord(f"02:00:00:00:00:{n:02x}", 60.0 + n, result, 0, 0.0)


async def test_rows_are_written_after_the_current_step_in_one_batch(store: Store) -> None:
    writer = PollLog(store, trace=True)
    for n in range(3):
        writer.record(poll(n), None)
    assert store.poll_log_rows() == 0  # nothing on the answer's path
    await asyncio.sleep(0)
    assert [(p.result, p.count) for p in store.aggregated_polls()] == [("unknown", 3)]
    assert len(store.traced_polls()) == 3


async def test_without_test_hooks_nothing_is_traced(store: Store) -> None:
    writer = PollLog(store, trace=False)
    writer.record(poll(1), None)
    await asyncio.sleep(0)
    assert store.traced_polls() == []
    assert store.poll_log_rows() == 1


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
    assert len(store.traced_polls()) == 4


async def test_a_failing_write_loses_the_batch_not_the_poll(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "log_polls", broken)
    writer = PollLog(store, trace=False)
    with caplog.at_level(logging.WARNING, "cloud_mock.provisioning"):
        for n in range(3):
            writer.record(poll(n), None)
            await asyncio.sleep(0)
    warnings = [r for r in caplog.records if "failed" in r.message]
    assert len(warnings) == 1  # three failures, one line a minute
