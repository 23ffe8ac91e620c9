"""Applying a WiFi card. There is no radio here: nmcli and wpa_cli are recording
stand-ins on PATH that log their argument vectors and answer like the real tools."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import wifi
from agent.qr.payloads import WifiNetwork

NMCLI = r"""
import json, os, sys
log, state = os.environ["STANDIN_LOG"], json.load(open(os.environ["STANDIN_STATE"]))
args = sys.argv[1:]
open(log, "a").write(json.dumps(["nmcli", *args]) + "\n")
if args[:5] == ["-t", "-f", "NAME,TYPE", "connection", "show"]:
    for name, (kind, ssid) in state.items():
        print(name.replace(":", "\\:") + ":" + kind)
elif args[:3] == ["-t", "-g", "802-11-wireless.ssid"] and args[-2] == "id":
    print(state[args[-1]][1])
elif args[:2] == ["connection", "up"] and os.environ.get("STANDIN_FAIL_UP"):
    print("Error: Connection activation failed: Secrets were required", file=sys.stderr)
    sys.exit(4)
"""

WPA_CLI = r"""
import json, os, sys
log, state = os.environ["STANDIN_LOG"], json.load(open(os.environ["STANDIN_STATE"]))
args = sys.argv[1:]
open(log, "a").write(json.dumps(["wpa_cli", *args]) + "\n")
command = args[3] if args[2] == "--" else args[2]
if command == "list_networks":
    print("network id / ssid / bssid / flags")
    for number, ssid in state.items():
        print(f"{number}\t{ssid}\tany\t")
elif command == "add_network":
    print("7")
else:
    print("OK")
