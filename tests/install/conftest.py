"""A real mock cloud (subprocess) serving install.sh and packages; a stand-in sandbox."""

from __future__ import annotations

import base64
import hashlib
import ssl
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_mock.testing import MockCloud, running_mock_cloud
from tests.install.standins import STANDIN, Sandbox

DEB_NAME = "camagent_0.1.0_all.deb"
DEB_BYTES = b"!<arch>\nnot really a Debian package, but apt-get is a stand-in here\n"
WHEEL_NAME = "camagent-0.1.0-py3-none-any.whl"


def fetch(cloud: MockCloud, path: str) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=str(cloud.ca_file))
    request = urllib.request.Request(cloud.url + path)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def build_wheel(path: Path) -> None:
    """A pure-Python wheel without dependencies whose `camagent` is the stand-in."""
    dist = "camagent-0.1.0.dist-info"
    files = {
        "camagent_standin.py": STANDIN.encode(),
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: camagent\nVersion: 0.1.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[console_scripts]\ncamagent = camagent_standin:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("packages")
    (directory / DEB_NAME).write_bytes(DEB_BYTES)
    build_wheel(directory / WHEEL_NAME)
    return directory


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, packages: Path) -> Iterator[MockCloud]:
    with running_mock_cloud(tmp_path_factory.mktemp("cloud"), packages=packages) as running:
        yield running


@pytest.fixture
def script(cloud: MockCloud) -> str:
    status, _, body = fetch(cloud, "/install.sh")
    assert status == 200
    return body.decode()


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "sandbox")
