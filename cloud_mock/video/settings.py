"""The mock's video tunables (docs/design.md §12.5, §12.6): defaults for a person, and
what tests and the demo shrink through the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from aiohttp import web

ENV_PREFIX = "CAMAGENT_MOCK_VIDEO_"


@dataclass(frozen=True)
class VideoSettings:
    ffmpeg: str = "ffmpeg"  # Debian's, from PATH (an apt package of the mock's setup)
    linger_s: float = 5.0  # a puller outlives its last viewer by this much
    thumbnail_s: float = 300.0  # thumbnail of each online device, this often
    live_thumbnail_s: float = 10.0  # from the live cache while a stream is open
    probe_s: float = 60.0  # `probe` each online device this often (§12.4)
    retry_max_s: float = 30.0  # backoff cap of a puller or recorder that died
    # A camera can accept PLAY and then send nothing (or only RTCP, which keeps ffmpeg's
    # own socket timeout from firing): no video for this long ends a pull, to be retried.
    stall_s: float = 10.0
    archive_run_s: float = 3600.0  # a recording run is cut (new playlist, new tunnel)
    archive_segment_s: float = 2.0
    archive_max_mb: float = 2048.0  # all sources together; the oldest segments go first
    prune_s: float = 60.0  # retention is enforced this often

    @classmethod
    def from_env(cls, **overrides: object) -> VideoSettings:
        """Defaults, then `CAMAGENT_MOCK_VIDEO_<FIELD>` variables, then `overrides`."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or not raw.strip():
                continue
            default = getattr(cls, f.name)
            try:
                values[f.name] = raw if isinstance(default, str) else type(default)(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{f.name.upper()} must be a number, not {raw!r}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not value > 0:
                raise ValueError(f"video setting {f.name} must be greater than 0, not {value}")


VIDEO_SETTINGS = web.AppKey("video_settings", VideoSettings)
