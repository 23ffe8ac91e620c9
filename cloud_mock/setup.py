"""The mock's one build step beyond pyproject.toml: its third-party browser code.

The console's QR decoder (zxing-wasm), its archive player (hls.js) and the renderer of
/docs (swagger-ui-dist) are not in the repository: console/vendor.sh fetches them from
npm, pinned by version and sha512. A wheel built where they are missing (a fresh clone)
runs it first, so that a mock installed from the wheel has "Scan label" and /docs.
An editable install does not: it serves the checkout's files, which scripts/setup.sh
fetches (or says why not).
"""

# mypy: ignore-errors
# (setuptools has no type information in the venv; nothing imports this file.)

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
VENDOR_SH = HERE / "console" / "vendor.sh"
# The folders the fetched files go to: data-only packages in pyproject.toml, so they exist
# even before the first fetch (and stay empty without npm).
FETCHED_DIRS = (HERE / "console" / "static" / "vendor", HERE / "static" / "apidocs")
FETCHED = (
    FETCHED_DIRS[0] / "zxing-reader.js",
    FETCHED_DIRS[0] / "zxing_reader.wasm",
    FETCHED_DIRS[0] / "hls.light.min.js",
    FETCHED_DIRS[1] / "swagger-ui-bundle.js",
    FETCHED_DIRS[1] / "swagger-ui.css",
)


class BuildPyWithVendor(build_py):
    """build_py that runs console/vendor.sh first when a fetched file is missing."""

    def run(self) -> None:
        if not self.editable_mode and not all(path.is_file() for path in FETCHED):
            done = subprocess.run([str(VENDOR_SH)], check=False)
            if done.returncode != 0:
                raise SystemExit(
                    f"{VENDOR_SH} failed (exit {done.returncode}): the mock's wheel would "
                    "lack its QR decoder, archive player and /docs renderer"
                )
            # The package data is listed lazily: list it again, with the fetched files.
            self.__dict__.pop("data_files", None)
        super().run()

    def find_package_modules(self, package, package_dir):
        """The package's modules, without this file (it sits in the package's folder)."""
        modules = super().find_package_modules(package, package_dir)
        return [entry for entry in modules if Path(entry[2]).resolve() != Path(__file__).resolve()]


if __name__ == "__main__":
    for folder in FETCHED_DIRS:
        folder.mkdir(parents=True, exist_ok=True)
    setup(cmdclass={"build_py": BuildPyWithVendor})
