"""`camagent finder scan|push|reset|poll-now|wifi` (placeholder until issue 8 lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sub.add_parser("finder", help="find camagent devices on the LAN and act on them")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
