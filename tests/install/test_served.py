"""The mock cloud serves install.sh and the packages; the served script run against it
with real curl and sha256sum, stand-ins for the package manager, systemd and camagent,
and CAMAGENT_INSTALL_ROOT for every file it writes."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from cloud_mock.installer import install_line
from cloud_mock.testing import MockCloud, mock_command, mock_env, running_mock_cloud
from tests.install.conftest import DEB_BYTES, DEB_NAME, WHEEL_NAME, fetch
from tests.install.standins import Sandbox

pytestmark = pytest.mark.e2e


def camera_token(jti: str) -> str:
    """Shaped like a token (payload.signature); only the camagent stand-in reads it."""
    payload = base64.urlsafe_b64encode(json.dumps({"jti": jti}).encode()).rstrip(b"=")
    return payload.decode() + ".c2lnbmF0dXJl"


def served_value(script: str, name: str) -> str:
    match = re.search(rf'^\t{name}="([^"]*)"$', script, re.MULTILINE)
    assert match, name
    return match.group(1)


def raw_get(cloud: MockCloud, path: str) -> int:
    """GET with the path exactly as given (no client-side normalisation of `..`)."""
    host, port = cloud.url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(cloud.ca_file))
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# --- what the mock serves ----------------------------------------------------------------


def test_install_sh_is_filled_in(cloud: MockCloud, packages: Path) -> None:
    status, headers, body = fetch(cloud, "/install.sh")
    assert status == 200
    assert headers["Content-Type"].startswith("text/x-shellscript")
    script = body.decode()
    assert "@" + "CLOUD_URL@" not in script
    assert "@CA_PEM@" not in script
    assert served_value(script, "CLOUD_URL") == cloud.url
    assert served_value(script, "DEB_URL") == f"{cloud.url}/packages/{DEB_NAME}"
    assert served_value(script, "DEB_SHA256") == hashlib.sha256(DEB_BYTES).hexdigest()
    assert served_value(script, "WHEEL_URL") == f"{cloud.url}/packages/{WHEEL_NAME}"
    wheel = (packages / WHEEL_NAME).read_bytes()
    assert served_value(script, "WHEEL_SHA256") == hashlib.sha256(wheel).hexdigest()
    keys = cloud.signing_key_file.read_bytes()
    assert served_value(script, "KEYS_SHA256") == hashlib.sha256(keys).hexdigest()
    ca = cloud.ca_file.read_text()
    assert f"<<'CAMAGENT_CA_PEM'\n{ca}CAMAGENT_CA_PEM\n" in script
    assert script.rstrip("\n").endswith('\nmain "$@"')


def test_packages_are_served(cloud: MockCloud, packages: Path) -> None:
    status, headers, body = fetch(cloud, f"/packages/{DEB_NAME}")
    assert (status, body) == (200, DEB_BYTES)
    assert headers["Content-Type"] == "application/vnd.debian.binary-package"
    status, _, body = fetch(cloud, f"/packages/{WHEEL_NAME}")
    assert (status, body) == (200, (packages / WHEEL_NAME).read_bytes())


@pytest.mark.parametrize(
    "path",
    [
        "/packages/../url",
        "/packages/..%2Furl",
        "/packages/%2e%2e%2furl",
        "/packages/..%2F..%2Fetc%2Fpasswd",
        "/packages/%2Fetc%2Fpasswd",
        "/packages/.hidden",
        "/packages/sub",
        "/packages/sub/file.deb",
        "/packages/outside.deb",
        "/packages/",
        "/packages/missing_0.1.0_all.deb",
    ],
)
def test_packages_serve_nothing_else(cloud: MockCloud, packages: Path, path: str) -> None:
    (packages / ".hidden").write_text("secret")
    (packages / "sub").mkdir(exist_ok=True)
    (packages / "sub" / "file.deb").write_text("in a subdirectory")
    link = packages / "outside.deb"
    if not link.is_symlink():
        link.symlink_to(cloud.data_dir / "admin-password")
    assert raw_get(cloud, path) == 404


def test_wizard_one_liner_points_to_install_sh(cloud: MockCloud) -> None:
    session = cloud.login()
    registrator = cloud.add_registrator(session, "Server room")
    status, answer = cloud.request(
        "GET", f"/v1/registrators/{registrator['id']}/installation", session=session
    )
    assert status == 200
    assert answer["one_liner"] == (
        f"curl -fsSL --cacert {cloud.data_dir / 'ca.pem'} {cloud.url}/install.sh | sh -s -- --nvr"
    )
    assert answer["one_liner"] == install_line(cloud.url, cloud.data_dir, "--nvr")


def in_sandbox(
    sandbox: Sandbox, argv: list[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`argv` as a person runs it on the sandboxed machine (its commands, its root)."""
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        env=sandbox.env(),
        cwd=sandbox.base,
        timeout=120,
        check=False,
    )


