"""Real agents against the real mock through a fault proxy (or a failing resolver).

For each fault: the agent keeps the schedule's rules (request starts no closer than the
interval, no more requests than the schedule allows), never spins (requests and CPU time
bounded), comes back once the fault clears (within the next scheduled poll for
provisioning, within the backoff cap for the control channel), and keeps its state.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from agent.backoff import Backoff
from agent.control_channel import CONNECT_TIMEOUT_S
from agent.provisioning.schedule import PollSchedule, ScheduleSettings
from tests.eventually import eventually
from tests.faults.conftest import (
    FAST_ATTEMPTS,
    FAST_INTERVAL,
    LONG_POLL,
    MOCK_ADDRESS,
    SLOW_INTERVAL,
    SLOW_JITTER,
    FaultAgent,
    Rig,
    cpu_seconds,
)
from tests.faults.proxy import ConnectionRecord, Fault, FaultProxy, Mode

SETTINGS = ScheduleSettings(FAST_INTERVAL, FAST_ATTEMPTS, SLOW_INTERVAL, SLOW_JITTER, LONG_POLL)
FAULT_WINDOW_S = 6.0
# A spinning daemon burns a whole core; a polling one a few per cent of it.
CPU_SHARE_LIMIT = 0.25
# Start times seen from another process: allow for scheduling noise, not for a skipped rule.
GAP_SLACK = 0.8
CONTROL_BACKOFF = Backoff()


def max_requests(window: float) -> int:
    """The most requests the real schedule allows in `window` seconds (shortest jitter)."""
    schedule = PollSchedule(SETTINGS, 0.0)
    count = 0
    while schedule.next_due <= window:
        schedule.begin(schedule.next_due, -1.0)
        count += 1
    return count


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    """Wait for `predicate`; the seconds it took."""
    start = time.monotonic()
    eventually(predicate, timeout=timeout, what=what)
    return time.monotonic() - start


def assert_schedule_kept(records: list[ConnectionRecord], window: float, what: str) -> None:
    opens = sorted(r.opened_at for r in records)
    assert opens, f"{what}: the agent made no request at all"
    assert len(opens) <= max_requests(window) + 1, f"{what}: {len(opens)} connections"
    # From the second connection on: the first request derives the password key (scrypt)
    # before it connects, which moves its connection, not its start, later.
    gaps = [b - a for a, b in itertools.pairwise(opens[1:])]
    assert all(g >= GAP_SLACK * FAST_INTERVAL for g in gaps), f"{what}: gaps {gaps}"


def test_schedule_rules_hold_through_connection_faults_and_dns_failure(rig: Rig) -> None:
    faults = {
        Mode.DROP: Fault(Mode.DROP),
        Mode.RESET: Fault(Mode.RESET),
        Mode.TRUNCATE: Fault(Mode.TRUNCATE, truncate_after=7),
        Mode.STALL: Fault(Mode.STALL),
    }
    behind: dict[Mode, tuple[FaultAgent, FaultProxy]] = {}
    for mode, fault in faults.items():
        proxy, address = rig.proxy()
        proxy.set_fault(fault)
        behind[mode] = (rig.launch(address)[0], proxy)
    no_dns = rig.launch(None)[0]  # `localhost` resolves to nothing at all
    # With no signing keys configured the first thing each request does is fetch them:
    # that fetch must keep to the request's slot too.
    keys_proxy, keys_address = rig.proxy()
    keys_proxy.set_fault(Fault(Mode.DROP))
    no_keys = rig.launch(keys_address, trust_keys=False)[0]
    agents = [a for a, _ in behind.values()] + [no_dns, no_keys]
    for agent in agents:
        rig.ready(agent)
    cpu_before = {a.device_id: cpu_seconds(a.agent.process.pid) for a in agents}
    watch_start = time.monotonic()
    # Time is the subject: how the agents behave over a whole window of faults.
    time.sleep(FAULT_WINDOW_S)
    watched = time.monotonic() - watch_start

    for agent in agents:
        status = agent.status()
        window = time.monotonic() - agent.launched_at
        attempts = status["provisioning"]["attempts"]
        what = f"{agent.device_id} ({status['provisioning'].get('last_result')})"
        assert status["state"] == "provisioning", what
        # It keeps trying on schedule, and no faster than the schedule allows.
        assert 5 <= attempts <= max_requests(window), what
        cpu = cpu_seconds(agent.agent.process.pid) - cpu_before[agent.device_id]
        assert cpu <= CPU_SHARE_LIMIT * watched, f"{what}: {cpu:.2f} s CPU in {watched:.1f} s"
    for name, (agent, proxy) in [
        *((m.value, pair) for m, pair in behind.items()),
        ("drop, fetching keys", (no_keys, keys_proxy)),
    ]:
        window = time.monotonic() - agent.launched_at
        assert_schedule_kept(proxy.connections_since(0.0), window, name)
    last = {m: a.status()["provisioning"]["last_result"] for m, (a, _) in behind.items()}
    assert "timed out" in last[Mode.DROP]
    assert "timed out" in last[Mode.STALL]
    assert "network error" in last[Mode.RESET]
    assert "network error" in last[Mode.TRUNCATE]
    assert "network error" in no_dns.status()["provisioning"]["last_result"]
    assert "cannot fetch the cloud's keys" in no_keys.status()["provisioning"]["last_result"]

    # The faults clear, the cameras are added: each agent gets its token at its next poll.
    for proxy in [*(p for _, p in behind.values()), keys_proxy]:
        proxy.set_fault(Fault(Mode.PASS))
    no_dns.point_at(MOCK_ADDRESS)
    for agent in agents:
        rig.add_camera(agent)
    next_poll = SLOW_INTERVAL * (1 + SLOW_JITTER) + LONG_POLL
    for agent in agents:
        took = agent.wait_for_state("connected", timeout=next_poll + 15)
        status = agent.status()
        assert status["token"]["present"] is True
        assert status["provisioning"]["phase"] == "off"
        assert took < next_poll + 15


def test_slow_network_delays_but_never_overlaps_requests(rig: Rig) -> None:
    proxy, address = rig.proxy()
    proxy.set_fault(Fault(Mode.DELAY, delay_s=0.15))
    agent = rig.launch(address)[0]
    rig.ready(agent)
    rig.add_camera(agent)
    agent.wait_for_state("connected", timeout=30)
    window = time.monotonic() - agent.launched_at
    polls = rig.cloud.provisioning_log(agent.device_id)
    assert polls[-1]["result"] == "token"
    # Requests that did not end before the next was due were abandoned, not stacked up.
    assert len(polls) <= max_requests(window)
    assert agent.status()["token"]["present"] is True


def test_clock_skew_of_ten_minutes_either_way_still_provisions(rig: Rig) -> None:
    for skew in (600.0, -600.0):
        rig.cloud.advance_clock(skew if skew > 0 else -1200.0)
        agent = rig.launch(MOCK_ADDRESS)[0]
        rig.add_camera(agent)
        rig.ready(agent)
        agent.wait_for_state("connected", timeout=30)
        results = [p["result"] for p in rig.cloud.provisioning_log(agent.device_id)]
        # The first poll's `ts` was off by the skew; the Date header corrected the next.
        assert results[0] == "clock_skew", results
        assert results[-1] == "token", results
        assert len(results) <= 3, results


def test_retry_after_from_429_and_503_is_honoured(rig: Rig) -> None:
    retry_after = 2
    agent = rig.launch(MOCK_ADDRESS)[0]
    rig.ready(agent)
    wait_until(lambda: len(rig.cloud.provisioning_log(agent.device_id)) >= 1, 10, "first poll")
    rig.cloud.inject_poll_fault(503, retry_after=retry_after, count=2)
    wait_until(
        lambda: sum(p["result"] == "fault" for p in rig.cloud.provisioning_log()) >= 2,
        15,
        "two 503s",
    )
    rig.cloud.inject_poll_fault(429, retry_after=retry_after, count=1)
    wait_until(
        lambda: sum(p["result"] == "fault" for p in rig.cloud.provisioning_log()) >= 3,
        15,
        "a 429",
    )
    rig.add_camera(agent)
    agent.wait_for_state("connected", timeout=20)
    polls = rig.cloud.provisioning_log(agent.device_id)
    times = [p["at"] for p in polls]
    for i, poll in enumerate(polls[:-1]):
        if poll["result"] == "fault":
            # The fast phase would come back after 0.5 s; Retry-After said 2.
            gap = times[i + 1] - times[i]
            assert gap >= retry_after - 0.1, (i, gap, polls)
    assert sum(p["result"] == "fault" for p in polls) == 3
    assert agent.status()["token"]["present"] is True


def test_control_channel_comes_back_after_reset_and_blackhole(rig: Rig) -> None:
    reset_proxy, reset_address = rig.proxy()
    hole_proxy, hole_address = rig.proxy()
    reset_agent = rig.launch(reset_address)[0]
    hole_agent = rig.launch(hole_address)[0]
    for agent in (reset_agent, hole_agent):
        rig.add_camera(agent)
        rig.ready(agent)
    for agent in (reset_agent, hole_agent):
        agent.wait_for_state("connected", timeout=30)
    token_before = {a.device_id: a.status()["token"]["jti"] for a in (reset_agent, hole_agent)}

    # Reset: every live connection gets an RST; the agent reconnects at once (backoff 1).
    fault_at = time.monotonic()
    assert reset_proxy.reset_all() >= 1
    took = wait_until(lambda: reset_agent.state() == "connected", 60, "reconnect after RST")
    cap = CONTROL_BACKOFF.cap
    assert took < cap
    assert len(reset_proxy.connections_since(fault_at)) <= 3

    # Blackhole: the link goes silent (no FIN, no RST) and new connections are swallowed.
    hole_proxy.set_fault(Fault(Mode.DROP))
    fault_at = time.monotonic()
    cpu_before = cpu_seconds(hole_agent.agent.process.pid)
    assert hole_proxy.blackhole_all() >= 1
    wait_until(lambda: hole_agent.state() == "disconnected", 20, "silence noticed")
    wait_until(lambda: len(hole_proxy.connections_since(fault_at)) >= 1, 20, "a reconnect attempt")
    time.sleep(1.0)  # time is the subject: no spinning (attempts, CPU) while blackholed
    attempts = len(hole_proxy.connections_since(fault_at))
    cpu = cpu_seconds(hole_agent.agent.process.pid) - cpu_before
    assert cpu <= CPU_SHARE_LIMIT * (time.monotonic() - fault_at), cpu
    hole_proxy.set_fault(Fault(Mode.PASS))
    took = wait_until(lambda: hole_agent.state() == "connected", cap + 10, "reconnect")
    # The attempt swallowed by the blackhole gives up after CONNECT_TIMEOUT_S (it used to
    # hang for aiohttp's 30 s default), then the next one comes after a short backoff.
    assert took < CONNECT_TIMEOUT_S + CONTROL_BACKOFF.delay(3, 1.0) + 3, f"{took:.1f} s"
    # No spinning while blackholed: attempts spaced by the backoff, a handful at most.
    assert attempts <= 3, attempts
    assert len(hole_proxy.connections_since(fault_at)) <= 6
    for agent in (reset_agent, hole_agent):
        status = agent.status()
        assert status["token"]["jti"] == token_before[agent.device_id]  # state kept
        assert status["provisioning"]["phase"] == "off"


RESTART_FLEET = 20


@pytest.mark.timeout(240)
def test_every_agent_comes_back_after_the_mock_restarts(rig: Rig) -> None:
    agents = [rig.launch(MOCK_ADDRESS)[0] for _ in range(RESTART_FLEET)]
    # These never got a camera: they are polling (long-polls held) when the mock goes.
    waiting = [rig.launch(MOCK_ADDRESS)[0] for _ in range(3)]
    for agent in agents:
        rig.add_camera(agent)
    for agent in agents + waiting:
        rig.ready(agent)
    for agent in agents:
        agent.wait_for_state("connected", timeout=90)
    tokens = {a.device_id: a.status()["token"]["jti"] for a in agents}

    stopped_at = time.time()  # the mock's clock is real time here
    rig.cloud.stop()
    wait_until(lambda: all(a.state() == "disconnected" for a in agents), 30, "all agents noticed")
    down_at = time.monotonic()
    rig.restart_cloud()  # same data dir, same port: the tokens it signed stay valid
    restarted_in = time.monotonic() - down_at
    took = wait_until(lambda: all(a.state() == "connected" for a in agents), 90, "all agents back")
    # Each came back within its backoff cap after the cloud was back.
    assert took < CONTROL_BACKOFF.cap, f"{took:.1f} s (mock restart took {restarted_in:.1f} s)"
    status, body = rig.cloud.request("GET", "/v1/cameras", session=rig.session)
    assert status == 200, body
    cameras = body["cameras"] if isinstance(body, dict) else body
    online = {c["device_id"] for c in cameras if c["status"] == "online"}
    assert online == {a.device_id for a in agents}
    for agent in agents:
        status_now = agent.status()
        assert status_now["token"]["jti"] == tokens[agent.device_id]
        assert status_now["provisioning"]["phase"] == "off"
        # A device holding a token made no provisioning request through all of this.
        polls = rig.cloud.provisioning_log(agent.device_id)
        assert polls[-1]["result"] == "token", polls
        assert all(p["at"] < stopped_at for p in polls), polls
    # The polling ones kept polling through the restart and provision now.
    for agent in waiting:
        assert agent.state() == "provisioning"
        rig.add_camera(agent)
    for agent in waiting:
        agent.wait_for_state("connected", timeout=SLOW_INTERVAL * 2 + 15)
