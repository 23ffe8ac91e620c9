"""The CLI against a running daemon and without one; bad input never loses state."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.token_codec import parse_claims, sign_token
from agent.trust import PLAIN_REFUSED
from cloud_mock import sandbox
from tests.agent.tokens import sealed
from tests.e2e.conftest import AddCamera, Fleet, RunCli, polls
from tests.eventually import eventually

pytestmark = pytest.mark.e2e


def _forge(token: str) -> str:
    """Same claims, signed by a key nobody trusts."""
    claims = parse_claims(token)
    payload = {k: getattr(claims, k) for k in ("v", "sub", "kind", "org", "api", "iat", "jti")}
    return sign_token(payload, Ed25519PrivateKey.generate())


def _label_password(config: Path) -> str:
    """The password on the device's label (the sandbox writes it beside agent.toml)."""
    return (config.parent / "password").read_text().strip()


Connected = tuple[Path, str, dict[str, Any], sandbox.Agent]  # config, device id, camera, agent


@pytest.fixture
def connected(fleet: Fleet, add_camera: AddCamera) -> Connected:
    config, device_id, password = fleet.configure()
    camera = add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    return config, device_id, camera, agent


def test_status_json_from_the_running_daemon(connected: Connected, run_cli: RunCli) -> None:
    config, device_id, camera, _ = connected
    result = run_cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["device_id"] == device_id
    assert status["state"] == "connected"
    assert status["token"]["present"] is True
    assert status["token"]["jti"] == parse_claims(camera["token"]).jti
    assert status["provisioning"] == {
        "attempts": 0,
        "phase": "off",
        "next_poll_in": None,
        "last_attempt": 1,
        "last_result": "token received",
        "last_at": status["provisioning"]["last_at"],
    }
    human = run_cli(config, "status")
    assert "connected" in human.stdout
    assert device_id in human.stdout


@pytest.mark.parametrize("bad", ["garbage", "a.b", "", "x" * 9000])
def test_garbage_token_is_refused_and_nothing_is_lost(
    connected: Connected, run_cli: RunCli, bad: str
) -> None:
    config, _, camera, agent = connected
    result = run_cli(config, "token", "set", bad)
    assert result.returncode == 1
    assert result.stderr.startswith("camagent: ")
    assert "Traceback" not in result.stderr
    assert agent.status()["state"] == "connected"
    assert agent.status()["token"]["jti"] == parse_claims(camera["token"]).jti


def test_forged_foreign_device_and_foreign_cloud_tokens_are_refused(
    connected: Connected, run_cli: RunCli, add_camera: AddCamera, cloud: sandbox.Cloud
) -> None:
    config, device_id, camera, agent = connected
    password = _label_password(config)

    def token_set(text: str) -> subprocess.CompletedProcess[str]:
        return run_cli(config, "token", "set", input=text + "\n")

    # Sealed for this camera's label (docs/design.md §2.9): each is refused for what it says.
    forged = token_set(sealed(_forge(camera["token"]), password, device_id))
    assert forged.returncode == 1
    assert "signature" in forged.stderr

    other = add_camera("02:99:99:99:99:99", "other-password")
    foreign = token_set(sealed(other["token"], password, device_id))
    assert foreign.returncode == 1
    assert "02:99:99:99:99:99" in foreign.stderr
    # As the cloud hands the other camera's token out, it does not even open here.
    foreign_card = token_set(other["sealed_token"])
    assert foreign_card.returncode == 1
    assert "does not open with this device's key" in foreign_card.stderr
    # This camera's own token, plain: refused for how it came, whoever holds it.
    plain = token_set(camera["token"])
    assert plain.returncode == 1
    assert plain.stderr == f"camagent: {PLAIN_REFUSED}\n"

    # A device that trusts another cloud URL refuses tokens naming this one.
    elsewhere = config.parent / "elsewhere.toml"
    # Its own run directory (not the running daemon's socket: that daemon would answer),
    # short enough for a socket even under pytest-xdist's deep temporary directories.
    run_elsewhere = sandbox.short_run_dir(config.parent / "elsewhere")
    elsewhere.write_text(
        re.sub(
            r"(?m)^run_dir = .*$",
            f'run_dir = "{run_elsewhere}"',
            config.read_text().replace(cloud.url, cloud.url.replace("127.0.0.1", "localhost")),
        ).replace('/state"', '/state-elsewhere"')
    )
    refused = run_cli(elsewhere, "token", "set", input=camera["sealed_token"])
    assert refused.returncode == 1
    assert "trusts only" in refused.stderr
    assert agent.status()["token"]["jti"] == parse_claims(camera["token"]).jti