def test_the_wizards_line_works_as_printed(cloud: MockCloud, sandbox: Sandbox) -> None:
    """Pasted into a shell on the mock's machine (with --dry-run added): the private CA
    is trusted through --cacert, the script runs and verifies the package and the key."""
    line = install_line(cloud.url, cloud.data_dir, "--nvr", "--dry-run")
    done = in_sandbox(sandbox, ["sh", "-c", line])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{DEB_NAME}: SHA-256 verified" in done.stdout
    assert "dry run: nothing was changed" in done.stdout
    # Without --cacert the same line fetches nothing: the hint is needed.
    bare = line.replace(f"--cacert {cloud.data_dir / 'ca.pem'} ", "")
    assert bare != line
    failed = in_sandbox(sandbox, ["sh", "-c", bare])
    assert "SHA-256 verified" not in failed.stdout
    assert "curl: (60)" in failed.stderr


def test_without_packages(tmp_path: Path) -> None:
    with running_mock_cloud(tmp_path / "cloud") as bare:
        status, _, body = fetch(bare, "/install.sh")
        assert status == 200
        script = body.decode()
        assert served_value(script, "DEB_URL") == ""
        assert served_value(script, "WHEEL_URL") == ""
        assert served_value(script, "CLOUD_URL") == bare.url
        assert fetch(bare, f"/packages/{DEB_NAME}")[0] == 404
        box = Sandbox(tmp_path / "box")
        result = box.run(script, "--nvr")
        assert result.returncode == 1
        assert "this cloud serves no package" in result.stderr
        assert box.changing_calls() == []
        assert box.files() == []


def test_packages_dir_must_exist(tmp_path: Path) -> None:
    command = [*mock_command(tmp_path / "cloud"), "--packages", str(tmp_path / "nope")]
    done = subprocess.run(command, capture_output=True, text=True, env=mock_env(), timeout=60)
    assert done.returncode == 1
    assert "--packages" in done.stderr
    assert "not a directory" in done.stderr


# --- running the served script --------------------------------------------------------------


def test_dry_run_changes_nothing(cloud: MockCloud, script: str, sandbox: Sandbox) -> None:
    result = sandbox.run(script, "--nvr", "--dry-run", CAMAGENT_TOKEN="rt_secret")
    assert result.returncode == 0, result.output
    assert "warning" not in result.stderr
    assert sandbox.changing_calls() == []
    assert sandbox.files() == []
    out = result.stdout
    assert f"{DEB_NAME}: SHA-256 verified" in out
    assert "token-signing key verified" in out
    assert "would run: apt-get install -y" in out
    assert DEB_NAME in out
    assert "would write /etc/camagent/agent.toml" in out
    assert 'kind = "nvr"' in out
    assert "would run: systemctl enable --now camagent" in out
    assert "would run: camagent nvr register --token-file - with the token on its standard" in out
    assert "rt_secret" not in result.output
    assert "dry run: nothing was changed" in out
    assert not list(sandbox.base.glob("camagent-install.*")), "temporary directory left"


def test_dry_run_as_a_user(script: str, sandbox: Sandbox) -> None:
    result = sandbox.run(script, "--dry-run", STANDIN_UID="1000")
    assert result.returncode == 0, result.output
    assert "a real run needs root" in result.stderr
    assert sandbox.changing_calls() == []


