"""Browse `_camagent._tcp.local.` with python-zeroconf and resolve what answers.

zeroconf is imported lazily: only the finder needs it, never `camagent status` and co.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.finder.errors import FinderError
from agent.finder.records import SERVICE_TYPE, DeviceRecord, record_from_service

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncZeroconf

RESOLVE_TIMEOUT_MS = 2000
Progress = Callable[[int, float], None]  # (devices found so far, seconds elapsed)
PROGRESS_EVERY_S = 0.2


class _Browse:
    """The state of one scan: resolved records by service name, resolver tasks."""

    def __init__(self, azc: AsyncZeroconf, stop_when: Callable[[DeviceRecord], bool] | None):
        self.azc = azc
        self.stop_when = stop_when
        self.records: dict[str, DeviceRecord] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()

    def on_change(self, **kwargs: Any) -> None:
        from zeroconf import ServiceStateChange

        name: str = kwargs["name"]
        change = kwargs["state_change"]
        if change is ServiceStateChange.Removed:
            self.records.pop(name, None)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(kwargs["service_type"], name))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self.azc.zeroconf, RESOLVE_TIMEOUT_MS):
            return  # announced, then gone (or never answered the SRV/TXT query)
        if info.port is None:
            return
        record = record_from_service(
            name,
            info.parsed_addresses(IPVersion.V4Only),
            info.port,
            info.properties,
            info.server or "",
        )
        self.records[name] = record
        if self.stop_when is not None and self.stop_when(record):
            self.done.set()


async def scan(
    timeout: float,
    *,
    stop_when: Callable[[DeviceRecord], bool] | None = None,
    progress: Progress | None = None,
) -> list[DeviceRecord]:
    """Every device that answered within `timeout` s (earlier once `stop_when` matches)."""
    try:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf
    except ImportError:
        raise FinderError(
            "the finder needs python-zeroconf: install python3-zeroconf (or pip install zeroconf)"
        ) from None
    try:
        azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    except OSError as exc:
        raise FinderError(
            f"cannot open the mDNS socket (UDP 5353): {exc.strerror or exc}; "
            "is a network interface up?"
        ) from None
    browse = _Browse(azc, stop_when)
    start = time.monotonic()
    browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[browse.on_change])
    try:
        await _wait(browse, start, timeout, progress)
    finally:
        await browser.async_cancel()
        for task in list(browse.tasks):
            task.cancel()
        await asyncio.gather(*browse.tasks, return_exceptions=True)
        await azc.async_close()
    return list(browse.records.values())


async def _wait(browse: _Browse, start: float, timeout: float, progress: Progress | None) -> None:
    deadline = start + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if progress is not None:
            progress(len(browse.records), time.monotonic() - start)
        try:
            await asyncio.wait_for(browse.done.wait(), min(remaining, PROGRESS_EVERY_S))
            return
        except TimeoutError:
            continue
