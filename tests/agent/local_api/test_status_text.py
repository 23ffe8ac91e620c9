"""`camagent status` lines for the local API (the running case is in the e2e tests)."""

from __future__ import annotations

from agent.cli import _format_local_api


def test_lines() -> None:
    assert _format_local_api(None) == []
    assert _format_local_api({"enabled": False}) == ["  local API     off"]
    assert _format_local_api({"enabled": True, "port": None}) == ["  local API     starting"]
    failed = {"enabled": True, "port": None, "error": "local API not started: port in use"}
    assert _format_local_api(failed) == ["  local API     local API not started: port in use"]
    running = {"enabled": True, "listen": "0.0.0.0", "port": 9443, "fp": "ab" * 32, "mdns": "cam"}
    assert _format_local_api(running) == [
        "  local API     HTTPS on 0.0.0.0 port 9443, on mDNS as 'cam'",
        "  fingerprint   " + "ab" * 32,
    ]
