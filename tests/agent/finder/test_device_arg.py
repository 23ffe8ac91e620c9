"""DEVICE as host:port versus a device id or an mDNS name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.finder.client import Endpoint
from agent.finder.device import open_device, parse_endpoint
from agent.finder.errors import FinderError
from agent.finder.known import KnownDevices, Trust
from tests.agent.finder.conftest import InfoServer


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


# -- first contact at host:port: asked, as ssh asks, before anything is remembered --------


async def _open(server: InfoServer, known: KnownDevices, **kwargs: Any) -> Trust:
    opened = await open_device(str(server.endpoint), known, **kwargs)
    await opened.client.__aexit__(None, None, None)
    return opened.trust


async def test_a_new_device_at_host_port_is_refused_without_a_question(
    info_server: InfoServer, tmp_path: Path
) -> None:
    known = KnownDevices.load(tmp_path / "known.json")
    with pytest.raises(FinderError) as refused:
        await _open(info_server, known, accept_new_fp=False)
    assert info_server.cert.fp in str(refused.value)
    assert "--accept-new-fp" in str(refused.value)
    assert not known.path.exists()
    assert info_server.seen == ["GET /v1/info"]  # the device's id only: nothing sent


async def test_a_new_device_at_host_port_is_remembered_only_when_the_answer_is_yes(
    info_server: InfoServer, tmp_path: Path
) -> None:
    known = KnownDevices.load(tmp_path / "known.json")
    asked: list[tuple[str, str, Endpoint]] = []

    def no(device_id: str, fp: str, endpoint: Endpoint) -> None:
        asked.append((device_id, fp, endpoint))
        raise FinderError("not trusted")

    with pytest.raises(FinderError, match="not trusted"):
        await _open(info_server, known, accept_new_fp=False, confirm_new=no)
    assert asked == [("dev-1", info_server.cert.fp, info_server.endpoint)]
    assert not known.path.exists()

    def yes(device_id: str, fp: str, endpoint: Endpoint) -> None:
        pass

    trust = await _open(info_server, known, accept_new_fp=False, confirm_new=yes)
    assert trust is Trust.NEW
    assert KnownDevices.load(known.path).devices["dev-1"].fp == info_server.cert.fp

    def never(*args: object) -> None:
        raise AssertionError("asked about a device it knows")

    assert await _open(info_server, known, accept_new_fp=False, confirm_new=never) is Trust.KNOWN


async def test_accept_new_fp_trusts_a_new_device_without_asking(
    info_server: InfoServer, tmp_path: Path
) -> None:
    known = KnownDevices.load(tmp_path / "known.json")

    def never(*args: object) -> None:
        raise AssertionError("asked although --accept-new-fp was given")

    assert await _open(info_server, known, accept_new_fp=True, confirm_new=never) is Trust.NEW
    assert "dev-1" in KnownDevices.load(known.path).devices
