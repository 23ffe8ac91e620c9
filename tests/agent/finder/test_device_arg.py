"""DEVICE as host:port versus a device id or an mDNS name."""

from __future__ import annotations

import pytest

from agent.finder.client import Endpoint
from agent.finder.device import parse_endpoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5:9443", Endpoint("10.0.0.5", 9443)),
        ("cam.local:443", Endpoint("cam.local", 443)),
        ("[fe80::1]:9443", Endpoint("fe80::1", 9443)),
        # A MAC whose last byte is all digits is an id, not host "aa:bb:…" port 12.
        ("aa:bb:cc:dd:ee:12", None),
        ("aa-bb-cc-dd-ee-12", None),
        ("camagent lobby", None),
        ("10.0.0.5:0", None),
        ("10.0.0.5:70000", None),
        ("10.0.0.5:x", None),
        ("[nothex]:1", None),
        ("cam:1:2", None),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint | None) -> None:
    assert parse_endpoint(text) == expected


def test_endpoint_urls() -> None:
    assert Endpoint("fe80::1", 9443).base_url == "https://[fe80::1]:9443"
    assert str(Endpoint("10.0.0.5", 9443)) == "10.0.0.5:9443"


@pytest.mark.parametrize("text", ["02:bb:00:00:00", "02-bb-00-00-00-0O", "02:aa:bb:cc:dd:O7"])
def test_a_mistyped_mac_is_refused_without_a_scan(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from agent import finder
    from agent.errors import WireError
    from agent.finder.device import locate

    async def no_scan(*args: object, **kwargs: object) -> list[object]:
        raise AssertionError("scanned the LAN for an ID that cannot exist")

    monkeypatch.setattr(finder.device, "scan", no_scan)
    with pytest.raises(WireError, match="MAC"):
        asyncio.run(locate(text, scan_timeout=5))
