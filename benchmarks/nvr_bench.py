"""NVR benchmarks: activate → online latency, and the cost of activation codes.

activate_to_online: NVR agents sit in the fast phase holding a long-poll with their
activation code's secret; each is activated through the wizard's Connect step while its
poll is held, one after the other, and timed from just before `POST …/activate` until
the cloud shows the registrator `online` (activate → wake → sealed token → verify →
WebSocket → hello).
"""

from __future__ import annotations

import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.nvr import activation_code
from benchmarks.common import BenchmarkError, Context, KeepAliveClient, Row, median, percentile
from benchmarks.online_bench import FAST_INTERVAL, HELD_WINDOW, LONG_POLL, STATUS_POLL_S
from cloud_mock import sandbox

TARGET_P50_MS = 1000.0
ONLINE_TIMEOUT_S = 15.0


def _wait_until_held(agent: sandbox.Agent, timeout: float = 20.0) -> str:
    """Wait until the NVR shows a code and holds a poll; return the code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = agent.status()
        prov = status["provisioning"]
        next_in = prov.get("next_poll_in")
        if (
            status.get("activation")
            and prov.get("last_attempt")
            and next_in is not None
            and HELD_WINDOW[0] <= next_in <= HELD_WINDOW[1]
        ):
            return str(status["activation"]["code"])
        time.sleep(0.02)
    raise BenchmarkError(f"NVR {agent.config_path.parent.name} never held a poll with a code")


def _activate_and_wait_online(client: KeepAliveClient, code: str, index: int) -> float:
    status, registrator = client.request(
        "POST", "/v1/registrators", {"name": f"bench NVR {index}", "device": "virtual"}
    )
    if status != 201:
        raise BenchmarkError(f"POST /v1/registrators: HTTP {status} {registrator}")
    path = f"/v1/registrators/{registrator['id']}"
    start = time.perf_counter()
    status, body = client.request("POST", f"{path}/activate", {"code": code})
    if status != 200:
        raise BenchmarkError(f"activate {code}: HTTP {status} {body}")
    while True:
        status, current = client.request("GET", path)
        now = time.perf_counter()
        if status == 200 and current["status"] == "online":
            return (now - start) * 1000
        if now - start > ONLINE_TIMEOUT_S:
            raise BenchmarkError(f"registrator {registrator['id']} not online")
        time.sleep(STATUS_POLL_S)


def activate_to_online(ctx: Context) -> list[Row]:
    count = 3 if ctx.quick else 10
    cloud = ctx.shared_cloud()
    configs = [
        sandbox.write_agent_config(
            ctx.new_dir(f"nvr-{i}"),
            cloud,
            device_id=device_id,
            password="unused",
            kind="nvr",
            fast_interval=FAST_INTERVAL,
            fast_attempts=10_000,
            long_poll=LONG_POLL,
        )
        for i, (device_id, _) in enumerate(ctx.next_device() for _ in range(count))
    ]
    with ThreadPoolExecutor(max_workers=count) as pool:
        agents = list(pool.map(ctx.start_agent, configs))
    client = KeepAliveClient(cloud, cloud.login())
    latencies: list[float] = []
    try:
        for index, agent in enumerate(agents):
            latencies.append(_activate_and_wait_online(client, _wait_until_held(agent), index))
    finally:
        client.close()
        for agent in agents:
            agent.stop()
    p50, p90, worst = median(latencies), percentile(latencies, 90), max(latencies)
    return [
        Row(
            "activate_to_online",
            round(p50, 1),
            "ms",
            f"p50 {p50:.0f} ms, p90 {p90:.0f} ms, max {worst:.0f} ms (n={len(latencies)})",
            f"p50 <= {TARGET_P50_MS:.0f} ms",
            p50 <= TARGET_P50_MS,
            f"{count} NVR agents holding a {LONG_POLL:.0f} s long-poll; before POST "
            "…/activate -> GET registrator online (2 ms poll)",
            {"latencies_ms": [round(v, 1) for v in latencies]},
        )
    ]


def activation_code_cost(ctx: Context) -> list[Row]:
    number = 2_000 if ctx.quick else 20_000
    codes = [activation_code.generate() for _ in range(100)]
    sloppy = [c.lower().replace("-", " ") for c in codes]

    def per_call_us(stmt: Any) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=3)) / number * 1e6

    generate = per_call_us(activation_code.generate)
    parse = per_call_us(lambda: [activation_code.parse(c) for c in sloppy]) / len(sloppy)
    return [
        Row(
            "activation_code_cost",
            round(generate + parse, 2),
            "µs",
            f"generate {generate:.1f} µs, parse+check {parse:.1f} µs",
            "",
            None,
            f"timeit, best of 3 runs of {number} calls, this Python, one core",
            {"generate_us": round(generate, 2), "parse_us": round(parse, 2)},
        )
    ]
