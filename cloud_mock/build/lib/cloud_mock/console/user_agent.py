"""A browser's User-Agent, short enough for a session list."""

from __future__ import annotations

import re

_BROWSERS = (
    ("Edge", re.compile(r"Edg/(\d+)")),
    ("Firefox", re.compile(r"Firefox/(\d+)")),
    ("Chrome", re.compile(r"Chrom(?:e|ium)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+).*Safari/")),
)
_SYSTEMS = ("Android", "iPhone", "iPad", "Windows", "Mac OS X", "CrOS", "Linux")


def browser_of(user_agent: str) -> tuple[str, str]:
    """(device, software) of a session from the browser's User-Agent, short enough for the
    session list: ("web browser on Linux", "camagent console, Chrome 156")."""
    system = next((s for s in _SYSTEMS if s in user_agent), "")
    software = "camagent console"
    for name, pattern in _BROWSERS:
        found = pattern.search(user_agent)
        if found:
            software = f"camagent console, {name} {found.group(1)}"
            break
    system = {"Mac OS X": "macOS", "CrOS": "ChromeOS"}.get(system, system)
    return (f"web browser on {system}" if system else "web browser"), software