def test_forced_token_change_makes_no_poll_and_reconnects(
    fleet: Fleet, run_cli: RunCli, add_camera: AddCamera, cloud: sandbox.Cloud, session: str
) -> None:
    # A poll at start and right after a revocation, then none for ten minutes: the token
    # the owner adds later can only come by CLI.
    config, device_id, password = fleet.configure(fast_interval=600.0, long_poll=0.0)
    camera = add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    # The owner deletes the camera and adds it again (a new token); the installer sets it
    # by CLI, sealed for the camera's label as the cloud answers it (docs/design.md §2.9).
    _status, _ = cloud.request("DELETE", f"/v1/cameras/{camera['camera_id']}", session=session)
    agent.wait_for_state("provisioning", timeout=5)
    eventually(
        lambda: polls(cloud, device_id),
        until=lambda seen: len(seen) == 2,
        what="the poll right after the revocation",
    )
    new = add_camera(device_id, password)
    plain = run_cli(config, "token", "set", input=new["token"])
    assert plain.returncode == 1
    assert PLAIN_REFUSED in plain.stderr
    result = run_cli(config, "token", "set", input=new["sealed_token"])
    assert result.returncode == 0, result.stderr
    agent.wait_for_state("connected")
    assert agent.status()["token"]["jti"] == parse_claims(new["token"]).jti
    assert len(polls(cloud, device_id)) == 2  # no poll brought it


def test_offline_reset_and_token_set_change_the_state_under_lock(
    fleet: Fleet, add_camera: AddCamera, run_cli: RunCli
) -> None:
    config, device_id, password = fleet.configure()
    camera = add_camera(device_id, password)
    result = run_cli(config, "token", "set", input=camera["sealed_token"])
    assert result.returncode == 0, result.stderr
    assert "when the daemon starts" in result.stdout
    status = json.loads(run_cli(config, "status", "--json").stdout)
    assert status["daemon"] is False
    assert status["token"]["present"] is True

    agent = fleet.start(config)
    agent.wait_for_state("connected")
    assert agent.stop() == 0
    assert run_cli(config, "reset").returncode == 0
    status = json.loads(run_cli(config, "status", "--json").stdout)
    assert status["token"] == {"present": False}


def test_poll_now_restarts_the_fast_phase(fleet: Fleet, run_cli: RunCli) -> None:
    # The fast phase lasts 3 x 0.8 s: long enough to be seen by `status` after the
    # CLI returns on a loaded machine (0.3 s was not).
    config, _, _ = fleet.configure(
        fast_interval=0.8, fast_attempts=3, slow_interval=30, long_poll=0.0
    )
    agent = fleet.start(config)
    prov = eventually(
        lambda: agent.status()["provisioning"],
        until=lambda prov: prov["phase"] == "slow",
        timeout=10,
        what="the slow phase",
    )
    assert prov["next_poll_in"] > 20
    result = run_cli(config, "poll-now")
    assert result.returncode == 0, result.stderr
    prov = eventually(
        lambda: agent.status()["provisioning"],
        until=lambda prov: prov["phase"] == "fast",
        timeout=5,
        what="the fast phase after poll-now",
    )
    assert prov["next_poll_in"] < 1


