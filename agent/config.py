"""`agent.toml` (docs/design.md §9): dataclasses with defaults, strict validation, clear errors.

Every error names the file and the key, because the person reading it is standing in
front of a camera with a text editor.
"""

from __future__ import annotations

import math
import os
import tomllib
import unicodedata
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/camagent/agent.toml")
CONFIG_ENV = "CAMAGENT_CONFIG"


@dataclass(frozen=True)
class DeviceConfig:
    id: str = ""  # empty: the MAC of the first non-loopback interface
    kind: str = "camera"
    password_file: str = "/etc/camagent/password"
    name: str = ""


@dataclass(frozen=True)
class CloudConfig:
    url: str = "https://cloud.example.com"
    ca_file: str = ""
    trust_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProvisioningConfig:
    fast_interval: float = 60.0
    fast_attempts: int = 5
    slow_interval: float = 3600.0
    slow_jitter: float = 0.10
    long_poll: float = 50.0  # clamped so that a poll always ends before the next is due


@dataclass(frozen=True)
class PathsConfig:
    state_dir: str = "/var/lib/camagent"
    run_dir: str = "/run/camagent"


@dataclass(frozen=True)
class LocalApiConfig:
    enabled: bool = True
    listen: str = "0.0.0.0"  # noqa: S104 - the LAN API is meant to be reachable on the LAN
    port: int = 9443  # 0: any free port (tests); `camagent status` shows the real one
    mdns: bool = True
    # Wrong passwords in a row before the first lock, and that lock's length (doubled for
    # every further wrong one, at most an hour). Tests shrink the delay.
    lockout_after: int = 5
    lockout_base_s: float = 30.0


@dataclass(frozen=True)
class NvrCamera:
    """One camera of a virtual NVR: `[[nvr.cameras]]`."""

    name: str = ""  # names its tunnel targets `<name>/main`, `<name>/sub` (§12.1)
    url: str = ""  # rtsp:// or rtsps://
    onvif_url: str = ""
    sub_url: str = ""  # optional substream, preferred for live view


@dataclass(frozen=True)
class NvrConfig:
    archive_path: str = "/var/lib/camagent/archive"
    cameras: tuple[NvrCamera, ...] = ()


@dataclass(frozen=True)
class VideoConfig:
    """The camera's own streams (docs/design.md §12.1): what a tunnel may reach."""

    main: str = ""  # rtsp://user:pass@127.0.0.1:554/stream1
    sub: str = ""  # optional substream, preferred for live view
    snapshot: str = ""  # optional http(s):// JPEG URL
    max_tunnels: int = 4
    idle_timeout: float = 60.0


