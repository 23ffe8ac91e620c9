"""The one-line installer: `GET /install.sh` and `GET /packages/{name}` (issue 5).

`/install.sh` is the repository's `install.sh` (`cloud_mock/static/install.sh` is a
symlink to it, whose content a wheel build copies) with its placeholder lines filled in at
request time: this mock's URL, the package it serves and its SHA-256, the CA its TLS
certificate chains to, the SHA-256 of its token-signing public key (the bytes of
`token-signing.pub.pem`, which are also the `pem` of `GET /v1/keys`), and the systemd unit
for installs into a virtual environment: the Debian package's `packaging/camagent.service`
(`cloud_mock/static/camagent.service`, a symlink too) with the venv's `ExecStart=`.

`--packages DIR` names a directory holding `camagent_<version>_all.deb` and/or
`camagent-<version>-….whl`; `/packages/{name}` serves the regular files directly in it,
nothing else.  Without it the script is still served, with empty package URLs, and says
that this cloud serves no package when it needs one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from cloud_mock.api import ApiError
from cloud_mock.keys import CONFIG
from cloud_mock.pki import CA_CERT, public_pem

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
TEMPLATE_PATH = STATIC / "install.sh"
UNIT_PATH = STATIC / "camagent.service"
VALUE_NAMES = ("CLOUD_URL", "DEB_URL", "DEB_SHA256", "WHEEL_URL", "WHEEL_SHA256", "KEYS_SHA256")
CA_PLACEHOLDER = "@CA_PEM@"
CA_TERMINATOR = "CAMAGENT_CA_PEM"
UNIT_PLACEHOLDER = "@CAMAGENT_UNIT@"
UNIT_TERMINATOR = "CAMAGENT_UNIT"
DEB_EXEC = "ExecStart=/usr/bin/camagent "
VENV_EXEC = "ExecStart=/opt/camagent/bin/camagent "

DEB_NAME = re.compile(r"camagent_(?P<version>[0-9][A-Za-z0-9.+~-]*)_all\.deb")
WHEEL_NAME = re.compile(r"camagent-(?P<version>[0-9][A-Za-z0-9.+!]*)-[A-Za-z0-9._-]+\.whl")
# What /packages/{name} accepts at all: no separators, no leading dot.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]*")
# What may stand between double quotes in the script without being interpreted.
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:/%@+~\[\]-]*")

CONTENT_TYPES = {".deb": "application/vnd.debian.binary-package", ".whl": "application/zip"}


class TemplateError(ValueError):
    """install.sh does not have the placeholder lines this module fills in."""


@dataclass(frozen=True)
class PackageFile:
    name: str
    path: Path
    version: str
    sha256: str


def venv_unit(deb_unit: str) -> str:
    """The Debian package's unit as install.sh writes it for a virtual environment: the
    venv's camagent, and no Documentation= (the README is not installed there)."""
    lines = deb_unit.splitlines()
    execs = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    if len(execs) != 1 or not lines[execs[0]].startswith(DEB_EXEC):
        raise TemplateError(f"the unit must have exactly one line {DEB_EXEC}…")
    lines[execs[0]] = VENV_EXEC + lines[execs[0]].removeprefix(DEB_EXEC)
    kept = [line for line in lines if not line.startswith("Documentation=")]
    if UNIT_TERMINATOR in kept:
        raise TemplateError("the unit could end install.sh's here-document early")
    return "\n".join(kept)


class Installer:
    def __init__(self, template: str, packages_dir: Path | None, unit: str = "") -> None:
        self.unit = venv_unit(unit) if unit else ""
        # Fail now, not per request.
        render(template, dict.fromkeys(VALUE_NAMES, ""), "", self.unit)
        self.template = template
        self.packages_dir = packages_dir
        self._hashes: dict[tuple[str, int, int], str] = {}

    def file(self, name: str) -> Path | None:
        """A regular file directly in the packages directory, or None."""
        if self.packages_dir is None or not SAFE_NAME.fullmatch(name):
            return None
        path = self.packages_dir / name
        try:
            if not path.is_file() or path.resolve().parent != self.packages_dir.resolve():
                return None
        except OSError:
            return None
        return path

    def latest(self, pattern: re.Pattern[str]) -> PackageFile | None:
        """The highest version of the files whose names match `pattern`."""
        if self.packages_dir is None:
            return None
        found: list[tuple[tuple[tuple[int, int | str], ...], str, Path]] = []
        for path in self.packages_dir.iterdir():
            match = pattern.fullmatch(path.name)
            if match and self.file(path.name) is not None:
                found.append((_version_key(match["version"]), match["version"], path))
        if not found:
            return None
        _, version, path = max(found)
        return PackageFile(path.name, path, version, self._sha256(path))

    def _sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (path.name, stat.st_size, stat.st_mtime_ns)
        digest = self._hashes.get(key)
        if digest is None:
            hasher = hashlib.sha256()
            with path.open("rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    hasher.update(chunk)
            digest = self._hashes[key] = hasher.hexdigest()
        return digest


INSTALLER = web.AppKey("installer", Installer)


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Numbers compare as numbers: 0.10.0 > 0.9.1."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", version)
        if part
    )


