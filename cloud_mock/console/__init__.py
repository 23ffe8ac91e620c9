"""The web console served at `/` (placeholder until issue 9 lands)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Adds the console's routes to `app`."""
