"""Run the benchmark suite: `python -m benchmarks.run [--quick] [--only NAME[,NAME]]`.

Prints one table (benchmark, result, target, mark, how measured), writes the same as JSON
to benchmarks/results/latest.json, and exits 0 when every target is met, 1 otherwise
(a benchmark that fails to run counts as missed), 2 on a usage error.
Everything runs on 127.0.0.1; every process started is stopped before it exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import (
    claims_bench,
    crash_bench,
    daemon_bench,
    fleet_load,
    fleet_sim,
    lan_bench,
    mock_bench,
    nvr_bench,
    online_bench,
    qr_bench,
    qr_daemon_bench,
    system_bench,
    video_bench,
)
from benchmarks.common import Context, Extra, Row, error_row, python_label, raise_nofile

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
NOFILE_WANTED = 8192  # 2000 held long-polls, each one socket in the mock and one here


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: Callable[[Context], list[Row]]
    target: str  # shown if it fails before producing a row
    how: str


BENCHMARKS: list[Benchmark] = [
    Benchmark("ready_time", daemon_bench.ready_time, "p50 <= 200 ms", "Popen -> READY=1"),
    Benchmark(
        "idle_rss", daemon_bench.idle_rss, "<= 44 MiB; default config <= 48", "VmRSS, connected"
    ),
    Benchmark("idle_cpu", daemon_bench.idle_cpu, "<= 0.1 %", "utime+stime, connected daemon"),
    Benchmark("add_to_online", online_bench.add_to_online, "p50 <= 1000 ms", "add -> online"),
    Benchmark("mock_polls_per_s", mock_bench.mock_polls_per_s, "", "signed polls, wait 0"),
    Benchmark(
        "mock_long_polls_held", mock_bench.mock_long_polls_held, ">= 2000 held", "wait=30 polls"
    ),
    Benchmark(
        "activate_to_online", nvr_bench.activate_to_online, "p50 <= 1000 ms", "activate -> online"
    ),
    Benchmark("activation_code_cost", nvr_bench.activation_code_cost, "", "timeit"),
    Benchmark("poll_timing_gap", claims_bench.poll_timing, "<= 10 %", "poll check per case"),
    Benchmark("fleet_load", fleet_load.fleet_load, "p99 <= 50 ms", "N pollers, add -> answer"),
    Benchmark("fleet_sim", fleet_sim.fleet_sim, "steady ~ N/3600", "1M devices, pure schedule"),
    Benchmark("crash_bench", crash_bench.crash_bench, "corrupt = 0", "SIGKILL mid-write"),
    Benchmark("qr_decode", qr_bench.qr_decode, ">= 88 of 89 read", "tests/data/qr-bench"),
    Benchmark("qr_daemon_memory", qr_daemon_bench.qr_daemon_memory, "<= 48 MiB", "VmRSS"),
    Benchmark(
        "service_ready", system_bench.service_ready, "p50 <= 400 ms", "booted container, systemd"
    ),
    Benchmark("install_one_liner", system_bench.install_one_liner, "", "booted container"),
    Benchmark(
        "service_idle_rss",
        system_bench.service_idle_rss,
        "<= 44 MiB; default config <= 48",
        "booted Debian 12 and 13, VmRSS",
    ),
    Benchmark("lan", lan_bench.lan, "push p50 <= 500 ms", "network namespaces, mDNS"),
    Benchmark(
        "live_relay_cpu", video_bench.live_relay_cpu, "", "daemon utime+stime per Mbit/s relayed"
    ),
    Benchmark(
        "live_stream_rss",
        video_bench.live_stream_rss,
        f"<= +{video_bench.STREAM_RSS_TARGET_MIB:g} MiB",
        "daemon VmRSS streaming - idle",
    ),
    Benchmark(
        "live_mock_capacity",
        video_bench.live_mock_capacity,
        "",
        "N devices, 1 viewer each; mock + ffmpeg CPU",
    ),
    Benchmark(
        "live_glass_to_glass",
        video_bench.live_glass_to_glass,
        f"median <= {video_bench.GLASS_TARGET_S:g} s",
        "chromium, time code in the frame vs Date.now()",
    ),
    Benchmark(
        "live_first_frame",
        video_bench.live_first_frame,
        f"median <= {video_bench.FIRST_FRAME_TARGET_S:g} s",
        "chromium, navigation -> first frame presented",
    ),
]
NAMES = [b.name for b in BENCHMARKS]


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="camagent benchmarks (mock cloud and daemons on 127.0.0.1)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these: " + ", ".join(NAMES))
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in NAMES]
        if unknown or not wanted:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
        args.selected = [b for b in BENCHMARKS if b.name in wanted]
    else:
        args.selected = list(BENCHMARKS)
    return args


def _run_one(bench: Benchmark, ctx: Context) -> tuple[list[Row], float]:
    start = time.monotonic()
    _log(f"{bench.name} …")
    try:
        rows = bench.run(ctx)
    except Exception as exc:  # one broken benchmark must not stop the others
        _log(f"{bench.name} failed:\n{traceback.format_exc()}")
        rows = [error_row(bench.name, bench.target, bench.how, f"{type(exc).__name__}: {exc}")]
    elapsed = time.monotonic() - start
    _log(f"{bench.name} done in {elapsed:.1f} s")
    return rows, elapsed


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(r) for r in rows)])


def render(rows: Sequence[Row], extras: Sequence[Extra]) -> str:
    main = _table(
        ("benchmark", "result", "target", "mark", "how measured"),
        [(r.name, r.display, r.target or "(none)", r.mark, r.how) for r in rows],
    )
    parts = [main]
    for extra in extras:
        parts.append(f"{extra.title}\n{_table(extra.columns, extra.rows)}")
    return "\n\n".join(parts)


def _document(
    args: argparse.Namespace,
    rows: Sequence[Row],
    extras: Sequence[Extra],
    timings: dict[str, float],
    started: float,
    nofile: tuple[int, int],
) -> dict[str, Any]:
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "only": [b.name for b in args.selected],
        "python": sys.executable,
        "python_version": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rlimit_nofile": list(nofile),
        "duration_s": round(time.monotonic() - started, 1),
        "benchmark_seconds": timings,
        "all_passed": all(r.passed is not False for r in rows),
        "results": {r.name: r.to_json() for r in rows},
        "extra_tables": [
            {"title": e.title, "columns": list(e.columns), "rows": e.rows, "data": e.data}
            for e in extras
        ],
    }


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop processes


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    started = time.monotonic()
    nofile = raise_nofile(NOFILE_WANTED)  # before any mock starts: they inherit it
    _log(f"python {python_label()}; RLIMIT_NOFILE {nofile[0]}; quick={args.quick}")
    ctx = Context(args.quick, _log)
    rows: list[Row] = []
    timings: dict[str, float] = {}
    try:
        for bench in args.selected:
            produced, elapsed = _run_one(bench, ctx)
            rows.extend(produced)
            timings[bench.name] = round(elapsed, 1)
    except KeyboardInterrupt:
        _log("interrupted: stopping everything that was started")
        return 130
    finally:
        ctx.close()
    document = _document(args, rows, ctx.extras, timings, started, nofile)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(render(rows, ctx.extras))
    print(
        f"\n{sum(r.passed is True for r in rows)} passed, "
        f"{sum(r.passed is False for r in rows)} missed or failed, "
        f"{sum(r.passed is None for r in rows)} without target; "
        f"{document['duration_s']:.0f} s; results in {args.output}"
    )
    return 0 if document["all_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
