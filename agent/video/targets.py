"""What a tunnel may reach: a target *name* resolved from the device's own config
(docs/design.md §12.1, §12.2). Pure; the cloud never gives an address."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from agent.config import Config
from agent.errors import TunnelRefused

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
SESSION = re.compile(r"[A-Za-z0-9_-]{22,64}")
MAX_SHOWN = 40


@dataclass(frozen=True)
class Target:
    name: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, at least "/"
    username: str | None
    password: str | None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def grant(self) -> dict[str, Any]:
        """The `tunnel_open` result: what the cloud needs for this session only."""
        return {
            "target": self.name,
            "scheme": self.scheme,
            "path": self.path,
            "username": self.username,
            "password": self.password,
        }


def check_session(session: object) -> str:
    if not isinstance(session, str) or SESSION.fullmatch(session) is None:
        raise TunnelRefused("session must be 22 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
    return session


def url_of(config: Config, name: str) -> str | None:
    """The configured URL behind a target name, or None if the device offers no such name."""
    if name not in config.video_targets():
        return None
    if config.device.kind == "nvr":
        camera_name, _, stream = name.rpartition("/")
        for camera in config.nvr.cameras:
            if camera.name == camera_name:
                return camera.url if stream == "main" else camera.sub_url
        return None
    return {"main": config.video.main, "sub": config.video.sub, "snapshot": config.video.snapshot}[
        name
    ]


def resolve(config: Config, name: object) -> Target:
    """The target called `name`, or TunnelRefused naming what this device offers."""
    if not isinstance(name, str):
        raise TunnelRefused(f"target must be the name of one of its streams: {_offers(config)}")
    url = url_of(config, name)
    if url is None:
        raise TunnelRefused(f"unknown target {_shown(name)}: {_offers(config)}")
    return parse_target(name, url)


def parse_target(name: str, url: str) -> Target:
    """A configured URL (already validated by agent.config) as a Target."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        name=name,
        scheme=scheme,
        host=parts.hostname or "",
        port=parts.port or DEFAULT_PORTS[scheme],
        path=path,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _offers(config: Config) -> str:
    names = config.video_targets()
    if names:
        return "this device offers " + ", ".join(names)
    if config.device.kind == "nvr":
        return "this NVR has no cameras ([[nvr.cameras]] in its config)"
    return "this camera has no video ([video] main is empty in its config)"


def _shown(name: str) -> str:
    text = repr(name)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"
