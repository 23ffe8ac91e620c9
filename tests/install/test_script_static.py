"""install.sh on its own: lint, syntax, the copy the mock serves, a cut-off download,
options and refusals that need no cloud."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cloud_mock.installer import (
    TEMPLATE_PATH,
    UNIT_PATH,
    VALUE_NAMES,
    TemplateError,
    render,
    venv_unit,
)
from tests.install import REPO_ROOT
from tests.install.standins import NAMES, Sandbox, repo_script, write_standins

SCRIPT = REPO_ROOT / "install.sh"
FAKE_VALUES = {
    "CLOUD_URL": "https://cloud.test:8443",
    "DEB_URL": "https://cloud.test:8443/packages/camagent_0.1.0_all.deb",
    "DEB_SHA256": "ab" * 32,
    "WHEEL_URL": "",
    "WHEEL_SHA256": "",
    "KEYS_SHA256": "cd" * 32,
}
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    return path


def test_shellcheck_is_clean() -> None:
    done = subprocess.run(
        [need("shellcheck"), "--shell=sh", str(SCRIPT)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_no_shellcheck_directives() -> None:
    assert "shellcheck disable" not in repo_script()


@pytest.mark.parametrize("shell", ["dash", "sh"])
def test_syntax(shell: str) -> None:
    done = subprocess.run([need(shell), "-n", str(SCRIPT)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def test_rendered_script_is_clean_too(tmp_path: Path) -> None:
    rendered = tmp_path / "install.sh"
    rendered.write_text(render(repo_script(), FAKE_VALUES, FAKE_CA))
    done = subprocess.run(
        [need("shellcheck"), "--shell=sh", str(rendered)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, "")
    assert subprocess.run([need("dash"), "-n", str(rendered)]).returncode == 0


def test_main_is_called_on_the_last_line_only() -> None:
    lines = [line for line in repo_script().splitlines() if line.strip()]
    assert lines[-1] == 'main "$@"'
    assert lines[0] == "#!/bin/sh"
    # Nothing else runs at the top level: every other line is a comment, inside a
    # function, or the start/end of one.
    depth = 0
    for line in lines[:-1]:
        if re.fullmatch(r"[a-z_][a-z0-9_]*\(\) \{", line):
            depth += 1
        elif line == "}":
            depth -= 1
        else:
            assert depth > 0 or line.startswith("#"), f"top-level code: {line!r}"
    assert depth == 0


def test_the_mock_serves_the_one_stored_copy() -> None:
    """install.sh and the unit are stored once: the mock's static files are symlinks."""
    assert TEMPLATE_PATH.is_symlink()
    assert TEMPLATE_PATH.resolve() == SCRIPT.resolve()
    assert UNIT_PATH.is_symlink()
    assert UNIT_PATH.resolve() == (REPO_ROOT / "packaging" / "camagent.service").resolve()


def test_placeholders_are_plain_lines() -> None:
    text = repo_script()
    for name in VALUE_NAMES:
        assert re.search(rf'^\t{name}="@{name}@"$', text, re.MULTILINE), name
    assert re.search(r"^@CA_PEM@$", text, re.MULTILINE)
    assert re.search(r"^@CAMAGENT_UNIT@$", text, re.MULTILINE)


def embedded_unit(script: str) -> str:
    embedded = re.search(
        r"^unit_text\(\) \{\n\tcat <<'CAMAGENT_UNIT'\n(.*?)^CAMAGENT_UNIT$", script, re.S | re.M
    )
    assert embedded is not None
    return embedded.group(1)


def expected_venv_unit() -> str:
    """packaging/camagent.service with the venv's camagent and no Documentation=."""
    packaged = (REPO_ROOT / "packaging" / "camagent.service").read_text()
    return "".join(
        line.replace("ExecStart=/usr/bin/camagent ", "ExecStart=/opt/camagent/bin/camagent ")
        for line in packaged.splitlines(keepends=True)
        if not line.startswith("Documentation=")
    )