def test_poll_now_without_daemon_and_usage_errors(
    fleet: Fleet, run_cli: RunCli, tmp_path: Path
) -> None:
    config, _, _ = fleet.configure()
    result = run_cli(config, "poll-now")
    assert result.returncode == 1
    assert "no camagent daemon is running" in result.stderr
    assert run_cli(config, "frobnicate").returncode == 2
    assert run_cli(config).returncode == 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[device\nid=", "not valid TOML"),
        ('[provisioning]\nfast_interval = "soon"\n', "provisioning.fast_interval"),
        ("[provisioning]\nslow_jitter = 0.9\n", "provisioning.slow_jitter"),
        ('[cloud]\nurl = "http://insecure"\n', "cloud.url"),
        ("[camera]\nid = 1\n", "unknown section [camera]"),
    ],
)
def test_broken_config_gives_a_clear_error(
    tmp_path: Path, run_cli: RunCli, text: str, words: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    result = run_cli(path, "run")
    assert result.returncode == 1
    assert words in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_config_from_environment_variable(fleet: Fleet, run_cli: RunCli) -> None:
    import os

    config, device_id, _ = fleet.configure()
    result = run_cli(None, "status", "--json", env={**os.environ, "CAMAGENT_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["device_id"] == device_id


def test_doctor_passes_against_the_cloud_and_names_a_tls_problem(
    connected: Connected, run_cli: RunCli, tmp_path: Path
) -> None:
    config, _, _, _ = connected
    result = run_cli(config, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("config", "state", "dns", "tls", "clock", "daemon"):
        assert name in result.stdout
    untrusting = tmp_path / "no-ca.toml"
    untrusting.write_text(
        "\n".join(
            line for line in config.read_text().splitlines() if not line.startswith("ca_file")
        )
    )
    result = run_cli(untrusting, "doctor", "--json")
    assert result.returncode == 1
    tls = next(c for c in json.loads(result.stdout) if c["name"] == "tls")
    assert tls["status"] == "fail"
    assert "ca_file" in tls["fix"]


# -- no traceback from any command, in any condition ------------------------------------------
#
# Every command the parser knows (walked, so a new one is covered without editing this
# list) runs as a real subprocess: with stdin at end of input; with stdout closed before it
# writes; interrupted (SIGINT, as Ctrl-C sends) once it blocks; given Ctrl-D on a terminal
# when it blocks reading one; and, as an unprivileged user, with the config or the state
# and run directories out of reach. The cloud is a closed port, so nothing waits long.

ALLOWED_EXITS = {0, 1, 2, 130}
RUN_LIMIT_S = 6.0  # a command still running then (the daemon, the demo) gets Ctrl-C
# One Ctrl-C must end it: the bound says "ended", not "quickly" (six demos stopping at
# once on a busy machine take tens of seconds; a missed Ctrl-C never ends).
STOP_LIMIT_S = 90.0
NOBODY = 65534


def _leaf_commands() -> list[tuple[str, ...]]:
    import argparse

    from agent.cli import build_parser, walk_commands

    leaves = []
    for path, parser, _help in walk_commands(build_parser()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or not subs[0].required:
            leaves.append(path)
    return leaves


def _argv_for(path: tuple[str, ...], workdir: Path) -> list[str]:
    """The command with its required arguments filled in, pointing at nothing that answers."""
    import argparse

    from agent.cli import build_parser, walk_commands

    parser = next(p for words, p, _ in walk_commands(build_parser()) if words == path)
    values = {
        "device": "127.0.0.1:9",
        "sources": str(workdir / "missing.png"),
        "url": "https://127.0.0.1:9/x",
        "token": "a.b",
        "device_id": "cam-1",
        "password_file": str(workdir / "label-password"),
        "ssid": "net",
        "profile": "nowhere",
        "name": "nowhere",
    }
    argv = list(path)
    chosen = {
        group._group_actions[0].dest
        for group in parser._mutually_exclusive_groups
        if group.required
    }
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        value = values.get(action.dest, "x")
        if not action.option_strings:
            if action.nargs not in ("?", "*"):
                argv.append(value)
        elif action.required or action.dest in chosen:
            argv += [action.option_strings[0], value]
    quick = {"timeout": "0.3", "scan_timeout": "0.3"}
    for action in parser._actions:
        if action.dest in quick and action.option_strings:
            argv += [action.option_strings[0], quick[action.dest]]
    return argv


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def _wait_blocked_or_done(process: Any, limit: float) -> bool:
    """True once the process sleeps (waits for input, the network or a child) three
    samples in a row; False if it exits first or the limit passes."""
    deadline = time.monotonic() + limit
    sleeping = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        sleeping = sleeping + 1 if _state(process.pid) == "S" else 0
        if sleeping >= 3:
            return True
        time.sleep(0.03)  # time is the subject: samples 30 ms apart, so "sleeping" is steady
    return False


def _run_condition(
    argv: list[str], condition: str, env: dict[str, str], cwd: Path
) -> tuple[int, str]:
    import os
    import pty
    import signal
    import subprocess
    import sys

    err_path = cwd / f"stderr-{condition}-{os.getpid()}-{time.monotonic_ns()}"
    kwargs: dict[str, Any] = {"env": env, "cwd": cwd, "start_new_session": True}
    master = slave = read_end = write_end = None
    if condition in ("ctrl-c", "ctrl-d"):
        master, slave = pty.openpty()
        kwargs.update(stdin=slave, stdout=slave)
    elif condition == "epipe":
        read_end, write_end = os.pipe()
        os.close(read_end)
        kwargs.update(stdin=subprocess.DEVNULL, stdout=write_end)
    else:
        kwargs.update(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    prefix = []
    if condition.startswith("perm") and os.geteuid() == 0:
        # root is refused nothing: drop the capabilities that override file modes, so the
        # files owned by another user (and the interpreter under /root still ours) behave
        # as for an unprivileged user.
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    with open(err_path, "w+b") as stderr:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "agent", *argv], stderr=stderr, **kwargs
        )
        for fd in (slave, write_end):
            if fd is not None:
                os.close(fd)
        output = b""
        try:
            blocked = _wait_blocked_or_done(process, RUN_LIMIT_S)
            if blocked and condition == "ctrl-d":
                assert master is not None  # ctrl-d runs on a terminal
                os.write(master, b"\x04")
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    blocked = True  # it was not reading the terminal: end it as a person would
                else:
                    blocked = False
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            code = process.wait(timeout=STOP_LIMIT_S)  # one Ctrl-C must be enough
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # the demo's children, if any
            if master is not None:
                with contextlib.suppress(OSError):
                    while chunk := os.read(master, 65536):
                        output += chunk
                os.close(master)
        stderr.seek(0)
        text = stderr.read().decode(errors="replace") + output.decode(errors="replace")
    return code, text


@pytest.fixture(scope="module")
def unreachable_device(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("conditions")
    root.chmod(0o755)
    home = root / "home"
    home.mkdir()
    home.chmod(0o777)
    (root / "password").write_text("label password\n")
    configs = {}
    for name, mode, dir_mode in (
        ("open", 0o644, 0o777),
        ("closed", 0o600, 0o700),
        ("dirs", 0o644, 0o700),
    ):
        state, run = root / f"state-{name}", root / f"run-{name}"
        for directory in (state, run):
            directory.mkdir()
            directory.chmod(dir_mode)
        config = root / f"{name}.toml"
        config.write_text(
            f'[device]\nid = "cam-1"\npassword_file = "{root / "password"}"\n'
            f'[cloud]\nurl = "https://127.0.0.1:9"\n'
            f'[paths]\nstate_dir = "{state}"\nrun_dir = "{run}"\n'
        )
        config.chmod(mode)
        if os.geteuid() == 0 and name != "open":  # owned by another user (see _run_condition)
            for owned in (config, state, run):
                os.chown(owned, NOBODY, NOBODY)
        configs[name] = config
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "LANG": "C.UTF-8",
    }
    # A profile at the closed port: `cloud login` then reaches its password prompt.
    add = ["cloud", "servers", "add", "nowhere", "https://127.0.0.1:9", "--login", "admin"]
    added = subprocess.run(
        [sys.executable, "-m", "agent", *add],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    return {"root": root, "configs": configs, "env": env}


CONDITIONS = {  # condition → which config it runs with
    "stdin-eof": "open",
    "epipe": "open",
    "ctrl-c": "open",
    "ctrl-d": "open",
    "perm-config": "closed",
    "perm-dirs": "dirs",
}


@pytest.mark.parametrize("path", _leaf_commands(), ids=" ".join)
def test_no_traceback_from_any_command_in_any_condition(
    path: tuple[str, ...], unreachable_device: dict[str, Any]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    root = unreachable_device["root"]
    env = unreachable_device["env"]

    def one(condition: str) -> tuple[str, int, str]:
        config = unreachable_device["configs"][CONDITIONS[condition]]
        argv = ["--config", str(config), *_argv_for(path, root)]
        code, text = _run_condition(argv, condition, env, root)
        return condition, code, text

    with ThreadPoolExecutor(len(CONDITIONS)) as pool:
        outcomes = list(pool.map(one, CONDITIONS))
    for condition, code, text in outcomes:
        assert code in ALLOWED_EXITS, (condition, code, text)
        assert "Traceback" not in text, (condition, text)
        if condition == "perm-config" and "permission denied" in text:
            assert "mode 0600" in text, text


def test_doctor_names_permission_problems_and_never_suggests_reset(tmp_path: Path) -> None:
    """The state directory and the CA file belong to another user (root without the
    capabilities that override file modes stands in for an unprivileged user)."""
    import os
    import subprocess
    import sys

    tmp_path.chmod(0o755)
    state, ca = tmp_path / "state", tmp_path / "ca.pem"
    state.mkdir(mode=0o700)
    (state / "state.bin").write_bytes(b"whatever")
    ca.write_text("not read anyway\n")
    ca.chmod(0o600)
    (tmp_path / "password").write_text("pw\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[device]\nid = "cam-1"\npassword_file = "{tmp_path / "password"}"\n'
        f'[cloud]\nurl = "https://127.0.0.1:9"\nca_file = "{ca}"\n'
        f'[paths]\nstate_dir = "{state}"\nrun_dir = "{tmp_path / "run"}"\n'
    )
    prefix = []
    if os.geteuid() == 0:
        for owned in (state, ca):
            os.chown(owned, NOBODY, NOBODY)
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    else:
        state.chmod(0o000)
        ca.chmod(0o000)
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "agent", "doctor", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["state"]["status"] == "fail"
    assert "permission denied" in checks["state"]["detail"]
    assert checks["state"]["detail"].startswith(f"{state}: permission denied (owner ")
    assert "run as" in checks["state"]["fix"]
    assert "reset" not in checks["state"]["fix"] + checks["state"]["detail"]
    assert checks["tls"]["detail"].startswith(f"cannot read ca_file {ca}: permission denied")
    assert "firewall" not in checks["tls"]["fix"]
    assert (state / "state.bin").read_bytes() == b"whatever"


# -- what a newcomer is told ------------------------------------------------------------------


def test_the_demo_prints_commands_that_work_as_printed(tmp_path: Path) -> None:
    """Its closing hint runs as printed from a shell whose PATH has no camagent."""
    import os
    import shlex
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        story = "".join(lines)
        hints = {
            line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
            for line in lines
            if line.startswith("  ") and ":" in line
        }
        assert "console" in hints, story
        assert "log in as admin, password " in hints["console"]
        url = hints["console"].split()[0]
        assert url.startswith("https://127.0.0.1:")
        status = subprocess.run(
            shlex.split(hints["camera status"]),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, (hints["camera status"], status.stderr)
        assert "provisioning" in status.stdout
        assert "02:ca:fe:00:00:01" in status.stdout
    finally:
        process.send_signal(signal.SIGINT)
        with process:  # closes its pipe once it has exited
            assert process.wait(STOP_LIMIT_S) == 0


def test_python_m_cloud_mock_says_where_the_console_and_its_password_are(tmp_path: Path) -> None:
    import shlex
    import signal
    import subprocess
    import sys

    from agent import hints

    data_dir = tmp_path / "cloud"
    process = subprocess.Popen(
        [sys.executable, "-m", "cloud_mock", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        url = process.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:")
        console = next(line for line in process.stderr if line.startswith("Console:"))
        assert f"{url}/" in console
        assert "log in as 'admin'" in console
        password_file = data_dir / "admin-password"
        assert str(password_file) in console
        assert password_file.read_text().strip()
        ca_line = process.stderr.readline()
        assert str(data_dir / "ca.pem") in ca_line
        # The command it names for the CA is this checkout's camagent, runnable as printed.
        add = shlex.join([*hints.program(), "cloud", "servers", "add", "NAME", "URL"])
        assert f"`{add} --ca-file {shlex.quote(str(data_dir / 'ca.pem'))}`" in ca_line
        browser_line = process.stderr.readline()
        assert browser_line.startswith("Browser:")
        assert f"-n camagent-mock -i {data_dir / 'ca.pem'}" in browser_line
    finally:
        process.send_signal(signal.SIGTERM)
        with process:  # closes its pipes once it has exited
            assert process.wait(STOP_LIMIT_S) == 0


def test_the_demo_names_the_camagent_it_runs_as(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    from cloud_mock.demo import camagent_command

    venv_camagent = Path(sys.executable).with_name("camagent")
    assert venv_camagent.exists()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(venv_camagent), "demo"])
    assert camagent_command() == [str(venv_camagent.resolve())]
    monkeypatch.setenv("PATH", f"{venv_camagent.parent}:/usr/bin:/bin")
    assert camagent_command() == ["camagent"]
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "agent" / "__main__.py")])
    assert camagent_command() == [sys.executable, "-m", "agent"]


def test_a_wrong_label_password_is_pointed_at_by_status_and_doctor(
    fleet: Fleet, add_camera: AddCamera, run_cli: RunCli
) -> None:
    """The owner added the camera with its label password; the device's password file
    holds another one: every poll is answered "no token yet" and the fast phase ends."""
    config, device_id, _ = fleet.configure(
        password="not-the-label", fast_interval=0.3, fast_attempts=2, long_poll=0.0
    )
    add_camera(device_id, "the-label-password")
    agent = fleet.start(config)
    eventually(
        lambda: agent.status()["provisioning"]["phase"] == "slow",
        timeout=30,
        interval=0.05,
        what="the fast phase over",
    )
    status = run_cli(config, "status")
    assert status.returncode == 0, status.stderr
    assert "hint          no token after " in status.stdout
    assert "check that password_file holds the label password" in status.stdout
    doctor = run_cli(config, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert checks["provisioning"]["status"] == "warn"
    assert checks["provisioning"]["detail"].startswith("no token after ")
    assert "poll-now" in checks["provisioning"]["fix"]
    assert f"--config {config}" in checks["provisioning"]["fix"]
