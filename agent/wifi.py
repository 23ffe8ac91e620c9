"""Joining a WiFi network read from a QR card: NetworkManager, else wpa_supplicant.

Every command is an argument vector (never a shell): SSIDs and passwords may hold any
printable character, and one that starts with `-` is still a value, never an option: for
nmcli every value follows its property name (`ssid VALUE`) and every profile is named
with the `id` keyword (`connection delete id NAME`); for wpa_cli the options end with
`--` and values are hex or quoted. An older profile for the same SSID is replaced, so
re-scanning a corrected card fixes a wrong password instead of piling up profiles.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import CamagentError
from agent.qr.payloads import WifiNetwork

log = logging.getLogger(__name__)

PROFILE_PREFIX = "camagent-"
COMMAND_TIMEOUT_S = 45.0
SYS_NET = Path("/sys/class/net")


class WifiError(CamagentError):
    """The network could not be configured; the message says what the tool answered."""


@dataclass(frozen=True)
class Applied:
    tool: str  # "nmcli" | "wpa_cli"
    profile: str
    replaced: tuple[str, ...]


def _run(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WifiError(f"{argv[0]} failed: {exc}") from None
    if result.returncode != 0:
        what = (result.stderr or result.stdout).strip().splitlines()
        raise WifiError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed: "
            f"{what[-1] if what else f'exit {result.returncode}'}"
        )
    return result.stdout


def apply(network: WifiNetwork, interface: str | None = None) -> Applied:
    from agent.qr.payloads import has_control_characters

    if has_control_characters(network.ssid) or has_control_characters(network.password):
        raise WifiError("a network name or password with control characters is refused")
    if shutil.which("nmcli"):
        return apply_networkmanager(network)
    if shutil.which("wpa_cli"):
        return apply_wpa_supplicant(network, interface or wireless_interface())
    raise WifiError("neither NetworkManager (nmcli) nor wpa_supplicant (wpa_cli) is installed")


# -- NetworkManager ----------------------------------------------------------------------


def _nm_security(network: WifiNetwork) -> list[str]:
    match network.security:
        case "WPA":
            return ["wifi-sec.key-mgmt", "wpa-psk", "wifi-sec.psk", network.password]
        case "SAE":
            return ["wifi-sec.key-mgmt", "sae", "wifi-sec.psk", network.password]
        case "WEP":
            # 5/13 characters are a passphrase-less ASCII key, 10/26 hex digits a hex key:
            # both are "key" type 1 for NetworkManager.
            return [
                "wifi-sec.key-mgmt",
                "none",
                "wifi-sec.wep-key-type",
                "1",
                "wifi-sec.wep-key0",
                network.password,
            ]
    return []


def apply_networkmanager(network: WifiNetwork) -> Applied:
    profile = PROFILE_PREFIX + network.ssid
    replaced = []
    listing = _run(["nmcli", "-t", "-f", "NAME,TYPE", "connection", "show"])
    for line in listing.splitlines():
        name, _, kind = line.rpartition(":")
        name = name.replace("\\:", ":")
        if kind != "802-11-wireless":
            continue
        ssid = _run(["nmcli", "-t", "-g", "802-11-wireless.ssid", "connection", "show", "id", name])
        if name == profile or ssid.strip().replace("\\:", ":") == network.ssid:
            _run(["nmcli", "connection", "delete", "id", name])
            replaced.append(name)
    _run(
        [
            "nmcli",
            "connection",
            "add",
            "type",
            "wifi",
            "con-name",
            profile,
            "ssid",
            network.ssid,
            "wifi.hidden",
            "yes" if network.hidden else "no",
            "connection.autoconnect",
            "yes",
            *_nm_security(network),
        ]
    )
    _run(["nmcli", "connection", "up", "id", profile])
    log.info("joined WiFi %r through NetworkManager (profile %s)", network.ssid, profile)
    return Applied("nmcli", profile, tuple(replaced))


# -- wpa_supplicant ----------------------------------------------------------------------


def wireless_interface(sys_net: Path = SYS_NET) -> str:
    for iface in sorted(p.name for p in sys_net.iterdir()) if sys_net.is_dir() else []:
        if (sys_net / iface / "wireless").exists():
            return iface
    raise WifiError("no wireless interface found (nothing under /sys/class/net/*/wireless)")


def _quoted(value: str) -> str:
    # wpa_supplicant reads a "quoted" value up to the last quote: any character is safe.
    return f'"{value}"'


def _wpa_fields(network: WifiNetwork) -> list[tuple[str, str]]:
    fields = [("ssid", network.ssid.encode().hex())]  # hex: no quoting problems at all
    if network.hidden:
        fields.append(("scan_ssid", "1"))
    match network.security:
        case "WPA":
            fields += [("key_mgmt", "WPA-PSK"), ("psk", _quoted(network.password))]
        case "SAE":
            fields += [
                ("key_mgmt", "SAE"),
                ("sae_password", _quoted(network.password)),
                ("ieee80211w", "2"),
            ]
        case "WEP":
            fields += [
                ("key_mgmt", "NONE"),
                ("wep_key0", _quoted(network.password)),
                ("wep_tx_keyidx", "0"),
            ]
        case _:
            fields.append(("key_mgmt", "NONE"))
    return fields


def apply_wpa_supplicant(network: WifiNetwork, interface: str) -> Applied:
    def cli(*args: str) -> str:
        out = _run(["wpa_cli", "-i", interface, "--", *args]).strip()
        if out.endswith("FAIL"):
            raise WifiError(f"wpa_cli {args[0]} failed")
        return out

    replaced = []
    for line in cli("list_networks").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] == network.ssid:
            cli("remove_network", parts[0])
            replaced.append(parts[0])
    network_id = cli("add_network").splitlines()[-1].strip()
    if not network_id.isdigit():
        raise WifiError(f"wpa_cli add_network answered {network_id!r}")
    for name, value in _wpa_fields(network):
        cli("set_network", network_id, name, value)
    cli("enable_network", network_id)
    cli("save_config")
    log.info("joined WiFi %r through wpa_supplicant on %s", network.ssid, interface)
    return Applied("wpa_cli", network_id, tuple(replaced))
