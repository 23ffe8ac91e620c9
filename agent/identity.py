"""Who this device is: its ID (docs/design.md §2) and the password on its label."""

from __future__ import annotations

from pathlib import Path

from agent.config import Config
from agent.errors import ConfigError, WireError
from agent.provisioning.wire import normalize_device_id

SYS_NET = Path("/sys/class/net")
MAX_PASSWORD_LEN = 256


def device_id(config: Config, sys_net: Path = SYS_NET) -> str:
    """The configured ID, else the MAC of the first non-loopback interface (by name)."""
    if config.device.id:
        return normalize_device_id(config.device.id)
    for iface in sorted(p.name for p in sys_net.iterdir()) if sys_net.is_dir() else []:
        if iface == "lo":
            continue
        try:
            mac = (sys_net / iface / "address").read_text().strip()
        except OSError:
            continue
        try:
            normalized = normalize_device_id(mac)
        except WireError:
            continue
        if normalized != "00:00:00:00:00:00" and len(normalized) == 17:
            return normalized
    raise ConfigError(
        f"{config.source}: no network interface with a MAC address was found; "
        "set device.id to the camera's ID"
    )


def read_password(config: Config) -> str:
    path = Path(config.device.password_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"password file {path} does not exist: write the device password (from its "
            f"label) into it, or set device.password_file in {config.source}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the password file {path}: {exc}") from None
    password = text.strip("\r\n")
    if not password:
        raise ConfigError(f"password file {path} is empty: write the device password into it")
    if len(password) > MAX_PASSWORD_LEN:
        raise ConfigError(f"password file {path} holds more than {MAX_PASSWORD_LEN} characters")
    return password
