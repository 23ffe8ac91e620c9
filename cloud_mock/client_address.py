"""Who counts as one client of the mock's unauthenticated limits.

An IPv4 address is one client; so is an IPv6 address's /64, since one host often has a
whole /64 to itself (counting its addresses one by one would hand an attacker 2**64
clients). An IPv4-mapped IPv6 address is its IPv4 address.
"""

from __future__ import annotations

import ipaddress


def client_key(remote: str | None) -> str:
    """The client `remote` (a peer address as aiohttp gives it) counts as."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.partition("%")[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
