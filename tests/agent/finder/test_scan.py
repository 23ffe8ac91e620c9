"""The scan against a service registered here with python-zeroconf (the device side's
announcement is tested across network namespaces in tests/lan)."""

from __future__ import annotations

import os
import socket
import time

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from agent.finder.records import SERVICE_TYPE
from agent.finder.scan import scan


async def test_scan_resolves_a_registered_service_and_stops_early() -> None:
    device_id = f"02:fe:{os.getpid() % 256:02x}:00:00:01"
    fp = "cd" * 32
    name = f"camagent-test-{os.getpid()}.{SERVICE_TYPE}"
    info = ServiceInfo(
        SERVICE_TYPE,
        name,
        addresses=[socket.inet_aton("127.0.0.1")],
        port=9443,
        properties={"id": device_id, "kind": "camera", "state": "connected", "fp": fp, "pv": "1"},
        server=f"camagent-test-{os.getpid()}.local.",
    )
    azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    await azc.async_register_service(info)
    try:
        start = time.monotonic()
        records = await scan(20.0, stop_when=lambda r: r.id == device_id)
        elapsed = time.monotonic() - start
    finally:
        await azc.async_unregister_service(info)
        await azc.async_close()
    found = [r for r in records if r.id == device_id]
    assert len(found) == 1
    record = found[0]
    assert (record.kind, record.state, record.fp, record.port) == ("camera", "connected", fp, 9443)
    assert record.instance == f"camagent-test-{os.getpid()}"
    assert elapsed < 15  # stopped once found, long before the 20 s timeout


async def test_scan_with_nothing_matching_returns_after_the_timeout() -> None:
    start = time.monotonic()
    records = await scan(0.5, stop_when=lambda r: r.id == "no-such-device")
    assert time.monotonic() - start >= 0.5
    assert all(r.id != "no-such-device" for r in records)