def test_install_camera_then_again(cloud: MockCloud, script: str, sandbox: Sandbox) -> None:
    result = sandbox.run(script)
    assert result.returncode == 0, result.output
    etc = sandbox.root / "etc" / "camagent"
    calls = sandbox.changing_calls()
    installs = [c for c in calls if c[:2] == ["apt-get", "install"]]
    assert len(installs) == 1
    assert installs[0][-1].endswith("/" + DEB_NAME)
    assert ["apt-get", "update", "-q"] not in calls  # the dependencies are there
    # The package's postinst started the service with its own config: restart with ours.
    assert ["systemctl", "restart", "camagent"] in calls
    assert (etc / "ca.pem").read_bytes() == cloud.ca_file.read_bytes()
    assert (etc / "cloud-keys.pem").read_bytes() == cloud.signing_key_file.read_bytes()
    config = (etc / "agent.toml").read_text()
    assert 'kind = "camera"' in config
    assert f'url = "{cloud.url}"' in config
    assert 'ca_file = "/etc/camagent/ca.pem"' in config
    assert 'trust_keys = ["/etc/camagent/cloud-keys.pem"]' in config
    for name in ("agent.toml", "ca.pem", "cloud-keys.pem"):
        assert (etc / name).stat().st_mode & 0o777 == 0o644
    assert ["camagent", "--config", str(etc / "agent.toml"), "status"] in sandbox.calls()
    assert "state  provisioning" in result.stdout

    # The config the script writes is one the agent accepts.
    from agent import config as config_mod

    parsed = config_mod.parse(config, "agent.toml")
    assert (parsed.device.kind, parsed.cloud.url) == ("camera", cloud.url)

    sandbox.clear_calls()
    files = {p: p.stat().st_mtime_ns for p in etc.iterdir()}
    again = sandbox.run(script)
    assert again.returncode == 0, again.output
    assert sandbox.changing_calls() == [["camagent", "--config", str(etc / "agent.toml"), "status"]]
    assert {p: p.stat().st_mtime_ns for p in etc.iterdir()} == files
    assert "camagent 0.1.0 is installed already: not reinstalling" in again.stdout
    assert "/etc/camagent/agent.toml is up to date" in again.stdout
    assert "not restarting it" in again.stdout
    assert "nothing changed" in again.stdout


def test_package_lists_refreshed_when_needed(script: str, sandbox: Sandbox) -> None:
    result = sandbox.run(script, STANDIN_APT_NEEDS_UPDATE="1")
    assert result.returncode == 0, result.output
    apt = [c[:2] for c in sandbox.calls() if c[0] == "apt-get"]
    assert apt == [["apt-get", "install"], ["apt-get", "update"], ["apt-get", "install"]]
    assert "refreshing the package lists" in result.stdout


def test_nvr_then_camera_keeps_a_backup(script: str, sandbox: Sandbox) -> None:
    assert sandbox.run(script).returncode == 0
    sandbox.clear_calls()
    result = sandbox.run(script, "--nvr")
    assert result.returncode == 0, result.output
    etc = sandbox.root / "etc" / "camagent"
    assert 'kind = "nvr"' in (etc / "agent.toml").read_text()
    (backup,) = etc.glob("agent.toml.bak-*")
    assert 'kind = "camera"' in backup.read_text()
    assert sandbox.changing_calls()[0] == ["systemctl", "restart", "camagent"]
    assert "Activation code:  ABCD-EFGH-JKLM" in result.stdout
    assert [c[3:] for c in sandbox.calls() if c[0] == "camagent"][-1] == ["nvr", "code"]
    # Again: same config, no restart, the code is shown again.
    sandbox.clear_calls()
    again = sandbox.run(script, "--nvr")
    assert again.returncode == 0, again.output
    assert not [c for c in sandbox.changing_calls() if c[0] != "camagent"]
    assert "Activation code:" in again.stdout
    assert len(list(etc.glob("agent.toml.bak-*"))) == 1


