"""Typed application keys and the mock's run-time configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_mock.clock import MockClock
from cloud_mock.fixtures import Fixtures
from cloud_mock.resources import HeldPollLimits
from cloud_mock.store import Store
from cloud_mock.video.settings import VideoSettings

DEFAULT_HEARTBEAT_S = 30
DEFAULT_COMMAND_TIMEOUT_S = 10.0
MAX_HOLD_S = 120.0
DEFAULT_CODE_TTL_S = 86_400.0  # NVR activation codes live 24 h (docs/design.md §3)


@dataclass(frozen=True)
class MockConfig:
    data_dir: Path
    url: str  # what tokens carry in `api`: the mock's own https origin
    signing_key: Ed25519PrivateKey
    test_hooks: bool = False
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    max_hold_s: float = MAX_HOLD_S
    code_ttl_s: float = DEFAULT_CODE_TTL_S
    fixtures: Fixtures | None = None
    packages_dir: Path | None = None  # served at /packages/ (--packages)
    held_polls: HeldPollLimits = field(default_factory=HeldPollLimits)
    video: VideoSettings = field(default_factory=VideoSettings.from_env)  # §12: ffmpeg, …


CONFIG = web.AppKey("config", MockConfig)
CLOCK = web.AppKey("clock", MockClock)
STORE = web.AppKey("store", Store)
