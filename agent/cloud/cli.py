"""`camagent cloud servers|login|sessions|logout` (placeholder until issue 7 lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sub.add_parser("cloud", help="server profiles and sessions in the cloud")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
