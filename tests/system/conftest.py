"""Fixtures for system tests: the .deb, a booted Debian 12 container, a mock cloud."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_mock import sandbox
from tests.system.container import ROOT, Container, build_deb

__all__ = ["ROOT", "copy_in"]


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    booted = Container(tmp_path_factory.mktemp("container") / "root")
    booted.boot()
    yield booted
    booted.shutdown()


@pytest.fixture(scope="session")
def host_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.Cloud]:
    cloud = sandbox.start_cloud(tmp_path_factory.mktemp("cloud"))
    yield cloud
    cloud.stop()


def copy_in(container: Container, source: Path, inside: str, mode: int = 0o644) -> None:
    target = container.path(inside)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)
