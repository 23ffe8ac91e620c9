"""The two distributions built as wheels and installed into a fresh virtual environment,
away from this checkout: the agent's carries nothing of the mock, and the mock installed
from its wheel starts and serves its console, its static files (the QR decoder of "Scan
label" and the renderer of /docs included, fetched at build time where they are missing)
and install.sh."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_mock.pki import CA_CERT
from cloud_mock.testing import MockCloudError, stop_process
from tests.install import REPO_ROOT
from tests.install.test_script_static import embedded_unit, expected_venv_unit

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Away from the checkout: nothing may be imported from it.
AWAY = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> None:
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, cwd=cwd, timeout=timeout, env=AWAY
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    existed = {p for p in (REPO_ROOT / "build", REPO_ROOT / "cloud_mock" / "build") if p.exists()}
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            ".",
            "./cloud_mock",
        ],
        cwd=REPO_ROOT,
        timeout=300,
    )
    # pip builds in the tree: what it leaves there is not the checkout's to keep.
    for leftover in (REPO_ROOT / "build", REPO_ROOT / "cloud_mock" / "build"):
        if leftover not in existed:
            shutil.rmtree(leftover, ignore_errors=True)
    found = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert set(found) == {"camagent", "camagent_cloud_mock"}, found
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Path:
    """A fresh venv with both wheels; their dependencies from the package index."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", str(where)], timeout=120)
    _run(
        [str(where / "bin" / "pip"), "install", "-q", "--no-input", *map(str, wheels.values())],
        timeout=420,
    )
    return where


def test_the_agents_wheel_carries_no_mock(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["camagent"]) as wheel:
        names = wheel.namelist()
    assert any(name.startswith("agent/") for name in names)
    assert not [name for name in names if name.startswith("cloud_mock")]
    assert not [name for name in names if name.startswith("tests/")]


def test_the_mocks_wheel_holds_install_sh_and_the_unit_as_files(wheels: dict[str, Path]) -> None:
    """The repository stores them once (symlinks); the wheel has their content."""
    with zipfile.ZipFile(wheels["camagent_cloud_mock"]) as wheel:
        script = wheel.read("cloud_mock/static/install.sh")
        unit = wheel.read("cloud_mock/static/camagent.service")
        names = wheel.namelist()
    assert script == (REPO_ROOT / "install.sh").read_bytes()
    assert unit == (REPO_ROOT / "packaging" / "camagent.service").read_bytes()
    assert "cloud_mock/console/static/console.css" in names
    assert not [name for name in names if name.startswith("agent/")]


# What cloud_mock/console/vendor.sh fetches from npm (pinned, checked): a checkout has it
# after scripts/setup.sh, and a wheel built without it fetches it (cloud_mock/setup.py).
FETCHED = (
    "cloud_mock/console/static/vendor/zxing-reader.js",  # "Scan label": the QR decoder
    "cloud_mock/console/static/vendor/zxing_reader.wasm",
    "cloud_mock/console/static/vendor/zxing-wasm.LICENSE",
    "cloud_mock/console/static/vendor/hls.light.min.js",  # the archive player
    "cloud_mock/console/static/vendor/hls.js.LICENSE",
    "cloud_mock/static/apidocs/swagger-ui-bundle.js",  # the renderer of /docs
    "cloud_mock/static/apidocs/swagger-ui.css",
    "cloud_mock/static/apidocs/LICENSE",
)


def test_the_mocks_wheel_carries_its_fetched_browser_code(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["camagent_cloud_mock"]) as wheel:
        names = set(wheel.namelist())
        for name in FETCHED:
            assert name in names, f"{name} is not in the wheel"
            assert wheel.read(name) == (REPO_ROOT / name).read_bytes(), name
    # The build step that fetches them stays out of the installed package.
    assert "cloud_mock/setup.py" not in names
    assert "cloud_mock/console/templates/base.html" in names


# The files of cloud_mock/ that build the wheel and are not in it.
BUILD_ONLY = {"pyproject.toml", "setup.py", "MANIFEST.in", "console/vendor.sh"}


def test_the_mocks_wheel_carries_every_file_of_its_folder(wheels: dict[str, Path]) -> None:
    """A module or data folder added to cloud_mock/ but not to the `packages` list of
    cloud_mock/pyproject.toml would be left out of the wheel: none is."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: its own files cannot be told from leftovers")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "cloud_mock"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    with zipfile.ZipFile(wheels["camagent_cloud_mock"]) as wheel:
        names = set(wheel.namelist())
    missing = [
        name
        for name in listed
        if name.removeprefix("cloud_mock/") not in BUILD_ONLY
        and (REPO_ROOT / name).is_file()
        and name not in names
    ]
    assert not missing, f"add their folders to the packages of cloud_mock/pyproject.toml: {missing}"


@pytest.fixture(scope="module")
def installed_mock(
    venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`python -m cloud_mock --data-dir D --port 0` from the venv: (its URL, D)."""
    data = tmp_path_factory.mktemp("mockdata")
    python = str(venv / "bin" / "python")
    with (data / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [python, "-m", "cloud_mock", "--data-dir", str(data), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=data,
            env=AWAY,
        )
    assert process.stdout is not None
    url = process.stdout.readline().decode().strip()  # its first line, once it listens
    try:
        if not url.startswith("https://"):
            raise MockCloudError(f"the installed mock did not start: {url!r}")
        yield url, data
    finally:
        stop_process(process)
        process.stdout.close()


def _get(url: str, ca: Path) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        return response.status, response.read()


def test_the_mock_runs_from_the_venv_not_from_the_checkout(venv: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import cloud_mock; print(cloud_mock.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=AWAY,
        check=True,
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve())


def test_the_mock_installed_from_its_wheel_starts_and_serves(
    installed_mock: tuple[str, Path],
) -> None:
    url, data = installed_mock
    ca = data / CA_CERT
    status, home = _get(url + "/", ca)
    assert status == 200
    assert b"<html" in home.lower()
    status, css = _get(url + "/console/static/console.css", ca)
    assert status == 200
    assert css == (REPO_ROOT / "cloud_mock" / "console" / "static" / "console.css").read_bytes()
    status, script = _get(url + "/install.sh", ca)
    assert status == 200
    text = script.decode()
    assert text.startswith("#!/bin/sh")
    assert f'CLOUD_URL="{url}"' in text
    assert embedded_unit(text) == expected_venv_unit()


def test_the_mock_installed_from_its_wheel_has_scan_label_and_docs(
    installed_mock: tuple[str, Path],
) -> None:
    url, data = installed_mock
    ca = data / CA_CERT
    for name in ("zxing-reader.js", "zxing_reader.wasm", "hls.light.min.js"):
        status, body = _get(f"{url}/console/static/vendor/{name}", ca)
        assert status == 200
        assert body == (REPO_ROOT / "cloud_mock/console/static/vendor" / name).read_bytes()
    status, page = _get(url + "/docs", ca)
    assert status == 200
    assert b"/docs/assets/swagger-ui-bundle.js" in page
    status, bundle = _get(url + "/docs/assets/swagger-ui-bundle.js", ca)
    assert status == 200
    assert bundle == (REPO_ROOT / "cloud_mock/static/apidocs/swagger-ui-bundle.js").read_bytes()
