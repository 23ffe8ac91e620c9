"""From the DEVICE argument to a client whose every connection is pinned to the right key.

DEVICE is a device id (as announced in TXT `id`), an mDNS instance name, or `host:port`.
The fingerprint expected is the one announced in mDNS; for `host:port` (no mDNS) it is the
one presented now, checked against the one remembered. Either way the remembered one wins:
a change is refused unless the user accepts it (`--accept-new-fp`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent import hints
from agent.finder.client import DeviceClient, Endpoint, presented_fingerprint
from agent.finder.errors import FinderError, FingerprintError
from agent.finder.known import KnownDevices, Trust
from agent.finder.records import DeviceRecord, is_fingerprint
from agent.finder.scan import scan

MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$", re.IGNORECASE)
HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", re.IGNORECASE)
RESOLVE_TIMEOUT_S = 5.0


def parse_endpoint(text: str) -> Endpoint | None:
    """`host:port` / `[v6]:port` → Endpoint; anything else (an id, a name) → None."""
    text = text.strip()
    if MAC_RE.match(text):
        return None  # a MAC id such as aa:bb:cc:dd:ee:12 is not host "aa:bb:…" port 12
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            return None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not HOST_RE.match(host):
            return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return Endpoint(host, int(port))


@dataclass(frozen=True)
class Located:
    endpoint: Endpoint
    fp: str
    fp_source: str  # how the device told us: finishes "the device … <fp>"
    record: DeviceRecord | None  # None for host:port


# Anything that looks like a MAC: three or more groups of 1-4 hex digits (or near misses
# such as the letter O) joined by ":" or "-"; wire.normalize_device_id has the rule.
_MAC_LIKE = re.compile(r"^[0-9A-Za-z]{1,4}(?:[:-][0-9A-Za-z]{1,4}){2,}$")


async def locate(device: str, scan_timeout: float = RESOLVE_TIMEOUT_S) -> Located:
    endpoint = parse_endpoint(device)
    if endpoint is not None:
        fp = await presented_fingerprint(endpoint)
        return Located(endpoint, fp, "presented when first contacted a moment ago had", None)
    if _MAC_LIKE.match(device.strip()):
        # A mistyped MAC (five octets, `0O`) is refused at once, as the console, `label make`
        # and the config do, instead of a LAN scan for a device that cannot exist.
        from agent.provisioning.wire import normalize_device_id

        normalize_device_id(device)
    records = await scan(scan_timeout, stop_when=lambda r: r.matches(device))
    matches = [r for r in records if r.matches(device)]
    if not matches:
        raise FinderError(not_found_message(device, records, scan_timeout))
    record = matches[0]
    if not record.address:
        raise FinderError(f"device {device} announces no IPv4 address; give it as host:port")
    if not is_fingerprint(record.fp):
        raise FinderError(
            f"device {device} announces no valid certificate fingerprint (TXT fp: 64 hex "
            "digits); it cannot be checked, so nothing is sent to it"
        )
    return Located(Endpoint(record.address, record.port), record.fp, "announces on the LAN", record)


def not_found_message(device: str, records: list[DeviceRecord], timeout: float) -> str:
    seen = ", ".join(sorted(r.id or r.instance for r in records)) or "none"
    return (
        f"no device {device!r} answered on the LAN within {timeout:g} s (devices seen: {seen}); "
        f"check the id with `{hints.show('finder scan')}`, or give the device as host:port"
    )


@dataclass
class Opened:
    client: DeviceClient
    info: dict[str, Any]
    trust: Trust


# Asked about a device met for the first time at host:port (device id, fingerprint,
# endpoint); raises FinderError unless the person trusts it.
ConfirmNew = Callable[[str, str, Endpoint], None]


async def open_device(
    device: str,
    known: KnownDevices,
    *,
    accept_new_fp: bool,
    scan_timeout: float = RESOLVE_TIMEOUT_S,
    confirm_new: ConfirmNew | None = None,
) -> Opened:
    """Locate DEVICE, check its key against mDNS and memory, read /v1/info; the caller
    must close `opened.client` (it is entered already).

    A device reached at host:port that this computer has never met vouches for its key
    only by presenting it: as ssh does, `confirm_new` shows the fingerprint and asks
    before anything is remembered or sent (`--accept-new-fp` skips the question). Without
    `confirm_new` such a device is refused. A device found in mDNS announced its key
    there, and a first contact is only reported.
    """
    located = await locate(device, scan_timeout)
    if located.record is not None and located.record.id:
        # Refuse before connecting at all when the announced key is not the remembered one.
        known.verify(located.record.id, located.fp, accept_new=accept_new_fp)
    client = DeviceClient(located.endpoint, located.fp, located.fp_source)
    await client.__aenter__()
    try:
        info = await client.info()
        device_id = _check_info(info, located)
        trust = known.verify(device_id, located.fp, accept_new=accept_new_fp)
        if trust is Trust.NEW and located.record is None and not accept_new_fp:
            if confirm_new is None:
                raise FinderError(first_contact_refusal(device_id, located.fp, located.endpoint))
            confirm_new(device_id, located.fp, located.endpoint)
        known.remember(device_id, located.fp, str(located.endpoint))
    except BaseException:
        await client.__aexit__(None, None, None)
        raise
    return Opened(client, info, trust)


def first_contact_refusal(device_id: str, fp: str, endpoint: Endpoint) -> str:
    return (
        f"{device_id} at {endpoint} is new to this computer; its certificate fingerprint "
        f"is {fp}. There is no terminal to ask whether to trust it, so nothing was sent: "
        f"compare it with the one the device shows (`{hints.show('device status')}` on it), "
        "then run the command again with --accept-new-fp"
    )


def _check_info(info: dict[str, Any], located: Located) -> str:
    device_id = info.get("id")
    if not isinstance(device_id, str) or not device_id:
        raise FinderError(f"the device at {located.endpoint} sent /v1/info without an id")
    claimed = str(info.get("fp", "")).lower()
    if claimed and claimed != located.fp:
        raise FingerprintError(
            f"the device at {located.endpoint} says its fingerprint is {claimed}, but it "
            f"presented {located.fp}: something between us re-encrypts the connection; "
            "nothing was sent"
        )
    record = located.record
    if record is not None and record.id and record.id.lower() != device_id.lower():
        raise FinderError(
            f"the device at {located.endpoint} is {device_id}, not {record.id} as announced"
        )
    return device_id
