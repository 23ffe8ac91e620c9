"""A poll's cost must not tell how many organizations claimed its device: the gap between
a device nobody claimed, one with 1 claim and one with 8, each polled with a wrong proof
(all three answer 204).

Two rows, each from many samples taken in rounds (one sample of every case per round, in
a shuffled order), with bootstrap 95 % confidence intervals of each gap (the median of
one case less the median of another, over the same resampled rounds, so that a drift of
the machine during the run cancels out):

- `poll_timing_gap`: the mock's own check (`provisioning._check`) in process, over a
  real SQLite store: the server-side work, without the network's noise;
- `poll_timing_gap.http`: whole polls over HTTPS (keep-alive) to a mock started as a
  process, as a prober on the host would time them.

The target of each row: every gap's interval includes 0, or lies within ±MAX_GAP_US (a
difference too small to matter: a TLS round trip varies by far more). The figure is the
largest distance from 0 that an interval reaches.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import statistics
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from aiohttp import web

from agent.provisioning.wire import PollRequest, derive_key
from benchmarks.common import BenchmarkError, Context, Row
from cloud_mock import provisioning, sandbox
from cloud_mock.claims import MAX_OPEN_CLAIMS
from cloud_mock.clock import MockClock
from cloud_mock.devices_ws import CHANNELS, Channels
from cloud_mock.keys import CLOCK, STORE
from cloud_mock.store import Camera, Store

MAX_GAP_US = {"check": 1.0, "http": 5.0}
CLAIMS = {"none": 0, "1 claim": 1, f"{MAX_OPEN_CLAIMS} claims": MAX_OPEN_CLAIMS}
CASES = tuple(CLAIMS)
GAPS = ((CASES[1], CASES[0]), (CASES[2], CASES[0]), (CASES[2], CASES[1]))
WRONG_KEY = b"w" * 32


def _device(count: int) -> str:
    return f"02:c1:00:00:00:{count:02x}"


# --- statistics ----------------------------------------------------------------------------


def bootstrap_gap(
    a: Sequence[float], b: Sequence[float], rng: random.Random, rounds: int
) -> tuple[float, float, float]:
    """median(a) - median(b), and its bootstrap 95 % interval over resampled rounds (a[i]
    and b[i] were taken in the same round)."""
    n = len(a)
    gaps = []
    for _ in range(rounds):
        picks = rng.choices(range(n), k=n)
        gaps.append(
            statistics.median([a[i] for i in picks]) - statistics.median([b[i] for i in picks])
        )
    gaps.sort()
    low, high = gaps[int(0.025 * rounds)], gaps[min(rounds - 1, int(0.975 * rounds))]
    return statistics.median(a) - statistics.median(b), low, high


def _sample(
    measure: Callable[[str], float], rounds: int, rng: random.Random
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(rounds):
        order = list(CASES)
        rng.shuffle(order)
        for case in order:
            samples[case].append(measure(case))
    return samples


def _row(
    name: str, kind: str, samples: dict[str, list[float]], rng: random.Random, how: str
) -> Row:
    boot_rounds = 400 if len(samples[CASES[0]]) <= 1000 else 1000
    medians = {case: statistics.median(s) for case, s in samples.items()}
    gaps = {f"{a} - {b}": bootstrap_gap(samples[a], samples[b], rng, boot_rounds) for a, b in GAPS}
    limit = MAX_GAP_US[kind]
    reach = max(max(abs(low), abs(high)) for _, low, high in gaps.values())
    passed = all(
        low <= 0 <= high or max(abs(low), abs(high)) <= limit for _, low, high in gaps.values()
    )
    shown = "; ".join(
        f"{g} {gap:+.2f} [{low:+.2f}, {high:+.2f}]" for g, (gap, low, high) in gaps.items()
    )
    cases = ", ".join(f"{case} {medians[case]:.1f}" for case in CASES)
    return Row(
        name=name,
        value=round(reach, 2),
        unit="µs",
        display=f"medians {cases} µs; gaps (95 % CI) {shown} µs",
        target=f"each CI holds 0 or stays within ±{limit:g} µs",
        passed=passed,
        how=how,
        details={
            "samples_per_case": len(samples[CASES[0]]),
            "bootstrap_rounds": boot_rounds,
            "medians_us": medians,
            "iqr_us": {
                case: (lambda q: q[2] - q[0])(statistics.quantiles(s, n=4))
                for case, s in samples.items()
            },
            "gaps_us": {
                g: {"gap": gap, "ci95": [low, high]} for g, (gap, low, high) in gaps.items()
            },
        },
    )


# --- the check, in process -----------------------------------------------------------------


def _app(ctx: Context) -> web.Application:
    app = web.Application()
    store = Store.open_in(ctx.new_dir("claims-store"))
    ctx.stack.callback(store.close)
    clock = MockClock()
    app[STORE], app[CLOCK], app[CHANNELS] = store, clock, Channels()
    for count in CLAIMS.values():
        device_id = _device(count)
        for n in range(count):
            org = f"org{n}"
            store.accounts.upsert_org(org, False)
            now = clock.now()
            store.devices.insert_camera(
                Camera(
                    f"{device_id}-{n}",
                    org,
                    device_id,
                    "cam",
                    now,
                    f"{device_id}-j{n}",
                    None,
                    None,
                    bytes([n + 1]) * 32,
                    "token",
                    now,
                )
            )
    return app


def poll_timing(ctx: Context) -> list[Row]:
    rounds = 2000 if ctx.quick else 20000
    app = _app(ctx)
    rng = random.Random(0)

    def measure(case: str) -> float:
        poll = PollRequest.build(WRONG_KEY, _device(CLAIMS[case]), int(time.time()), 0)
        start = time.perf_counter_ns()
        provisioning._check(app, poll)
        return (time.perf_counter_ns() - start) / 1000

    for case in CASES:  # warm up every path first
        for _ in range(200):
            measure(case)
    rows = [
        _row(
            "poll_timing_gap",
            "check",
            _sample(measure, rounds, rng),
            rng,
            f"provisioning._check in process, wrong proofs, {rounds} shuffled rounds, "
            "bootstrap CI of the gaps of medians",
        )
    ]
    rows.append(_http_row(ctx, rng))
    return rows


# --- whole polls, over HTTPS ---------------------------------------------------------------


def _http_row(ctx: Context, rng: random.Random) -> Row:
    rounds = 400 if ctx.quick else 3000
    orgs = [f"org{n}" for n in range(MAX_OPEN_CLAIMS)]
    fixtures = ctx.new_dir("claims-fixtures") / "orgs.json"
    fixtures.write_text(
        json.dumps(
            {
                "orgs": [{"name": org, "business": False} for org in orgs],
                "users": [
                    {"login": org, "password": f"{org}-pass", "org": org, "role": "owner"}
                    for org in orgs
                ],
            }
        )
    )
    cloud = sandbox.start_cloud(ctx.new_dir("claims-cloud"), fixtures=fixtures)
    ctx.stack.callback(cloud.stop)
    for count in CLAIMS.values():
        for org in orgs[:count]:
            session = cloud.login(org, f"{org}-pass")
            cloud.add_camera(session, _device(count), f"pw-{org}", "cam")
    parts = urlsplit(cloud.url)
    context = ssl.create_default_context(cafile=str(cloud.ca_file))
    connection = http.client.HTTPSConnection(
        parts.hostname or "127.0.0.1", parts.port, context=context, timeout=30
    )
    ctx.stack.callback(connection.close)
    headers = {"Content-Type": "application/json"}

    def measure(case: str) -> float:
        device_id = _device(CLAIMS[case])
        poll = PollRequest.build(WRONG_KEY, device_id, int(time.time()), 0)
        body = json.dumps(poll.to_json()).encode()
        start = time.perf_counter_ns()
        connection.request("POST", "/v1/provisioning/poll", body, headers)
        response = connection.getresponse()
        response.read()
        elapsed = (time.perf_counter_ns() - start) / 1000
        if response.status != 204:
            raise BenchmarkError(f"a wrong proof for {case} got {response.status}, not 204")
        return elapsed

    for case in CASES:
        for _ in range(100):
            measure(case)
    # Sanity: the claims are there (the 1-claim device's own password gets its token).
    right = PollRequest.build(derive_key("pw-org0", _device(1)), _device(1), int(time.time()), 0)
    connection.request("POST", "/v1/provisioning/poll", json.dumps(right.to_json()), headers)
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise BenchmarkError(f"the 1-claim device's own password got {answer.status}, not 200")
    return _row(
        "poll_timing_gap.http",
        "http",
        _sample(measure, rounds, rng),
        rng,
        f"POST /v1/provisioning/poll over HTTPS keep-alive to a mock process, wrong proofs, "
        f"wait 0, {rounds} shuffled rounds, bootstrap CI of the gaps of medians",
    )
