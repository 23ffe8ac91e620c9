"""The mock's route table, as (method, path template) pairs, the console's left out."""

from __future__ import annotations

import re
from pathlib import Path

from cloud_mock.app import make_app
from cloud_mock.keys import MockConfig
from cloud_mock.pki import ensure_pki

CONSOLE_PATHS = re.compile(r"^/($|console/|login|logout|cameras|registrators|sessions)")


def served_routes(data_dir: Path, test_hooks: bool = True) -> set[tuple[str, str]]:
    """What `make_app` registers (with test hooks, by default), methods in lower case."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(data_dir, "127.0.0.1")
    config = MockConfig(
        data_dir=data_dir,
        url="https://127.0.0.1:1",
        signing_key=pki.signing_key,
        test_hooks=test_hooks,
    )
    served = set()
    for route in make_app(config).router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if route.method == "HEAD" or CONSOLE_PATHS.match(path):
            continue
        served.add((route.method.lower(), path))
    return served
