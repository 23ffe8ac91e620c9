"""The mDNS/DNS-SD announcement (docs/design.md §5): `_camagent._tcp.local.` with python-zeroconf.

zeroconf is imported only here, and this module only when `[local_api] mdns = true`.
TXT carries `id, kind, state, ver, fp, pv=1` and follows every state change; stopping
sends the goodbye packets so that finders drop the device at once instead of after the
records' TTL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroconf import ServiceInfo
    from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_camagent._tcp.local."
PROTOCOL_VERSION = "1"
MAX_LABEL_BYTES = 63
WILDCARDS = ("", "0.0.0.0", "::")  # noqa: S104


def instance_name(name: str, device_id: str) -> str:
    """A DNS-SD instance label: the device's name, else "camagent <id>"; no dots or
    control characters, at most 63 bytes (zeroconf appends " (2)" on a clash)."""
    label = re.sub(r"[\x00-\x1f\x7f.]+", " ", name or f"camagent {device_id}")
    label = re.sub(r"\s+", " ", label).strip() or f"camagent {device_id}"
    encoded = label.encode("utf-8")[:MAX_LABEL_BYTES]
    return encoded.decode("utf-8", "ignore").rstrip()


def host_name(device_id: str) -> str:
    return "camagent-" + re.sub(r"[^a-z0-9]+", "-", device_id.lower()).strip("-") + ".local."


def txt_record(info: dict[str, Any], fp: str) -> dict[str, str]:
    return {
        "id": str(info["id"]),
        "kind": str(info["kind"]),
        "state": str(info["state"]),
        "ver": str(info["ver"]),
        "fp": fp,
        "pv": PROTOCOL_VERSION,
    }


def ipv4_addresses(listen: str = "0.0.0.0") -> list[str]:  # noqa: S104
    """Where the API can be reached: the one address it listens on, or for a wildcard
    listen the host's non-loopback IPv4 addresses (loopback only when there is nothing
    else)."""
    if listen not in WILDCARDS:
        return [listen]
    import ifaddr  # zeroconf's own dependency

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            address = ipaddress.IPv4Address(ip.ip)
            if not (address.is_loopback or address.is_link_local) and ip.ip not in found:
                found.append(ip.ip)
    return found or ["127.0.0.1"]


class Announcer:
    """Registers the service once, updates its TXT, says goodbye on stop."""

    def __init__(
        self,
        device_id: str,
        name: str,
        port: int,
        fp: str,
        listen: str = "0.0.0.0",  # noqa: S104
    ) -> None:
        self.device_id = device_id
        self.name = name
        self.port = port
        self.fp = fp
        self.listen = listen
        self._zc: AsyncZeroconf | None = None
        self._info: ServiceInfo | None = None
        self._lock = asyncio.Lock()  # updates and the goodbye never interleave

    @property
    def registered_name(self) -> str | None:
        return self._info.name if self._info is not None else None

    def _service(self, info: dict[str, Any], name: str | None = None) -> ServiceInfo:
        from zeroconf import ServiceInfo

        instance = instance_name(self.name, self.device_id)
        return ServiceInfo(
            SERVICE_TYPE,
            name or f"{instance}.{SERVICE_TYPE}",
            port=self.port,
            properties=txt_record(info, self.fp),
            server=host_name(self.device_id),
            # Read again at every update: DHCP may have moved the device meanwhile.
            parsed_addresses=ipv4_addresses(self.listen),
        )

    async def start(self, info: dict[str, Any]) -> None:
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncZeroconf

        async with self._lock:
            self._zc = AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
            service = self._service(info)
            # Probing takes ~0.75 s; awaiting the returned task waits for the announcements.
            await (await self._zc.async_register_service(service, allow_name_change=True))
            self._info = service
            log.info("announced on mDNS as %r, port %d", service.name, self.port)

    async def update(self, info: dict[str, Any]) -> None:
        async with self._lock:
            if self._zc is None or self._info is None:
                return
            service = self._service(info, self._info.name)
            if service.properties == self._info.properties:
                return
            await (await self._zc.async_update_service(service))
            self._info = service

    async def stop(self) -> None:
        async with self._lock:
            zc, self._zc = self._zc, None
            if zc is None:
                return
            try:
                if self._info is not None:
                    await (await zc.async_unregister_service(self._info))
            except (OSError, RuntimeError) as exc:  # the network went away first
                log.warning("mDNS goodbye not sent: %s", exc)
            finally:
                await zc.async_close()