def test_nvr_with_registration_token(script: str, sandbox: Sandbox) -> None:
    result = sandbox.run(script, "--nvr", CAMAGENT_TOKEN="rt_abc123")
    assert result.returncode == 0, result.output
    register = [c for c in sandbox.calls() if c[0] == "camagent" and c[3:5] == ["nvr", "register"]]
    # On camagent's standard input, never on its command line.
    assert [c[3:] for c in register] == [["nvr", "register", "--token-file", "-"]]
    assert sandbox.token_jti() == "from-rt_abc123"
    assert not [c for c in sandbox.calls() if any("rt_abc123" in arg for arg in c)]
    assert "rt_abc123" not in result.output
    assert "connected to" in result.stdout
    sandbox.clear_calls()
    again = sandbox.run(script, "--nvr", CAMAGENT_TOKEN="rt_abc123")
    assert again.returncode == 0, again.output
    assert "linked to the cloud already" in again.stdout
    assert not [c for c in sandbox.calls() if c[3:5] == ["nvr", "register"]]


def test_camera_with_token(script: str, sandbox: Sandbox, tmp_path: Path) -> None:
    token = camera_token("jti-1")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    result = sandbox.run(script, "--token-file", str(token_file))
    assert result.returncode == 0, result.output
    assert "warning" not in result.stderr
    assert [c[3:] for c in sandbox.calls() if c[3:5] == ["token", "set"]] == [
        ["token", "set", "--token-file", "-"]
    ]
    assert sandbox.token_jti() == "jti-1"
    assert "state  connected" in result.stdout
    sandbox.clear_calls()
    again = sandbox.run(script, CAMAGENT_TOKEN=token)
    assert again.returncode == 0
    assert "the device uses this token already" in again.stdout
    assert not [c for c in sandbox.changing_calls() if c[3:4] != ["status"]]
    # A different token replaces it; on the command line it still works, with a warning.
    sandbox.clear_calls()
    other = camera_token("jti-2")
    deprecated = sandbox.run(script, "--token", other)
    assert deprecated.returncode == 0
    assert "warning: --token puts the token on the command line" in deprecated.stderr
    assert other not in deprecated.output
    assert sandbox.token_jti() == "jti-2"
    assert not [c for c in sandbox.calls() if any(other in arg for arg in c)]


@pytest.mark.parametrize("nvr", [False, True], ids=["camera", "nvr"])
def test_the_token_reaches_camagent_on_its_standard_input_only(
    script: str, sandbox: Sandbox, nvr: bool
) -> None:
    token = "rt_on_stdin" if nvr else camera_token("jti-stdin-camagent")
    result = sandbox.run(script, *(["--nvr"] if nvr else []), CAMAGENT_TOKEN=token)
    assert result.returncode == 0, result.output
    words = ["nvr", "register"] if nvr else ["token", "set"]
    given = [c[3:] for c in sandbox.calls() if c[0] == "camagent" and c[3:5] == words]
    assert given == [[*words, "--token-file", "-"]]
    assert sandbox.token_jti() == ("from-rt_on_stdin" if nvr else "jti-stdin-camagent")
    assert not [c for c in sandbox.calls() if any(token in arg for arg in c)]
    assert "connected to" in result.stdout if nvr else "state  connected" in result.stdout


@pytest.mark.parametrize("nvr", [False, True], ids=["camera", "nvr"])
def test_a_camagent_that_takes_the_token_only_as_an_argument_never_gets_it(
    script: str, sandbox: Sandbox, nvr: bool
) -> None:
    """An older camagent (no --token-file): the token would be on its command line, which
    every local user can read; the script stops instead, and says why."""
    token = "rt_argv_only" if nvr else camera_token("jti-argv-only")
    result = sandbox.run(
        script, *(["--nvr"] if nvr else []), CAMAGENT_TOKEN=token, STANDIN_ARGV_ONLY="1"
    )
    assert result.returncode == 1, result.output
    assert "takes the token only on its command line" in result.stderr
    assert "/proc/PID/cmdline" in result.stderr
    words = ["nvr", "register"] if nvr else ["token", "set"]
    assert not [c for c in sandbox.calls() if c[0] == "camagent" and c[3:5] == words]
    assert not [c for c in sandbox.calls() if any(token in arg for arg in c)]
    assert sandbox.token_jti() is None
    assert token not in result.output