def test_the_unit_is_injected_from_the_packaged_unit() -> None:
    """As committed, install.sh holds a marker; the served script the package's unit."""
    assert embedded_unit(repo_script()) == "@CAMAGENT_UNIT@\n"
    unit = venv_unit((REPO_ROOT / "packaging" / "camagent.service").read_text())
    rendered = render(repo_script(), FAKE_VALUES, FAKE_CA, unit)
    assert embedded_unit(rendered) == expected_venv_unit()
    assert "LimitNOFILE=4096\n" in expected_venv_unit()


@pytest.mark.parametrize(
    "unit",
    [
        "[Service]\nExecStart=/bin/true\n",
        "[Service]\nExecStart=/usr/bin/camagent run\nExecStart=/usr/bin/camagent run\n",
        "[Service]\nExecStart=/usr/bin/camagent run\nCAMAGENT_UNIT\nrm -rf /\n",
    ],
    ids=["other-exec", "two-execs", "terminator"],
)
def test_a_unit_that_cannot_be_injected_is_refused(unit: str) -> None:
    with pytest.raises(TemplateError):
        venv_unit(unit)


# --- a download cut off anywhere runs nothing --------------------------------------------


def _assert_nothing_happened(box: Sandbox) -> None:
    assert box.calls() == []
    assert box.files() == []
    assert not list(box.base.glob("camagent-install.*"))


@pytest.mark.parametrize("rendered", [False, True], ids=["template", "served"])
def test_truncated_script_runs_nothing(tmp_path: Path, rendered: bool) -> None:
    need("dash")
    box = Sandbox(tmp_path / "box")
    write_standins(box.bin, (*NAMES, "curl", "sha256sum", "mktemp"))
    text = render(repo_script(), FAKE_VALUES, FAKE_CA) if rendered else repo_script()
    lines = text.splitlines(keepends=True)
    assert lines[-1] == 'main "$@"\n'
    for cut in range(len(lines)):  # every line, up to and without the last one
        box.run("".join(lines[:cut]), "--dry-run")
        box.run("".join(lines[:cut]), "--nvr")
    _assert_nothing_happened(box)


def test_cut_inside_the_last_line(tmp_path: Path) -> None:
    """Cut inside `main "$@"`: a syntax error or an unknown command, never a run.  The
    exception no last line can avoid is a cut right after `main` or `main ` (the call
    without its arguments); every other byte is covered here."""
    box = Sandbox(tmp_path / "box")
    write_standins(box.bin, (*NAMES, "curl", "sha256sum", "mktemp"))
    text = render(repo_script(), FAKE_VALUES, FAKE_CA)
    start = text.rindex('main "$@"')
    for end in range(start - 200, start + len('main "$@"')):
        if end in (start + len("main"), start + len("main ")):
            continue
        box.run(text[:end], "--dry-run")
    _assert_nothing_happened(box)


# --- options and refusals --------------------------------------------------------------------


