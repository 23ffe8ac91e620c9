"""Load generator against the mock's provisioning service, run as its own process.

    python -m benchmarks.loadgen polls --url URL --ca CA --seconds 5 --workers 50 [--known FILE]
    python -m benchmarks.loadgen hold  --url URL --ca CA --count 2000 --mock-pid PID \
        [--session BEARER --sample 50]

With a session, the first `--sample` held pollers are devices with real keys; once all
polls are held their cameras are added one by one through the user API, and the time
from each 201 to that device's poll answer is measured (p50/p99/max).

Every request is a complete, correctly signed poll (`PollRequest.build`). It prints one
JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from agent.provisioning.wire import PollRequest, derive_key
from benchmarks.common import cpu_ticks, open_fds, percentile, proc_status

POLL_PATH = "/v1/provisioning/poll"
OPEN_LIMIT_S = 120.0


def _ssl(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def _unknown_device(n: int) -> str:
    # Locally administered MACs no camera was added for.
    return f"06:1d:{(n >> 24) & 255:02x}:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"


# -- polls per second -------------------------------------------------------------------


async def _poll_load(
    url: str,
    ca: str,
    seconds: float,
    workers: int,
    devices: list[tuple[str, bytes]],
    fresh: bool = False,
) -> dict[str, Any]:
    """`workers` loops posting `wait 0` polls for `seconds`; devices are used round-robin.

    `fresh`: a new TCP + TLS connection for every poll (what a device in its slow phase
    does: an hour apart, no connection is kept), instead of keep-alive connections.
    """
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    connector = aiohttp.TCPConnector(ssl=_ssl(ca), limit=workers, force_close=fresh)
    counter = 0

    async def worker(stop_at: float) -> None:
        nonlocal counter
        while time.perf_counter() < stop_at:
            counter += 1
            device_id, key = devices[counter % len(devices)]
            body = PollRequest.build(key, device_id, int(time.time()), 0).to_json()
            start = time.perf_counter()
            try:
                async with session.post(url + POLL_PATH, json=body) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if time.perf_counter() <= stop_at:
                latencies.append(time.perf_counter() - start)
                statuses[str(status)] = statuses.get(str(status), 0) + 1

    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        # Warm-up: open the connections (TLS handshakes are not what is measured).
        await asyncio.gather(*(worker(time.perf_counter() + 0.5) for _ in range(workers)))
        latencies.clear()
        statuses.clear()
        errors.clear()
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds) for _ in range(workers)))
        elapsed = time.perf_counter() - start
    if not latencies:
        return {"polls": 0, "errors": len(errors), "first_error": errors[:1]}
    return {
        "polls": len(latencies),
        "seconds": round(elapsed, 3),
        "polls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "statuses": statuses,
        "errors": len(errors),
        "first_error": errors[:1],
        "workers": workers,
        "devices": len(devices),
        "fresh_connections": fresh,
    }


def polls(args: argparse.Namespace) -> dict[str, Any]:
    if args.known:
        pairs = json.loads(Path(args.known).read_text())
        devices = [(d, derive_key(p, d)) for d, p in pairs]
    else:
        dummy = os.urandom(32)  # the mock cannot tell: it checks against a dummy key too
        devices = [(_unknown_device(n), dummy) for n in range(1000)]
    return asyncio.run(
        _poll_load(args.url, args.ca, args.seconds, args.workers, devices, args.fresh)
    )


# -- held long-polls --------------------------------------------------------------------


def _sample_device(n: int) -> tuple[str, str]:
    """(device_id, password) of the n-th sampled poller: a camera added during the run."""
    return f"06:1e:00:00:{(n >> 8) & 255:02x}:{n & 255:02x}", f"load-password-{n}"


async def _add_and_time(
    session: aiohttp.ClientSession,
    url: str,
    bearer: str,
    sample: list[tuple[str, str, asyncio.Task[int]]],
    answered_at: dict[str, float],
) -> dict[str, Any]:
    """Add each sampled device's camera; time from the 201 to its held poll's answer."""
    from_201: list[float] = []
    from_post: list[float] = []
    statuses: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {bearer}"}
    for device_id, password, task in sample:
        body = {"device_id": device_id, "password": password, "name": "loadgen"}
        posted = time.perf_counter()
        async with session.post(url + "/v1/cameras", json=body, headers=headers) as resp:
            await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"POST /v1/cameras: HTTP {resp.status}")
            created = time.perf_counter()
        status = await asyncio.wait_for(asyncio.shield(task), 10)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        # The poll's answer can be read before the 201 is: that counts as 0, not less.
        from_201.append(max(0.0, answered_at[device_id] - created))
        from_post.append(answered_at[device_id] - posted)
        await asyncio.sleep(0.02)  # one camera at a time, as users add them
    return {
        "sample": len(sample),
        "sample_statuses": statuses,
        "add_to_answer_p50_ms": round(percentile(from_201, 50) * 1000, 2),
        "add_to_answer_p99_ms": round(percentile(from_201, 99) * 1000, 2),
        "add_to_answer_max_ms": round(max(from_201) * 1000, 2),
        "post_to_answer_p99_ms": round(percentile(from_post, 99) * 1000, 2),
    }


async def _hold(args: argparse.Namespace) -> dict[str, Any]:
    url, mock_pid, count = args.url, args.mock_pid, args.count
    key = os.urandom(32)
    samples = [_sample_device(n) for n in range(args.sample if args.session else 0)]
    sample_keys = [derive_key(password, device_id) for device_id, password in samples]
    answered_at: dict[str, float] = {}
    opening = asyncio.Semaphore(args.concurrency)
    sent = released = 0

    def release(gate: dict[str, bool]) -> None:
        nonlocal released
        if not gate["released"]:
            gate["released"] = True
            released += 1
            opening.release()

    async def on_chunk_sent(_s: Any, ctx: Any, _p: Any) -> None:
        # The request is on the wire: the next connection may start its handshake.
        nonlocal sent
        gate = ctx.trace_request_ctx
        if gate is not None and not gate["released"]:
            sent += 1
            release(gate)

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(on_chunk_sent)
    timeout = aiohttp.ClientTimeout(total=args.wait + 60)
    # A fleet comes from many addresses (the mock caps held polls per address): the
    # pollers are spread over loopback addresses 127.0.0.1 … 127.0.0.N.
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=_ssl(args.ca), limit=0, local_addr=(f"127.0.0.{1 + n}", 0)
            ),
            timeout=timeout,
            trace_configs=[trace],
        )
        for n in range(args.sources)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for each in sessions:
            await stack.enter_async_context(each)
        session = sessions[0]

        async def one(n: int, wait: int) -> int:
            gate = {"released": False}
            # The first pollers are the sampled devices, with their real keys.
            device_id, device_key = (
                (samples[n][0], sample_keys[n]) if n < len(samples) else (_unknown_device(n), key)
            )
            await opening.acquire()
            try:
                body = PollRequest.build(device_key, device_id, int(time.time()), wait)
                async with sessions[n % len(sessions)].post(
                    url + POLL_PATH, json=body.to_json(), trace_request_ctx=gate
                ) as resp:
                    answered_at[device_id] = time.perf_counter()
                    await resp.read()
                    return resp.status
            finally:
                release(gate)

        # Warm-up: the mock's TLS and poll code paths have run before the baseline.
        await asyncio.gather(*(one(10_000_000 + n, 0) for n in range(20)))
        await asyncio.sleep(0.5)
        sent = released = 0
        rss_before = proc_status(mock_pid)["VmRSS"]
        fds_before = open_fds(mock_pid)
        ticks_before = cpu_ticks(mock_pid)

        start = time.perf_counter()
        tasks = [asyncio.create_task(one(n, args.wait)) for n in range(count)]
        while released < count and time.perf_counter() - start < OPEN_LIMIT_S:
            await asyncio.sleep(0.05)
        open_s = time.perf_counter() - start
        # Let the mock finish reading what was sent, then watch for early answers.
        settle_start = time.perf_counter()
        last = cpu_ticks(mock_pid)
        while time.perf_counter() - settle_start < 30:
            await asyncio.sleep(0.5)
            now = cpu_ticks(mock_pid)
            if now - last <= 1:
                break
            last = now
        await asyncio.sleep(args.check)
        returned = [t for t in tasks if t.done()]
        failures = [t for t in returned if t.exception() is not None]
        statuses: dict[str, int] = {}
        for t in returned:
            if t.exception() is None:
                statuses[str(t.result())] = statuses.get(str(t.result()), 0) + 1
        rss_after = proc_status(mock_pid)["VmRSS"]
        fds_after = open_fds(mock_pid)
        ticks_open = cpu_ticks(mock_pid) - ticks_before
        held = count - len(returned)
        added: dict[str, Any] = {}
        if samples and not any(t.done() for t in tasks[: len(samples)]):
            sample = [(d, p, tasks[n]) for n, (d, p) in enumerate(samples)]
            added = await _add_and_time(session, url, args.session, sample, answered_at)
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    # Every held poll is released (the connections are closed): what memory does the
    # mock keep? Wait until its descriptors are back, then for its heap to settle.
    released_at = time.perf_counter()
    while open_fds(mock_pid) > fds_before + 8 and time.perf_counter() - released_at < 30:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    rss_released = proc_status(mock_pid)["VmRSS"]
    return {
        "mock_rss_released_kib": rss_released,
        "mock_fds_released": open_fds(mock_pid),
        "requested": count,
        "sent": sent,
        "held": held,
        "returned_early": len(returned),
        "returned_statuses": statuses,
        "failures": len(failures),
        "first_failure": [repr(t.exception()) for t in failures[:1]],
        "open_seconds": round(open_s, 2),
        "check_seconds": args.check,
        "mock_rss_before_kib": rss_before,
        "mock_rss_after_kib": rss_after,
        "kib_per_held_poll": round((rss_after - rss_before) / held, 2) if held else None,
        "mock_fds_before": fds_before,
        "mock_fds_after": fds_after,
        "mock_cpu_s_while_opening": round(ticks_open / os.sysconf("SC_CLK_TCK"), 2),
        "wait": args.wait,
        "concurrency": args.concurrency,
        **added,
    }


def hold(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))
    return asyncio.run(_hold(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("polls", help="plain polls (wait 0) as fast as the mock answers")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=50)
    p.add_argument("--known", help="JSON [[device_id, password], …]; default: unknown ids")
    p.add_argument("--fresh", action="store_true", help="a new TLS connection for every poll")
    h = sub.add_parser("hold", help="open COUNT long-polls and check that all are held")
    h.add_argument("--count", type=int, default=2000)
    h.add_argument("--wait", type=int, default=30)
    h.add_argument("--concurrency", type=int, default=200)
    h.add_argument("--check", type=float, default=3.0, help="seconds none may return")
    h.add_argument("--sources", type=int, default=8, help="loopback source addresses")
    h.add_argument("--mock-pid", type=int, required=True)
    h.add_argument("--sample", type=int, default=50, help="held pollers whose camera is added")
    h.add_argument("--session", help="user session (bearer) to add cameras with; no sample without")
    for s in (p, h):
        s.add_argument("--url", required=True)
        s.add_argument("--ca", required=True)
    args = parser.parse_args(argv)
    result = polls(args) if args.mode == "polls" else hold(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
