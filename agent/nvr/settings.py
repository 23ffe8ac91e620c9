"""Broadcast and Archive settings the cloud sends with `configure`, applied to the NVR's
camera list (`[[nvr.cameras]]`) and kept in the state directory.

This agent does not record or stream video itself: it keeps and reports the settings the
recorder on this server is to apply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.atomic_file import write_atomic
from agent.config import NvrCamera
from agent.errors import StateError, WireError

SETTINGS_FILE = "nvr-settings.json"
QUALITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Broadcast:
    enabled: bool = False
    quality: str = "medium"
    cameras: tuple[str, ...] | None = None  # which may stream live; None: all (§12.6)

    def streams(self, name: str) -> bool:
        return self.enabled and (self.cameras is None or name in self.cameras)


@dataclass(frozen=True)
class Archive:
    enabled: bool = False
    days: int = 7


@dataclass(frozen=True)
class NvrSettings:
    broadcast: Broadcast = Broadcast()
    archive: Archive = Archive()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse(args: Any) -> NvrSettings:
    """Validate a `configure` command's args; missing parts keep their defaults."""
    if not isinstance(args, dict):
        raise WireError("configure needs an object with broadcast and/or archive")
    broadcast, archive = Broadcast(), Archive()
    if "broadcast" in args:
        b = args["broadcast"]
        if not isinstance(b, dict) or not isinstance(b.get("enabled"), bool):
            raise WireError("broadcast must be {enabled: bool, quality}")
        quality = b.get("quality", "medium")
        if quality not in QUALITIES:
            raise WireError(f"broadcast.quality must be one of {', '.join(QUALITIES)}")
        broadcast = Broadcast(b["enabled"], quality, _camera_names(b.get("cameras")))
    if "archive" in args:
        a = args["archive"]
        if not isinstance(a, dict) or not isinstance(a.get("enabled"), bool):
            raise WireError("archive must be {enabled: bool, days}")
        days = a.get("days", 7)
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 365:
            raise WireError("archive.days must be an integer from 1 to 365")
        archive = Archive(a["enabled"], days)
    return NvrSettings(broadcast, archive)


MAX_CAMERAS = 512


def _camera_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_CAMERAS
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise WireError("broadcast.cameras must be a list of camera names (or null: all)")
    return tuple(value)


def camera_list(cameras: tuple[NvrCamera, ...]) -> list[dict[str, Any]]:
    """What `sync` reports: no credentials ever leave the NVR (the cloud gets them per
    tunnel, §12.2), and the streams each camera offers through its tunnel."""
    listed = []
    for c in cameras:
        entry: dict[str, Any] = {"name": c.name, "url": without_credentials(c.url)}
        if c.sub_url:
            entry["sub_url"] = without_credentials(c.sub_url)
        if c.onvif_url:
            entry["onvif_url"] = without_credentials(c.onvif_url)
        entry["streams"] = ["main", "sub"] if c.sub_url else ["main"]
        listed.append(entry)
    return listed


def without_credentials(url: str) -> str:
    """`url` with its user and password taken out."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{path}"


def apply(settings: NvrSettings, cameras: tuple[NvrCamera, ...]) -> list[dict[str, Any]]:
    applied = []
    for c in cameras:
        broadcast = settings.broadcast
        applied.append(
            {
                "name": c.name,
                "broadcast": {"enabled": broadcast.streams(c.name), "quality": broadcast.quality},
                "archive": asdict(settings.archive),
            }
        )
    return applied


def save(state_dir: Path, settings: NvrSettings) -> None:
    write_atomic(state_dir / SETTINGS_FILE, json.dumps(settings.to_json()).encode())


def load(state_dir: Path) -> NvrSettings | None:
    path = state_dir / SETTINGS_FILE
    try:
        return parse(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, WireError) as exc:
        raise StateError(f"{path} is unreadable: {exc}") from None
