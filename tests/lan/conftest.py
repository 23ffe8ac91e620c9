"""Fixtures for the LAN tests: one LAN of network namespaces per test module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.lan.netns import Lan, remove_stale
from tests.lan.site import Site, open_site


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Site]:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("the LAN tests need root and iproute2 to create network namespaces")
    remove_stale()
    tag = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:10]
    lan = Lan(tag)
    site_obj: Site | None = None
    try:
        site_obj = open_site(lan, tmp_path_factory.mktemp("lan"))
        yield site_obj
    finally:
        if site_obj is not None:
            site_obj.close()
        lan.close()
