"""The console's HTML: Jinja2 templates (templates/, autoescaped) and what they are given.

Pages are rendered on the server with their current data; console.js then adds the
live parts (status stream, forms that call the JSON API, the wizard's steps). Every
value reaches the markup through Jinja2's autoescaping, so no view escapes by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web

from cloud_mock.nvr import ARCHIVE_DAYS, QUALITIES
from cloud_mock.store.video import Recording
from cloud_mock.users import ROLES_THAT_CHANGE
from cloud_mock.video.archive import RETENTION_DAYS
from cloud_mock.video.thumbnails import BROADCAST_OFF

NAV = (("cameras", "/cameras", "Cameras"), ("registrators", "/registrators", "Registrators"))
NAV_END = (("sessions", "/sessions", "Sessions"),)
STATIC = "/console/static"

WIZARD_STEPS = (
    "Details",
    "Device",
    "Installation",
    "Activation",
    "Connect",
    "Broadcast",
    "Archive",
    "Summary",
)

# What a source records when its `video` says nothing (an API older than the archive).
DEFAULT_RECORDING = Recording("off").to_json()

POLL_RESULTS = {
    "token": "token delivered",
    "none": "no token yet",
    "unknown": "no token (camera not added yet)",
    "bad_proof": "refused: wrong device password",
    "replay": "refused: nonce seen before",
    "clock_skew": "refused: device clock is off",
    "abandoned": "device gave up waiting",
    "fault": "injected fault (test)",
    "malformed": "malformed request",
}


def when(at: float | None) -> str:
    """A mock-clock time as the page shows it (console.js formats the same way)."""
    if at is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def poll_result(result: str) -> str:
    return POLL_RESULTS.get(result, result)


@dataclass(frozen=True)
class Viewer:
    """Who a page is rendered for."""

    login: str
    org: str
    role: str
    csrf: str

    @property
    def may_change(self) -> bool:
        """Viewers only look (cloud_mock.users.Caller.may_change): their pages leave out
        the buttons the API would refuse anyway."""
        return self.role in ROLES_THAT_CHANGE


def path_part(value: str) -> str:
    """One segment of a URL path: an NVR camera's name may hold spaces, `?`, `#` …"""
    return quote(value, safe="")


def live_allowed(registrator: Mapping[str, Any], name: str) -> bool:
    """Whether the registrator's Broadcast settings let this NVR camera stream live: its
    `cameras` list names it, or there is no list (all may). The API's rule
    (cloud_mock.video.routes.check_broadcast); console.js has the same for live updates."""
    allowed = registrator.get("broadcast", {}).get("cameras")
    return not isinstance(allowed, list) or name in allowed


def nvr_camera_source(registrator: Mapping[str, Any], camera: Mapping[str, Any]) -> dict[str, Any]:
    """An NVR camera as the live player follows it (player.js): the NVR's status, the
    camera's `video` and whether Broadcast lets it stream. console.js's nvrSource builds
    the same from the status feed."""
    return {
        "kind": "nvr_camera",
        "name": camera["name"],
        "status": registrator["status"],
        "video": camera.get("video"),
        "live": live_allowed(registrator, camera["name"]),
    }


FILTERS: Mapping[str, Callable[..., str]] = {
    "when": when,
    "poll_result": poll_result,
    "path_part": path_part,
}


# One set of options for the app's environment and for tests that render a template alone.
OPTIONS: Mapping[str, Any] = {
    "loader": jinja2.PackageLoader("cloud_mock.console", "templates"),
    # A missing variable is an error, not an empty string: a template's typo fails its test.
    "undefined": jinja2.StrictUndefined,
    "trim_blocks": True,
}


def _configure(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(FILTERS)
    env.globals.update(
        NAV=NAV,
        NAV_END=NAV_END,
        STATIC=STATIC,
        STEPS=WIZARD_STEPS,
        QUALITIES=QUALITIES,
        ARCHIVE_DAYS=ARCHIVE_DAYS,
        RETENTION_DAYS=RETENTION_DAYS,
        DEFAULT_RECORDING=DEFAULT_RECORDING,
        live_allowed=live_allowed,
        BROADCAST_OFF=BROADCAST_OFF,
    )
    return env


def environment() -> jinja2.Environment:
    """The templates without an app (tests render one page alone with it)."""
    return _configure(jinja2.Environment(autoescape=True, **OPTIONS))


def setup(app: web.Application) -> None:
    """The app's template environment: autoescaping everywhere."""
    _configure(aiohttp_jinja2.setup(app, default_helpers=False, autoescape=True, **OPTIONS))


def render(
    request: web.Request,
    template: str,
    *,
    title: str,
    page: str,
    viewer: Viewer | None,
    csrf: str | None = None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """A page of the layout (base.html): `csrf` is the viewer's unless given (the login
    page has a pre-login token and no viewer)."""
    values: Mapping[str, Any] = {
        "title": title,
        "page": page,
        "viewer": viewer,
        "csrf": csrf if csrf is not None else (viewer.csrf if viewer else ""),
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, values, status=status)
