"""Held-poll caps: in total (below the descriptor limit) and per client address."""

from __future__ import annotations

from cloud_mock.resources import DESCRIPTOR_RESERVE, HeldPollCounter, HeldPollLimits


def test_the_total_cap_keeps_a_reserve_of_descriptors() -> None:
    assert HeldPollLimits.for_descriptors(1024, 10_000, 512).total == 1024 - DESCRIPTOR_RESERVE
    assert HeldPollLimits.for_descriptors(1 << 20, 10_000, 512).total == 10_000
    assert HeldPollLimits.for_descriptors(100, 10_000, 512).total == 1  # never zero


def test_counter_caps_per_client_and_in_total_and_forgets_idle_clients() -> None:
    counter = HeldPollCounter(HeldPollLimits(total=5, per_client=2))
    assert [counter.try_enter("a") for _ in range(3)] == [True, True, False]
    assert [counter.try_enter(c) for c in "bbc"] == [True, True, True]
    assert not counter.try_enter("d")  # 5 in total
    assert (len(counter), counter.refused) == (5, 2)
    for client in "aabbc":
        counter.leave(client)
    assert len(counter) == 0
    assert not counter._per_client  # no address stays in the table
