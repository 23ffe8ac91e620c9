"""Fixtures for the LAN tests: one LAN of network namespaces per test module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.lan.netns import Lan, remove_stale
from tests.lan.site import Site, open_site


@pytest.fixture(scope="module")
def lan(request: pytest.FixtureRequest) -> Iterator[Lan]:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("the LAN tests need root and iproute2 to create network namespaces")
    remove_stale()
    tag = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:10]
    made = Lan(tag)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def site(lan: Lan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The mock cloud on the hub; devices are added by the tests' own fixtures."""
    made = open_site(lan, tmp_path_factory.mktemp("lan"))
    try:
        yield made
    finally:
        made.close()
