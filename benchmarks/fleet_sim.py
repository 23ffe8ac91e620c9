"""Thundering herd: a fleet that lost power together, on the pure schedule (no network).

    python -m benchmarks.run --only fleet_sim
    python -m benchmarks.fleet_sim [--devices N] [--hours H] [--png FILE]

1,000,000 devices power up at t = 0, none provisioned (nobody ever adds them), so each
follows the provisioning schedule forever. We count request starts per second over three
hours, with the default jitter (slow_jitter 0.10) and without (0.0).

Method. Running a million `PollSchedule` objects one request at a time would take
minutes in pure Python, so the times are derived from the real module and then scaled:

1. For each request k, `agent.provisioning.schedule.PollSchedule` is driven with jitter
   draws of 0, +1 and -1. That gives the interval after request k as a function of its
   draw u: I_k(u) = b_k + s_k·u (b_k the base interval, s_k the jitter span). The
   module's intervals are affine in u; this is checked (I_k(-1) = b_k - s_k), so any
   change to the schedule's rules shows up here rather than being silently ignored.
2. With U a matrix of uniform draws in [-1, 1] (one row per device, one column per
   request), device d's request k starts at sum_{i<k} (b_i + s_i·U[d, i]): a cumulative
   sum in numpy, in chunks of devices to bound memory.
3. Verification: for 10,000 devices, the same draws are fed to 10,000 real
   `PollSchedule` objects (`begin(next_due, U[d, k])` request after request) and their
   start times must equal the vectorised ones (to 1e-6 s), hence the same histogram.

The steady rate is the mean over the last hour (≈ N / slow_interval), the peak the
largest one-second bin.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.provisioning.schedule import PollSchedule, ScheduleSettings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from benchmarks.common import Context, Row

DEVICES = 1_000_000
QUICK_DEVICES = 100_000
EXACT_DEVICES = 10_000
HOURS = 3.0
CHUNK = 100_000
PNG = Path(__file__).resolve().parent.parent / "docs" / "fleet-rate.png"
SEED = 20261123


@dataclass(frozen=True)
class Steps:
    """The schedule as the module computes it: interval after request k = base + span·u."""

    base: list[float]
    span: list[float]

    @property
    def count(self) -> int:
        return len(self.base)


def _intervals(settings: ScheduleSettings, draws: Callable[[int], float], n: int) -> list[float]:
    schedule = PollSchedule(settings, 0.0)
    out: list[float] = []
    for k in range(n):
        start = schedule.next_due
        schedule.begin(start, draws(k))
        out.append(schedule.next_due - start)
    return out


def derive_steps(settings: ScheduleSettings, horizon: float) -> Steps:
    """Enough steps that even the shortest intervals pass `horizon`."""
    n = 1
    while sum(_intervals(settings, lambda _k: -1.0, n)) <= horizon:
        n += 1
    zero = _intervals(settings, lambda _k: 0.0, n)
    plus = _intervals(settings, lambda _k: 1.0, n)
    minus = _intervals(settings, lambda _k: -1.0, n)
    span = [p - z for p, z in zip(plus, zero, strict=True)]
    for k in range(n):
        if abs((zero[k] - span[k]) - minus[k]) > 1e-9:
            raise ValueError(f"the schedule's interval {k} is not affine in its jitter draw")
    return Steps(zero, span)


def draws(rng: np.random.Generator, devices: int, steps: int) -> npt.NDArray[np.float64]:
    return rng.uniform(-1.0, 1.0, size=(devices, steps))


def start_times(steps: Steps, u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Request start times, one row per device: 0, then cumulative intervals."""
    import numpy as np

    intervals = np.asarray(steps.base) + np.asarray(steps.span) * u
    times = np.zeros_like(intervals)
    times[:, 1:] = np.cumsum(intervals[:, :-1], axis=1)
    return times


def exact_start_times(
    settings: ScheduleSettings, u: npt.NDArray[np.float64], horizon: float
) -> list[list[float]]:
    """The same draws through real PollSchedule objects, one per device."""
    rows: list[list[float]] = []
    for device in u:
        schedule = PollSchedule(settings, 0.0)
        row: list[float] = []
        for draw in device:
            if schedule.next_due > horizon:
                break
            row.append(schedule.next_due)
            schedule.begin(schedule.next_due, float(draw))
        rows.append(row)
    return rows


def histogram(
    settings: ScheduleSettings, devices: int, horizon: float, seed: int
) -> npt.NDArray[np.int64]:
    """Request starts per one-second bin over [0, horizon), all devices."""
    import numpy as np

    steps = derive_steps(settings, horizon)
    rng = np.random.default_rng(seed)
    counts = np.zeros(int(horizon), dtype=np.int64)
    for first in range(0, devices, CHUNK):
        n = min(CHUNK, devices - first)
        times = start_times(steps, draws(rng, n, steps.count)).ravel()
        times = times[times < horizon]
        counts += np.bincount(times.astype(np.int64), minlength=int(horizon))[: int(horizon)]
    return counts


def verify(settings: ScheduleSettings, horizon: float, seed: int) -> float:
    """Largest difference (s) between vectorised and module-computed start times."""
    import numpy as np

    steps = derive_steps(settings, horizon)
    u = draws(np.random.default_rng(seed), EXACT_DEVICES, steps.count)
    fast = start_times(steps, u)
    worst = 0.0
    for row_fast, row_exact in zip(fast, exact_start_times(settings, u, horizon), strict=True):
        kept = row_fast[row_fast <= horizon]
        if len(kept) != len(row_exact):
            return float("inf")
        worst = max(worst, float(np.max(np.abs(kept - np.asarray(row_exact)))))
    return worst