def render(template: str, values: Mapping[str, str], ca_pem: str, unit: str = "") -> str:
    """Fill the `NAME="@NAME@"` lines, the `@CA_PEM@` line and the `@CAMAGENT_UNIT@` line
    of the template (the unit as `venv_unit` made it)."""
    text = template
    for name in VALUE_NAMES:
        value = values[name]
        if not SAFE_VALUE.fullmatch(value):
            raise ValueError(f"{name}={value!r} cannot go into install.sh")
        line = re.compile(rf'^(?P<indent>[ \t]*){name}="@{name}@"$', re.MULTILINE)
        text, count = line.subn(_assignment(name, value), text)
        if count != 1:
            raise TemplateError(f'install.sh must have exactly one line {name}="@{name}@"')
    ca_lines = ca_pem.strip("\n")
    if CA_TERMINATOR in ca_lines or "@" in ca_lines:
        raise ValueError("the CA does not look like PEM")
    text, count = re.subn(
        rf"^{re.escape(CA_PLACEHOLDER)}$", lambda _: ca_lines, text, flags=re.MULTILINE
    )
    if count != 1:
        raise TemplateError(f"install.sh must have exactly one line {CA_PLACEHOLDER}")
    text, count = re.subn(
        rf"^{re.escape(UNIT_PLACEHOLDER)}$", lambda _: unit, text, flags=re.MULTILINE
    )
    if count != 1:
        raise TemplateError(f"install.sh must have exactly one line {UNIT_PLACEHOLDER}")
    return text


def _assignment(name: str, value: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return f'{match["indent"]}{name}="{value}"'

    return replace


def install_line(url: str, data_dir: Path, *options: str) -> str:
    """The one-liner the console's wizard shows, as it works against this mock.

    The mock's TLS certificate chains to its own CA (`DATA_DIR/ca.pem`), which no system
    trusts: curl is told to trust that file. On the mock's machine the line works as
    printed; on another machine, copy the file there first (the script itself carries the
    CA for everything it downloads after).
    """
    ca = shlex.quote(str(data_dir / CA_CERT))
    line = f"curl -fsSL --cacert {ca} {url}/install.sh | sh -s --"
    return " ".join((line, *map(shlex.quote, options)))


def script_for(app: web.Application) -> str:
    config = app[CONFIG]
    installer = app[INSTALLER]
    deb = installer.latest(DEB_NAME)
    wheel = installer.latest(WHEEL_NAME)
    keys_pem = public_pem(config.signing_key.public_key()).encode()
    values = {
        "CLOUD_URL": config.url,
        "DEB_URL": f"{config.url}/packages/{deb.name}" if deb else "",
        "DEB_SHA256": deb.sha256 if deb else "",
        "WHEEL_URL": f"{config.url}/packages/{wheel.name}" if wheel else "",
        "WHEEL_SHA256": wheel.sha256 if wheel else "",
        "KEYS_SHA256": hashlib.sha256(keys_pem).hexdigest(),
    }
    ca_pem = (config.data_dir / CA_CERT).read_text(encoding="ascii")
    return render(installer.template, values, ca_pem, installer.unit)


async def get_install_script(request: web.Request) -> web.Response:
    return web.Response(
        text=script_for(request.app),
        content_type="text/x-shellscript",
        headers={"Cache-Control": "no-store"},
    )


async def get_package(request: web.Request) -> web.StreamResponse:
    path = request.app[INSTALLER].file(request.match_info["name"])
    if path is None:
        raise ApiError(404, "no such package")
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": content_type})


def setup(app: web.Application) -> None:
    packages_dir = app[CONFIG].packages_dir
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    unit = UNIT_PATH.read_text(encoding="utf-8")
    app[INSTALLER] = Installer(template, packages_dir, unit)
    app.router.add_get("/install.sh", get_install_script)
    app.router.add_get("/packages/{name}", get_package)