"""

# What `standins` gives: install(name, source, state) and the calls recorded so far.
Standins = tuple[Callable[[str, str, dict[str, object]], None], Callable[[], list[list[str]]]]


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Standins:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.jsonl"
    state = tmp_path / "state.json"
    state.write_text("{}")

    def install(name: str, source: str, existing: dict[str, object]) -> None:
        script = bindir / name
        script.write_text(f"#!{sys.executable}\n{source}")
        script.chmod(0o755)
        state.write_text(json.dumps(existing))

    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.setenv("STANDIN_STATE", str(state))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return install, calls


HOSTILE = WifiNetwork('Café ";\\ $(reboot) `x`', 'p;a,s:s"w\\o r d $HOME', "WPA", hidden=True)


def test_networkmanager_gets_argument_vectors_and_replaces_the_old_profile(
    standins: Standins,
) -> None:
    install, calls = standins
    install(
        "nmcli",
        NMCLI,
        {
            "Home": ["802-11-wireless", "Home"],
            "old card": ["802-11-wireless", HOSTILE.ssid],
            "Wired": ["802-3-ethernet", ""],
        },
    )
    applied = wifi.apply(HOSTILE)
    assert applied.tool == "nmcli"
    assert applied.replaced == ("old card",)
    recorded = calls()
    assert ["nmcli", "connection", "delete", "id", "old card"] in recorded
    assert ["nmcli", "connection", "delete", "id", "Home"] not in recorded
    add = next(c for c in recorded if c[1:3] == ["connection", "add"])
    assert add[add.index("ssid") + 1] == HOSTILE.ssid  # byte for byte, no shell quoting
    assert add[add.index("wifi-sec.psk") + 1] == HOSTILE.password
    assert add[add.index("wifi-sec.key-mgmt") + 1] == "wpa-psk"
    assert add[add.index("wifi.hidden") + 1] == "yes"
    assert recorded[-1] == ["nmcli", "connection", "up", "id", f"camagent-{HOSTILE.ssid}"]


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ("SAE", ["wifi-sec.key-mgmt", "sae"]),
        ("WEP", ["wifi-sec.wep-key0", "abcde"]),
        ("nopass", []),
    ],
)
def test_networkmanager_security_kinds(
    standins: Standins, security: str, expected: list[str]
) -> None:
    install, calls = standins
    install("nmcli", NMCLI, {})
    password = "" if security == "nopass" else ("abcde" if security == "WEP" else "longpassword")
    wifi.apply(WifiNetwork("net", password, security))
    add = next(c for c in calls() if c[1:3] == ["connection", "add"])
    if expected:
        assert add[add.index(expected[0]) + 1] == expected[1]
    else:
        assert "wifi-sec.key-mgmt" not in add


def test_a_refused_activation_is_a_clear_error(
    standins: Standins, monkeypatch: pytest.MonkeyPatch
) -> None:
    install, _ = standins
    install("nmcli", NMCLI, {})
    monkeypatch.setenv("STANDIN_FAIL_UP", "1")
    with pytest.raises(wifi.WifiError, match="Secrets were required"):
        wifi.apply(WifiNetwork("net", "longpassword", "WPA"))


def test_wpa_supplicant_fallback(standins: Standins, tmp_path: Path) -> None:
    install, calls = standins
    install("wpa_cli", WPA_CLI, {"0": "Home", "3": HOSTILE.ssid})
    sys_net = tmp_path / "net"
    (sys_net / "eth0").mkdir(parents=True)
    (sys_net / "wlan0" / "wireless").mkdir(parents=True)
    applied = wifi.apply(HOSTILE, wifi.wireless_interface(sys_net))
    assert applied.tool == "wpa_cli"
    assert applied.replaced == ("3",)
    recorded = [c[4:] for c in calls()]
    assert all(c[1:4] == ["-i", "wlan0", "--"] for c in calls())
    assert ["remove_network", "3"] in recorded
    assert ["set_network", "7", "ssid", HOSTILE.ssid.encode().hex()] in recorded
    assert ["set_network", "7", "psk", f'"{HOSTILE.password}"'] in recorded
    assert ["set_network", "7", "scan_ssid", "1"] in recorded
    assert recorded[-2:] == [["enable_network", "7"], ["save_config"]]


def test_no_tool_and_no_interface_say_so(standins: Standins, tmp_path: Path) -> None:
    with pytest.raises(wifi.WifiError, match="neither NetworkManager"):
        wifi.apply(WifiNetwork("net", "longpassword", "WPA"))
    with pytest.raises(wifi.WifiError, match="no wireless interface"):
        wifi.wireless_interface(tmp_path)


@pytest.mark.parametrize("value", ["--ask", "-a", "-", "--", "-h", "--help"])
def test_values_that_look_like_options_stay_values(
    standins: Standins, tmp_path: Path, value: str
) -> None:
    install, calls = standins
    install("nmcli", NMCLI, {value: ["802-11-wireless", value]})
    password = value + "-padding-to-8"
    network = WifiNetwork(value, password, "WPA")
    wifi.apply(network)
    recorded = calls()
    add = next(c for c in recorded if c[1:3] == ["connection", "add"])
    assert add[add.index("ssid") + 1] == value
    assert add[add.index("wifi-sec.psk") + 1] == password
    assert ["nmcli", "connection", "delete", "id", value] in recorded
    for call in recorded:  # no value ever stands where an option could be read
        for i, arg in enumerate(call):
            if arg in (value, password):
                assert call[i - 1] in ("ssid", "wifi-sec.psk", "id"), call
    install("wpa_cli", WPA_CLI, {"0": value})
    (tmp_path / "net" / "wlan0" / "wireless").mkdir(parents=True, exist_ok=True)
    wifi.apply_wpa_supplicant(network, "wlan0")
    for call in calls():
        if call[0] == "wpa_cli":
            assert call[1:4] == ["-i", "wlan0", "--"]
            assert value not in call[4:]
            assert password not in call[4:]


@pytest.mark.parametrize(
    "network",
    [WifiNetwork("net\x1b[2J", "longpassword", "WPA"), WifiNetwork("net", "long\npassword", "WPA")],
)
def test_control_characters_are_refused_before_any_tool_runs(
    standins: Standins, network: WifiNetwork
) -> None:
    install, calls = standins
    install("nmcli", NMCLI, {})
    with pytest.raises(wifi.WifiError, match="control characters"):
        wifi.apply(network)
    assert calls() == []