@dataclass(frozen=True)
class QrConfig:
    source: str = ""  # the camera's own video: /dev/videoN, rtsp://…, or a file
    scan_when_unprovisioned: bool = True  # scan while there is no token (no-op without a source)
    fps: float = 2.0


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    provisioning: ProvisioningConfig = field(default_factory=ProvisioningConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    local_api: LocalApiConfig = field(default_factory=LocalApiConfig)
    nvr: NvrConfig = field(default_factory=NvrConfig)
    qr: QrConfig = field(default_factory=QrConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    source: str = "<defaults>"

    @property
    def state_dir(self) -> Path:
        return Path(self.paths.state_dir)

    @property
    def run_dir(self) -> Path:
        return Path(self.paths.run_dir)

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"

    def video_targets(self) -> tuple[str, ...]:
        """The names a video tunnel may open (docs/design.md §12.1), in config order."""
        if self.device.kind == "nvr":
            return tuple(
                f"{camera.name}/{stream}"
                for camera in self.nvr.cameras
                for stream, url in (("main", camera.url), ("sub", camera.sub_url))
                if url
            )
        streams = {"main": self.video.main, "sub": self.video.sub, "snapshot": self.video.snapshot}
        return tuple(name for name, url in streams.items() if url)


_SECTIONS: dict[str, type] = {
    "device": DeviceConfig,
    "cloud": CloudConfig,
    "provisioning": ProvisioningConfig,
    "paths": PathsConfig,
    "local_api": LocalApiConfig,
    "nvr": NvrConfig,
    "qr": QrConfig,
    "video": VideoConfig,
}


def resolve_path(cli_path: str | None) -> Path:
    """--config wins, then $CAMAGENT_CONFIG, then /etc/camagent/agent.toml."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such configuration file (give one with --config or ${CONFIG_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    return parse(text, str(path))


def parse(text: str, source: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    for name, value in data.items():
        section_type = _SECTIONS.get(name)
        if section_type is None:
            raise ConfigError(f"{source}: unknown section [{name}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {name} must be a table ([{name}])")
        sections[name] = _build_section(section_type, name, value, source)
    config = Config(**sections, source=source)
    _validate(config)
    return config


def _build_section(section_type: type, section: str, values: dict[str, Any], source: str) -> Any:
    defaults = section_type()
    known = {f.name: f for f in fields(section_type)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key {section}.{key} (known in [{section}]: {', '.join(known)})"
            )
        if (section, key) == ("nvr", "cameras"):
            kwargs[key] = _nvr_cameras(value, source)
            continue
        kwargs[key] = _coerce(getattr(defaults, key), value, f"{section}.{key}", source)
    return replace(defaults, **kwargs)


def _nvr_cameras(value: Any, source: str) -> tuple[NvrCamera, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{source}: nvr.cameras must be tables ([[nvr.cameras]])")
    cameras = []
    for index, table in enumerate(value):
        where = f"nvr.cameras[{index}]"
        camera = _build_section(NvrCamera, where, table, source)
        problem = camera_name_problem(camera.name)
        if problem:
            raise ConfigError(f"{source}: {where}.name {problem}")
        for key, schemes, required in (
            ("url", RTSP_SCHEMES, True),
            ("sub_url", RTSP_SCHEMES, False),
            ("onvif_url", HTTP_SCHEMES, False),
        ):
            problem = url_problem(getattr(camera, key), schemes, required=required)
            if problem:
                raise ConfigError(f"{source}: {where}.{key} {problem}")
        cameras.append(camera)
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: nvr.cameras names must be unique")
    return tuple(cameras)


RTSP_SCHEMES = ("rtsp", "rtsps")
HTTP_SCHEMES = ("http", "https")
MAX_CAMERA_NAME = 64


def camera_name_problem(name: str) -> str:
    """Why `name` cannot name an NVR camera (it becomes part of a tunnel target), or ""."""
    if not name:
        return "must be set (it names the camera)"
    if len(name) > MAX_CAMERA_NAME:
        return f"must be at most {MAX_CAMERA_NAME} characters"
    if "/" in name or any(unicodedata.category(c) == "Cc" for c in name):
        return f"must not hold '/' or control characters, not {_shown(name)}"
    return ""


def url_problem(url: str, schemes: tuple[str, ...], *, required: bool = False) -> str:
    """Why `url` is not a `scheme://host[:port]/...` URL of one of `schemes`, or ""."""
    from urllib.parse import urlsplit

    wanted = " or ".join(f"{s}://" for s in schemes)
    if not url:
        return f"must be set (an {wanted} URL)" if required else ""
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # raises ValueError for a port out of range or not a number
            raise ValueError("port 0")  # nothing to connect to
    except ValueError:
        return f"must be an {wanted} URL with a valid port, not {_shown(_redacted(url))}"
    if parts.scheme.lower() not in schemes or not parts.hostname:
        return f"must be an {wanted} URL with a host, not {_shown(_redacted(url))}"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "must not hold spaces or control characters (percent-encode them)"
    return ""


def _redacted(url: str) -> str:
    """`url` without the password, for messages."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, userinfo = head.partition("://")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in userinfo else url


def _coerce(default: Any, value: Any, key: str, source: str) -> Any:
    """Check `value` against the type of the default; ints are accepted where floats are."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        expected = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        expected = "a string"
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "a list of strings"
        value = tuple(value) if ok else value
    else:  # pragma: no cover - every section field has one of the types above
        raise AssertionError(key)
    if ok and isinstance(default, float):
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            ok = False
        if not (ok and math.isfinite(value)):
            ok, expected = False, "a finite number"
    if not ok:
        raise ConfigError(f"{source}: {key} must be {expected}, not {_shown(value)}")
    return value


def _shown(value: Any, limit: int = 60) -> str:
    """`value` as written in a message: cut short, and safe for any integer's size."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python will print
        return "a number too large to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_https_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname)


def _validate(config: Config) -> None:
    src = config.source

    def fail(key: str, problem: str) -> None:
        raise ConfigError(f"{src}: {key} {problem}")

    if config.device.kind not in ("camera", "nvr"):
        fail("device.kind", f'must be "camera" or "nvr", not {config.device.kind!r}')
    if config.device.id:
        from agent.errors import WireError
        from agent.provisioning.wire import normalize_device_id

        try:
            normalize_device_id(config.device.id)
        except WireError as exc:
            fail("device.id", f"is invalid: {exc}")
    if not _is_https_url(config.cloud.url):
        fail("cloud.url", f"must be an https:// URL with a host, not {config.cloud.url!r}")
    p = config.provisioning
    for key in ("fast_interval", "slow_interval"):
        if getattr(p, key) <= 0:
            fail(f"provisioning.{key}", "must be greater than 0 seconds")
    if p.fast_attempts < 0:
        fail("provisioning.fast_attempts", "must be 0 or more")
    if not 0 <= p.slow_jitter <= 0.5:
        fail("provisioning.slow_jitter", "must be between 0 and 0.5")
    if p.long_poll < 0:
        fail("provisioning.long_poll", "must be 0 (plain polls) or more seconds")
    if not 0 <= config.local_api.port < 65536:
        fail("local_api.port", "must be a TCP port from 1 to 65535 (or 0: any free port)")
    if config.local_api.lockout_after < 1:
        fail("local_api.lockout_after", "must be 1 or more wrong passwords")
    if config.local_api.lockout_base_s <= 0:
        fail("local_api.lockout_base_s", "must be greater than 0 seconds")
    if not 0 < config.qr.fps <= 30:
        fail("qr.fps", "must be more than 0 and at most 30 frames a second")
    for key in ("state_dir", "run_dir"):
        if not getattr(config.paths, key):
            fail(f"paths.{key}", "must not be empty")
    _validate_video(config.video, fail)


def _validate_video(video: VideoConfig, fail: Any) -> None:
    for key, schemes in (("main", RTSP_SCHEMES), ("sub", RTSP_SCHEMES), ("snapshot", HTTP_SCHEMES)):
        problem = url_problem(getattr(video, key), schemes)
        if problem:
            fail(f"video.{key}", problem)
    if video.sub and not video.main:
        fail("video.sub", "needs video.main too (the substream is the lesser of two)")
    if not 1 <= video.max_tunnels <= 64:
        fail("video.max_tunnels", "must be from 1 to 64")
    if not 1 <= video.idle_timeout <= 3600:
        fail("video.idle_timeout", "must be from 1 to 3600 seconds")