def test_help(tmp_path: Path) -> None:
    result = Sandbox(tmp_path / "box").run(repo_script(), "--help")
    assert result.returncode == 0
    assert "--nvr" in result.stdout
    assert "--uninstall" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["extra"],
        ["--token"],
        ["--token", ""],
        ["--token=a b"],
        ["--cloud", "http://cloud.test"],
        ["--cloud", "https://cloud.test/$(reboot)"],
        ["--cloud", "https://user:secret@cloud.test"],
        ["--cloud", "user@cloud.test:8443/path"],
        ["--cloud=https://@cloud.test"],
        ["--token-file"],
        ["--token-file", "/nonexistent/token"],
        ["--token", "a", "--token-file", "/dev/null"],
        ["--purge"],
        ["--uninstall", "--nvr"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    box = Sandbox(tmp_path / "box")
    result = box.run(render(repo_script(), FAKE_VALUES, FAKE_CA), *args)
    assert result.returncode == 2, result.output
    assert result.stdout == ""
    assert "camagent-install:" in result.stderr
    assert "curl -fsSL <cloud>/install.sh" in result.stderr  # the usage text
    assert box.calls() == []


def test_unfilled_template_refuses(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "box")
    result = box.run(repo_script(), "--nvr")
    assert result.returncode == 1
    assert (
        "this script must be downloaded from a cloud: curl -fsSL <cloud>/install.sh | sh"
        in result.stderr
    )
    assert box.changing_calls() == []
    assert box.files() == []


def test_not_root_refuses(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "box")
    result = box.run(render(repo_script(), FAKE_VALUES, FAKE_CA), STANDIN_UID="1000")
    assert result.returncode == 1
    assert "must run as root" in result.stderr
    assert box.changing_calls() == []
    assert box.files() == []


def test_not_root_prints_a_root_one_liner_that_runs_as_printed(tmp_path: Path) -> None:
    """The same cloud, the cloud's CA for curl, these arguments, and the token kept
    through sudo."""
    box = Sandbox(tmp_path / "box")
    result = box.run(
        render(repo_script(), FAKE_VALUES, FAKE_CA),
        "--nvr",
        "--cloud",
        "https://other.test",
        STANDIN_UID="1000",
        CAMAGENT_TOKEN="secret-token",
    )
    assert result.returncode == 1
    hint = result.stderr.split("must run as root: ", 1)[1].strip()
    match = re.fullmatch(
        r"curl -fsSL --cacert (\S+) https://cloud\.test:8443/install\.sh \| "
        r"sudo --preserve-env=CAMAGENT_TOKEN sh -s -- --nvr --cloud https://other\.test",
        hint,
    )
    assert match, hint
    assert Path(match[1]).read_text() == FAKE_CA
    assert "secret-token" not in result.stderr
    assert box.files() == []


@pytest.mark.parametrize("arch", ["i686", "mips", "ppc64le"])
def test_unsupported_architecture(tmp_path: Path, arch: str) -> None:
    box = Sandbox(tmp_path / "box")
    result = box.run(render(repo_script(), FAKE_VALUES, FAKE_CA), STANDIN_ARCH=arch)
    assert result.returncode == 1
    assert f"this machine is {arch}" in result.stderr
    assert "x86_64, aarch64 and armv7l" in result.stderr
    assert box.changing_calls() == []


def test_no_package_for_this_distribution(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "box")
    box.os_release("fedora")
    result = box.run(render(repo_script(), FAKE_VALUES, FAKE_CA))
    assert result.returncode == 1
    assert "this cloud serves no package for Test fedora" in result.stderr
    assert box.changing_calls() == []


def test_venv_needs_python_311(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "box")
    box.os_release("alpine")
    # A PATH with the stand-ins, a few tools, and a python3 that is 3.9.
    tools = box.base / "tools"
    tools.mkdir()
    for tool in ("sed", "head", "tr", "sha256sum", "curl", "cat"):
        (tools / tool).symlink_to(need(tool))
    fake = tools / "python3"
    fake.write_text('#!/bin/sh\ncase "$2" in *print*) echo 3.9; exit 0 ;; esac\nexit 1\n')
    fake.chmod(0o755)
    values = {**FAKE_VALUES, "DEB_URL": "", "DEB_SHA256": ""}
    values["WHEEL_URL"] = "https://cloud.test:8443/packages/camagent-0.1.0-py3-none-any.whl"
    values["WHEEL_SHA256"] = "ef" * 32
    result = box.run(render(repo_script(), values, FAKE_CA), PATH=f"{box.bin}:{tools}")
    assert result.returncode == 1
    assert "python3 >= 3.11 is missing (python3 here is 3.9)" in result.stderr
    assert box.changing_calls() == []


def test_userinfo_in_cloud_is_refused_and_never_echoed(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "box")
    result = box.run(
        render(repo_script(), FAKE_VALUES, FAKE_CA), "--cloud", "https://me:hunter2@cloud.test"
    )
    assert result.returncode == 2
    assert "user name or password" in result.stderr
    assert "hunter2" not in result.output
    assert box.calls() == []


def test_token_from_two_places_is_refused(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "box")
    result = box.run(
        render(repo_script(), FAKE_VALUES, FAKE_CA), "--token", "abc", CAMAGENT_TOKEN="def"
    )
    assert result.returncode == 2
    assert "one way only" in result.stderr


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "box")
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = box.run(render(repo_script(), FAKE_VALUES, FAKE_CA), "--token-file", str(empty))
    assert result.returncode == 2
    assert "holds no token" in result.stderr
