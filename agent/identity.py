"""Who this device is: its ID (docs/design.md §2) and the password on its label."""

from __future__ import annotations

import enum
from pathlib import Path

from agent.config import Config
from agent.errors import CamagentError, ConfigError, WireError
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


class PasswordProblem(enum.Enum):
    MISSING = "does not exist"
    UNREADABLE = "cannot be read"
    EMPTY = "is empty"
    TOO_LONG = f"holds more than {MAX_PASSWORD_LEN} characters"


class PasswordFileError(CamagentError):
    """A password file that gives no password. Each reader words it for its own reader
    (the daemon's config, `label make`'s option), so it carries the parts, not a sentence."""

    def __init__(
        self, path: Path, problem: PasswordProblem, cause: Exception | None = None
    ) -> None:
        super().__init__(f"{path} {problem.value}")
        self.path = path
        self.problem = problem
        self.cause = cause  # the OSError or UnicodeDecodeError of an UNREADABLE file


def password_in(path: Path) -> str:
    """The password in `path`, the one way camagent reads a password file: UTF-8, line
    ends around it dropped (inner and trailing spaces are part of it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PasswordFileError(path, PasswordProblem.MISSING) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PasswordFileError(path, PasswordProblem.UNREADABLE, exc) from None
    password = text.strip("\r\n")
    if not password:
        raise PasswordFileError(path, PasswordProblem.EMPTY)
    if len(password) > MAX_PASSWORD_LEN:
        raise PasswordFileError(path, PasswordProblem.TOO_LONG)
    return password


def read_password(config: Config) -> str:
    """The device's password (`device.password_file`); ConfigError says how to fix it."""
    try:
        return password_in(Path(config.device.password_file))
    except PasswordFileError as exc:
        raise ConfigError(_config_wording(exc, config)) from None


def _config_wording(exc: PasswordFileError, config: Config) -> str:
    path = exc.path
    match exc.problem:
        case PasswordProblem.MISSING:
            return (
                f"password file {path} does not exist: write the device password (from its "
                f"label) into it, or set device.password_file in {config.source}"
            )
        case PasswordProblem.UNREADABLE:
            return f"cannot read the password file {path}: {exc.cause}"
        case PasswordProblem.EMPTY:
            return f"password file {path} is empty: write the device password into it"
        case PasswordProblem.TOO_LONG:
            return f"password file {path} holds more than {MAX_PASSWORD_LEN} characters"
