"""The namespace LAN itself: multicast crosses the bridge both ways, to the finder and to
a stock avahi-daemon (so a failure in the finder tests is not the harness)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.lan.announcer import Announcement
from tests.lan.avahi import Avahi, missing_tools
from tests.lan.netns import Lan
from tests.lan.site import run_finder

pytestmark = pytest.mark.timeout(120)


def test_announcement_reaches_finder_and_avahi_in_other_namespaces(
    lan: Lan, tmp_path: Path
) -> None:
    announcer = lan.node("announcer")
    finder_ns = lan.node("finder")
    avahi_ns = lan.node("avahi")
    assert not missing_tools(), "install avahi-daemon avahi-utils dbus (Debian)"
    avahi = Avahi(avahi_ns, tmp_path / "avahi")
    avahi.start()
    txt = {"id": "harness-1", "kind": "camera", "state": "provisioning", "fp": "ab" * 32}
    try:
        with Announcement(announcer, "harness", announcer.address, 9443, {**txt, "pv": "1"}):
            result = run_finder(finder_ns, tmp_path, "scan", "--json", "--timeout", "3")
            assert result.returncode == 0, result.stderr
            found = json.loads(result.stdout)
            assert [d["id"] for d in found] == ["harness-1"]
            assert found[0]["address"] == announcer.address
            assert found[0]["fp"] == "ab" * 32
            try:
                seen = eventually(avahi.browse, timeout=20, interval=0.2, what="avahi-browse")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{avahi.log()}") from None
        line = seen[0]
        assert line[3] == "harness"
        assert line[7] == announcer.address
        assert line[8] == "9443"
        assert '"id=harness-1"' in line[9]
    finally:
        avahi.stop()