@dataclass
class Curve:
    label: str
    per_second: npt.NDArray[np.int64]

    @property
    def peak(self) -> int:
        return int(self.per_second.max())

    def steady(self, last_s: float = 3600.0) -> float:
        return float(self.per_second[-int(last_s) :].mean())

    def last_hour_peak(self) -> int:
        return int(self.per_second[-3600:].max())


def plot(curves: list[Curve], devices: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    # One-second bins (a 10 s bin would hide that the fast phase's spikes are 1 s wide);
    # the jitter-free curve first so that where both agree the default one shows on top.
    for curve, colour in reversed(list(zip(curves, ("tab:red", "tab:blue"), strict=False))):
        minutes = np.arange(len(curve.per_second)) / 60
        rate = np.maximum(curve.per_second, 0.5)  # 0 cannot be drawn on a log axis
        ax.step(minutes, rate, where="post", color=colour, linewidth=0.8, label=curve.label)
    steady = devices / 3600
    ax.axhline(steady, color="grey", linestyle="--", linewidth=1)
    ax.annotate(f"N/3600 = {steady:.0f}/s", (100, steady * 1.3), ha="center", color="grey")
    ax.annotate(
        "fast phase: 6 requests 60 s apart,\nno jitter in either setting",
        (6, devices * 0.35),
        color="black",
        fontsize=8,
    )
    ax.set_yscale("log")
    ax.set_xlabel("minutes since the whole fleet powered up")
    ax.set_ylabel("provisioning requests per second (1 s bins)")
    ax.set_title(f"{devices:,} unprovisioned devices powered up together")
    ax.set_xlim(0, len(curves[0].per_second) / 60)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(0.4, devices * 3)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


@dataclass
class Simulation:
    devices: int
    curves: list[Curve]
    worst_error_s: float
    seconds: float
    png: Path


def simulate(devices: int, hours: float, png: Path) -> Simulation:
    started = time.perf_counter()
    horizon = hours * 3600
    curves = []
    for jitter in (0.10, 0.0):
        settings = ScheduleSettings(slow_jitter=jitter)
        label = f"slow_jitter {jitter:.2f}" + (" (default)" if jitter else "")
        curves.append(Curve(label, histogram(settings, devices, horizon, SEED)))
    worst = max(verify(ScheduleSettings(slow_jitter=j), horizon, SEED + 1) for j in (0.10, 0.0))
    plot(curves, devices, png)
    return Simulation(devices, curves, worst, time.perf_counter() - started, png)


def fleet_sim(ctx: Context) -> list[Row]:
    from benchmarks.common import Row

    devices = QUICK_DEVICES if ctx.quick else DEVICES
    png = ctx.new_dir("fleet-sim") / "fleet-rate.png" if ctx.quick else PNG
    sim = simulate(devices, HOURS, png)
    jittered, flat = sim.curves
    expected = devices / 3600
    details: dict[str, Any] = {
        "devices": devices,
        "hours": HOURS,
        "png": str(png),
        "seconds": round(sim.seconds, 1),
        "exact_check_devices": EXACT_DEVICES,
        "exact_check_worst_error_s": sim.worst_error_s,
        "peak_per_s": {c.label: c.peak for c in sim.curves},
        "last_hour_peak_per_s": {c.label: c.last_hour_peak() for c in sim.curves},
        "steady_per_s_last_hour": {c.label: round(c.steady(), 1) for c in sim.curves},
    }
    how = f"{devices:,} devices, pure schedule, 1 s bins over {HOURS:g} h; plot {png.name}"
    steady = jittered.steady()
    return [
        Row(
            "fleet_sim.steady",
            round(steady, 1),
            "req/s",
            f"{steady:.0f}/s in the 3rd hour with jitter (N/3600 = {expected:.0f}/s); "
            f"peak then {jittered.last_hour_peak()}/s",
            f"within 10 % of {expected:.0f}/s",
            abs(steady - expected) <= 0.1 * expected,
            how,
            details,
        ),
        Row(
            "fleet_sim.peak",
            float(jittered.peak),
            "req/s",
            f"{jittered.peak:,}/s with jitter (first 6 requests), {flat.peak:,}/s without; "
            f"3rd hour {jittered.last_hour_peak():,} vs {flat.last_hour_peak():,}/s",
            "",
            None,
            "largest 1 s bin; without jitter the herd never disperses",
            details,
        ),
        Row(
            "fleet_sim.exact_check",
            sim.worst_error_s,
            "s",
            f"{EXACT_DEVICES:,} real PollSchedule objects agree to {sim.worst_error_s:.1e} s",
            "<= 1e-6 s",
            sim.worst_error_s <= 1e-6,
            "same draws through agent/provisioning/schedule.py, request by request",
            {},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_sim")
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--hours", type=float, default=HOURS)
    parser.add_argument("--png", type=Path, default=PNG)
    args = parser.parse_args(argv)
    sim = simulate(args.devices, args.hours, args.png)
    for curve in sim.curves:
        print(
            f"{curve.label}: peak {curve.peak}/s, last hour mean {curve.steady():.1f}/s, "
            f"last hour peak {curve.last_hour_peak()}/s"
        )
    print(f"exact check: worst error {sim.worst_error_s:.2e} s; {sim.seconds:.1f} s; {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
