"""scripts/audit.sh: it fails on a known-vulnerable pin, and never calls something clean
that it had no advisory data for (pip-audit, here, prints "No known vulnerabilities found"
having looked nothing up)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "audit.sh"
# A package of the .deb's dependencies that Debian has fixed in its security archive.
CANDIDATES = ("python3-aiohttp", "libssl3", "python3.11", "libexpat1", "zlib1g")


def audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--no-update", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _security_fix() -> tuple[str, str]:
    """(package, version) of a security update Debian published for a dependency of the
    .deb, from apt's lists on this machine."""
    policy = subprocess.run(
        ["apt-cache", "policy", *CANDIDATES], capture_output=True, text=True, check=True
    ).stdout
    package = version = ""
    for line in policy.splitlines():
        if re.match(r"^\S+:$", line):
            package = line[:-1]
        elif match := re.match(r"^ (?:\*\*\*| {3}) (\S+) -?\d+$", line):
            version = match.group(1)
        elif "-security/" in line and package and version:
            return package, version
    pytest.fail(
        "apt's lists on this machine know no security update for any of "
        f"{', '.join(CANDIDATES)}: run apt-get update (scripts/setup.sh --tests does)"
    )


def _status(tmp_path: Path, package: str, version: str) -> Path:
    """A dpkg status file in which `package` is installed at `version`, and nothing else."""
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    show = subprocess.run(
        ["apt-cache", "show", package], capture_output=True, text=True, check=True
    ).stdout
    package_arch = re.search(r"^Architecture: (\S+)$", show, re.MULTILINE)
    path = tmp_path / "status"
    path.write_text(
        f"Package: {package}\nStatus: install ok installed\nPriority: optional\n"
        f"Section: misc\nArchitecture: {package_arch.group(1) if package_arch else arch}\n"
        f"Version: {version}\nDescription: a pin for the audit's test\n\n"
    )
    return path


def test_the_script_is_posix_sh_and_shellcheck_clean() -> None:
    assert shutil.which("shellcheck"), "shellcheck is missing (scripts/setup.sh --tests)"
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert subprocess.run(["dash", "-n", str(SCRIPT)], check=False).returncode == 0


def test_a_debian_package_just_below_its_security_fix_fails_the_audit(tmp_path: Path) -> None:
    package, fixed = _security_fix()
    # "X~" sorts right before X: the last version without the fix.
    status = _status(tmp_path, package, fixed + "~")
    done = audit("--debian-only", "--dpkg-status", str(status), "--all-installed")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"VULNERABLE   {package} {fixed}~: Debian fixed a vulnerability in {fixed}" in (
        done.stdout
    )
    assert "1 packages with known vulnerabilities" in done.stdout.splitlines()[-1]


def test_the_same_package_with_its_fix_passes(tmp_path: Path) -> None:
    package, fixed = _security_fix()
    done = audit(
        "--debian-only", "--dpkg-status", str(_status(tmp_path, package, fixed)), "--all-installed"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VULNERABLE" not in done.stdout
    assert "1 installed packages checked" in done.stdout
    # Even a pass says what it cannot see.
    assert "vulnerabilities Debian has not fixed are not covered" in done.stdout


def test_the_debs_dependencies_are_found_through_its_control_file(tmp_path: Path) -> None:
    package, fixed = _security_fix()
    if package != "python3-aiohttp":  # a direct Depends of the .deb, to be found as such
        pytest.fail("python3-aiohttp has no security update in apt's lists: run apt-get update")
    done = audit("--debian-only", "--dpkg-status", str(_status(tmp_path, package, fixed + "~")))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the camagent .deb's dependencies" in done.stdout


def _stand_in_pip_audit(tmp_path: Path, dependencies: Sequence[Mapping[str, object]]) -> Path:
    """A pip-audit that writes this JSON report (-o FILE) and says what the real one says
    when it could look nothing up."""
    path = tmp_path / "pip-audit"
    report = json.dumps({"dependencies": dependencies, "fixes": []})
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        f"open(out, 'w').write({report!r})\n"
        "print('No known vulnerabilities found')\n"
    )
    path.chmod(0o755)
    return path


def test_a_pypi_lookup_that_failed_is_not_checked_never_clean(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aiohttp==3.7.3\ncryptography==46.0.3\n")
    skipped = [
        {
            "name": name,
            "skip_reason": f"Dependency not found on PyPI and could not be audited: {name}",
        }
        for name in ("aiohttp", "cryptography")
    ]
    tool = _stand_in_pip_audit(tmp_path, skipped)
    done = audit(
        "--dpkg-status", "/dev/null", "--requirements", str(requirements), "--pip-audit", str(tool)
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "No known vulnerabilities found" not in done.stdout
    assert "NOT CHECKED  PyPI: 2 packages could not be looked up" in done.stdout
    assert "this is no clean audit" in done.stdout.splitlines()[-1]


def test_a_known_vulnerable_pypi_pin_fails_the_audit(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aiohttp==3.7.3\n")
    vulnerable = [
        {
            "name": "aiohttp",
            "version": "3.7.3",
            "vulns": [{"id": "PYSEC-2021-76", "fix_versions": ["3.7.4"]}],
        }
    ]
    tool = _stand_in_pip_audit(tmp_path, vulnerable)
    done = audit(
        "--dpkg-status", "/dev/null", "--requirements", str(requirements), "--pip-audit", str(tool)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "VULNERABLE   aiohttp 3.7.3: PYSEC-2021-76 (fixed in 3.7.4)" in done.stdout


def test_without_pip_audit_pypi_is_not_checked(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aiohttp==3.7.3\n")
    done = audit(
        "--dpkg-status",
        "/dev/null",
        "--requirements",
        str(requirements),
        env={"PATH": "/usr/bin:/bin", "PIP_AUDIT": ""},
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "NOT CHECKED  PyPI: pip-audit is not installed" in done.stdout
    assert "NOT CHECKED  Debian: none of the camagent .deb's dependencies" in done.stdout


def test_usage_errors_exit_2() -> None:
    assert audit("--frobnicate").returncode == 2
    assert audit("--debian-only", "--requirements", "r.txt").returncode == 2
