"""Fixtures for system tests: one booted container per Debian release (12 and 13), the
package built on that release, a mock cloud on the host.

The container is session-scoped and parametrized by release, so pytest runs every test of
one release against one booted system, then shuts it down and boots the next. Each test
module starts from a system without camagent (`box`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_mock import sandbox
from tests.system.container import RELEASES, ROOT, Container, build_deb_inside

__all__ = ["ROOT", "copy_in"]


@pytest.fixture(scope="session", params=RELEASES)
def container(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    release: str = request.param
    booted = Container(tmp_path_factory.mktemp(release) / "root", release=release)
    booted.boot()
    yield booted
    booted.shutdown()


@pytest.fixture(scope="session")
def deb(container: Container, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package, built on the container's release with its own Debian tools."""
    return build_deb_inside(container, tmp_path_factory.mktemp(f"deb-{container.release}"))


@pytest.fixture(scope="module")
def box(container: Container) -> Container:
    """The session's container, with no trace of camagent left by an earlier module."""
    container.run(["apt-get", "purge", "-y", "-q", "camagent"], check=False, timeout=120)
    container.run(["rm", "-rf", "/etc/camagent", "/var/lib/camagent", "/opt/camagent"])
    return container


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