def test_token_on_standard_input(script: str, sandbox: Sandbox, tmp_path: Path) -> None:
    """`sh install.sh --token-file - < file`: the script saved first, the token on stdin."""
    saved = tmp_path / "install.sh"
    saved.write_text(script)
    token = camera_token("jti-stdin")
    done = in_sandbox(sandbox, ["dash", str(saved), "--token-file", "-"], stdin=token + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [c[3:] for c in sandbox.calls() if c[3:5] == ["token", "set"]] == [
        ["token", "set", "--token-file", "-"]
    ]
    assert sandbox.token_jti() == "jti-stdin"


def test_the_served_unit_is_the_packaged_unit(script: str) -> None:
    """What a venv install writes is packaging/camagent.service, injected when served."""
    from tests.install.test_script_static import embedded_unit, expected_venv_unit

    assert embedded_unit(script) == expected_venv_unit()


def test_service_that_never_starts(script: str, sandbox: Sandbox) -> None:
    result = sandbox.run(script, STANDIN_NEVER_ACTIVE="1", CAMAGENT_INSTALL_WAIT="1")
    assert result.returncode == 1
    assert "is not active after 1 s" in result.stderr
    assert "journalctl -u camagent" in result.stderr


def test_cloud_option_same_cloud(cloud: MockCloud, script: str, sandbox: Sandbox) -> None:
    result = sandbox.run(script, "--nvr", "--cloud", cloud.url + "/")
    assert result.returncode == 0, result.output
    config = (sandbox.root / "etc" / "camagent" / "agent.toml").read_text()
    assert f'url = "{cloud.url}"' in config


def test_cloud_option_other_cloud_refused(script: str, sandbox: Sandbox, tmp_path: Path) -> None:
    """Another cloud must present the pinned key; this one (another mock) does not."""
    with running_mock_cloud(tmp_path / "other") as other:
        # The other mock has its own CA: trust it too, so that the key is what fails.
        tampered = script.replace(
            "CAMAGENT_CA_PEM\n}", other.ca_file.read_text() + "CAMAGENT_CA_PEM\n}", 1
        )
        result = sandbox.run(tampered, "--cloud", other.url)
    assert result.returncode == 1, result.output
    assert "is not the one this script pins" in result.stderr
    assert sandbox.changing_calls() == []
    assert sandbox.files() == []


# --- refusals -------------------------------------------------------------------------------


def test_package_with_wrong_sha256_is_refused(
    cloud: MockCloud, packages: Path, script: str, sandbox: Sandbox
) -> None:
    deb = packages / DEB_NAME
    deb.write_bytes(DEB_BYTES + b"tampered")
    try:
        result = sandbox.run(script)
    finally:
        deb.write_bytes(DEB_BYTES)
    assert result.returncode == 1
    assert f"{DEB_NAME} has SHA-256" in result.stderr
    assert "refusing to install" in result.stderr
    assert sandbox.changing_calls() == []
    assert sandbox.files() == []
    assert not list(sandbox.base.glob("camagent-install.*"))


def test_keys_mismatch_is_refused(script: str, sandbox: Sandbox) -> None:
    pinned = served_value(script, "KEYS_SHA256")
    tampered = script.replace(f'KEYS_SHA256="{pinned}"', f'KEYS_SHA256="{"0" * 64}"')
    result = sandbox.run(tampered)
    assert result.returncode == 1
    assert "is not the one this script pins" in result.stderr
    assert sandbox.changing_calls() == []
    assert sandbox.files() == []


def test_untrusted_ca_is_refused(script: str, sandbox: Sandbox, tmp_path: Path) -> None:
    with running_mock_cloud(tmp_path / "other") as other:
        foreign = re.sub(
            r"(<<'CAMAGENT_CA_PEM'\n).*?(CAMAGENT_CA_PEM\n)",
            lambda m: m.group(1) + other.ca_file.read_text() + m.group(2),
            script,
            flags=re.S,
        )
        result = sandbox.run(foreign)
    assert result.returncode == 1
    assert "cannot download" in result.stderr
    assert sandbox.changing_calls() == []
    assert sandbox.files() == []


def test_keys_parsed_without_python(script: str, sandbox: Sandbox) -> None:
    """A minimal Debian has no python3 before the package brings it: the pin still holds."""
    broken = sandbox.bin / "python3"
    broken.write_text("#!/bin/sh\nexit 127\n")
    broken.chmod(0o755)
    result = sandbox.run(script, "--dry-run")
    assert result.returncode == 0, result.output
    assert "token-signing key verified" in result.stdout
    tampered = script.replace(
        f'KEYS_SHA256="{served_value(script, "KEYS_SHA256")}"', f'KEYS_SHA256="{"1" * 64}"'
    )
    assert sandbox.run(tampered, "--dry-run").returncode == 1


# --- uninstall --------------------------------------------------------------------------------


def test_uninstall(script: str, sandbox: Sandbox) -> None:
    nothing = sandbox.run(script, "--uninstall")
    assert nothing.returncode == 0
    assert "not installed: nothing to do" in nothing.stdout
    assert sandbox.changing_calls() == []

    assert sandbox.run(script, "--nvr").returncode == 0
    sandbox.clear_calls()
    dry = sandbox.run(script, "--uninstall", "--purge", "--dry-run")
    assert dry.returncode == 0
    assert sandbox.changing_calls() == []
    assert "would run: apt-get purge -y -q -o Dpkg::Use-Pty=0 camagent" in dry.stdout

    result = sandbox.run(script, "--uninstall")
    assert result.returncode == 0, result.output
    assert sandbox.changing_calls() == [
        ["systemctl", "stop", "camagent"],
        ["systemctl", "disable", "camagent"],
        ["apt-get", "remove", "-y", "-q", "-o", "Dpkg::Use-Pty=0", "camagent"],
    ]
    assert (sandbox.root / "etc" / "camagent" / "agent.toml").exists()
    assert "are kept" in result.stdout

    sandbox.clear_calls()
    again = sandbox.run(script, "--uninstall")
    assert again.returncode == 0
    assert "nothing to do" in again.stdout

    purge = sandbox.run(script, "--uninstall", "--purge")
    assert purge.returncode == 0
    assert not (sandbox.root / "etc" / "camagent").exists()


# --- the venv path (not Debian): real python3 -m venv and pip, a stand-in wheel -----------


@pytest.mark.timeout(300)
def test_venv_install_again_and_uninstall(script: str, sandbox: Sandbox) -> None:
    if shutil.which("python3") is None:
        pytest.skip("no python3")
    sandbox.os_release("fedora", like="rhel centos")
    token = camera_token("jti-venv")
    result = sandbox.run(script, CAMAGENT_TOKEN=token)
    assert result.returncode == 0, result.output
    venv = sandbox.root / "opt" / "camagent"
    assert (venv / "bin" / "camagent").exists()
    # The distribution's libraries count (see install_venv): the .deb's footprint.
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (sandbox.root / "usr" / "local" / "bin" / "camagent").readlink() == Path(
        "/opt/camagent/bin/camagent"
    )
    unit = (sandbox.root / "etc" / "systemd" / "system" / "camagent.service").read_text()
    assert "ExecStart=/opt/camagent/bin/camagent --config /etc/camagent/agent.toml run" in unit
    calls = sandbox.changing_calls()
    assert calls[0][0] == "useradd"
    assert calls[0][-1] == "camagent"
    assert ["systemctl", "daemon-reload"] in calls
    assert ["systemctl", "enable", "--now", "camagent"] in calls
    assert not [c for c in calls if c[0] in ("apt-get", "dpkg")]
    # camagent here is the wheel's, installed into the venv by pip: it got the token, on
    # its standard input.
    assert [c[3:] for c in calls if c[3:5] == ["token", "set"]] == [
        ["token", "set", "--token-file", "-"]
    ]
    assert sandbox.token_jti() == "jti-venv"
    assert "state  connected" in result.stdout

    sandbox.clear_calls()
    again = sandbox.run(script, CAMAGENT_TOKEN=token)
    assert again.returncode == 0, again.output
    assert "installed in /opt/camagent already" in again.stdout
    assert not [c for c in sandbox.changing_calls() if c[0] != "camagent"]
    assert "nothing changed" in again.stdout

    sandbox.clear_calls()
    gone = sandbox.run(script, "--uninstall", "--purge")
    assert gone.returncode == 0, gone.output
    assert not venv.exists()
    assert not (sandbox.root / "etc" / "systemd" / "system" / "camagent.service").exists()
    assert not (sandbox.root / "etc" / "camagent").exists()
    assert ["systemctl", "stop", "camagent"] in sandbox.calls()
