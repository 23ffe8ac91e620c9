"""`camagent cloud …` end to end: the CLI as a subprocess against the mock cloud as a
subprocess (real TLS with the mock's CA), driven through pipes and through a real
pseudo-terminal for the prompts."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import __version__
from agent.provisioning.wire import derive_key, unseal_token
from agent.token_codec import parse_claims
from cloud_mock import sandbox
from cloud_mock.testing import MockCloud, mock_env, start_mock_cloud
from tests.e2e.conftest import Fleet
from tests.eventually import eventually

pytestmark = pytest.mark.e2e

USERS = {
    "ann": "ann-password-1",
    "bob": "bob-password-1",
    "cat": "cat-password-1",
    "dan": "dan-password-1",
    "eve": "eve-password-1",
    "fay": "fay-password-1",
    "gus": "gus-password-1",
}
CAPTCHA = re.compile(r"Captcha (\S+), image saved in (\S+):")
TIMEOUT = 30.0
PROGRAM = shlex.join([sys.executable, "-m", "agent"])  # how cli() runs it: what hints repeat


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    root = tmp_path_factory.mktemp("cloud")
    fixtures = root / "fixtures.json"
    users: list[dict[str, object]] = [
        {"login": login, "password": pw, "org": "demo", "role": "owner"}
        for login, pw in USERS.items()
    ]
    users[2]["max_sessions"] = 2  # cat: the per-user limit overrides the global one
    users[3]["max_sessions"] = 1  # dan
    fixtures.write_text(json.dumps({"users": users, "settings": {"max_sessions": 5}}))
    mock = start_mock_cloud(root / "data", fixtures=fixtures)
    yield mock
    mock.stop()


@pytest.fixture
def home(tmp_path: Path, cloud: MockCloud) -> Path:
    """An $XDG_CONFIG_HOME with the mock as the default profile (added through the CLI)."""
    config_home = tmp_path / "config"
    url = cloud.url.removeprefix("https://")  # the CLI adds https://
    result = cli(
        config_home, "cloud", "servers", "add", "mock", url, "--ca-file", str(cloud.ca_file)
    )
    assert result.returncode == 0, result.stderr
    return config_home


def env_for(config_home: Path) -> dict[str, str]:
    return mock_env({"XDG_CONFIG_HOME": str(config_home), "TMPDIR": str(config_home.parent)})


def cli(config_home: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env_for(config_home),
    )


def login(home: Path, user: str, *answers: str) -> subprocess.CompletedProcess[str]:
    stdin = "\n".join([USERS[user], *answers]) + "\n"
    return cli(home, "cloud", "login", "--login", user, "--password-stdin", stdin=stdin)


def sessions(home: Path) -> list[dict[str, Any]]:
    result = cli(home, "cloud", "sessions", "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def stored_token(home: Path, name: str = "mock") -> str:
    return str(json.loads((home / "camagent" / "sessions" / name).read_text())["session"])


class Dialog:
    """A running CLI we talk to through a file descriptor (pipe pair or pty master)."""

    def __init__(self, read_fd: int, write_fd: int, pid: int) -> None:
        self.read_fd, self.write_fd, self.pid = read_fd, write_fd, pid
        self.output = ""

    def expect(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + TIMEOUT
        regex = re.compile(pattern)
        while not (found := regex.search(self.output)):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {pattern!r} in:\n{self.output}"
            ready, _, _ = select.select([self.read_fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.read_fd, 65536)
                except OSError:  # pty closed: the child is gone
                    chunk = b""
                assert chunk, f"the CLI ended before {pattern!r}:\n{self.output}"
                self.output += chunk.decode(errors="replace")
        return found

    def send(self, line: str) -> None:
        os.write(self.write_fd, (line + "\n").encode())

    def consume(self, match: re.Match[str]) -> None:
        """Forget output up to the end of `match`, so the next expect sees only new text."""
        self.output = self.output[match.end() :]


@pytest.fixture
def piped(home: Path) -> Iterator[Any]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> tuple[Dialog, subprocess.Popen[bytes]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env_for(home),
        )
        processes.append(process)
        assert process.stdin is not None
        assert process.stdout is not None
        return Dialog(process.stdout.fileno(), process.stdin.fileno(), process.pid), process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        with process:  # waits, and closes its pipes
            pass


# --- non-interactive (stdin) ------------------------------------------------------------------


def test_login_list_sessions_logout(home: Path, cloud: MockCloud) -> None:
    result = login(home, "ann")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Logged in to https://127.0.0.1:" in result.stdout
    assert "as ann (organization demo)" in result.stdout
    token_file = home / "camagent" / "sessions" / "mock"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    token = stored_token(home)

    [mine] = sessions(home)
    assert mine["current"] is True
    assert mine["device"] == socket.gethostname()
    assert mine["software"] == f"camagent-cli/{__version__}"
    table = cli(home, "cloud", "sessions")
    assert table.returncode == 0
    assert re.search(
        rf"^\*\s+{re.escape(socket.gethostname())}\s+camagent-cli/", table.stdout, re.M
    )

    listed = cli(home, "cloud", "servers", "list")
    assert "logged in" in listed.stdout

    out = cli(home, "cloud", "logout")
    assert out.returncode == 0, out.stderr
    assert "Logged out" in out.stdout
    assert not token_file.exists()
    # ended in the cloud too, not only forgotten here
    assert cloud.request("GET", "/v1/sessions", session=token)[0] == 401
    after = cli(home, "cloud", "sessions")
    assert after.returncode == 1
    assert f"`{PROGRAM} cloud login --profile mock`" in after.stderr


def test_wrong_password_is_exit_1_and_keeps_nothing(home: Path) -> None:
    result = cli(home, "cloud", "login", "--login", "ann", "--password-stdin", stdin="not-it\n")
    assert result.returncode == 1
    assert "wrong login or password for 'ann'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "camagent" / "sessions" / "mock").exists()


def test_an_untrusted_certificate_is_refused_with_a_hint(tmp_path: Path, cloud: MockCloud) -> None:
    config_home = tmp_path / "config"
    assert cli(config_home, "cloud", "servers", "add", "bare", cloud.url).returncode == 0
    result = cli(config_home, "cloud", "login", "--login", "ann", "--password-stdin", stdin="x\n")
    assert result.returncode == 1
    assert "not trusted" in result.stderr
    assert "--ca-file" in result.stderr


def test_session_expiry_is_reported_with_what_to_run(home: Path, cloud: MockCloud) -> None:
    assert login(home, "eve").returncode == 0
    # the session ends in the cloud (here: ended with its own token, as another tool would)
    assert cloud.request("POST", "/v1/auth/logout", session=stored_token(home))[0] == 204
    result = cli(home, "cloud", "sessions")
    assert result.returncode == 1
    assert f"has ended or expired: run `{PROGRAM} cloud login --profile mock`" in result.stderr
    assert not (home / "camagent" / "sessions" / "mock").exists()


def test_sessions_end_another_then_this_one(home: Path, cloud: MockCloud) -> None:
    other = cloud.login_body("ann", USERS["ann"], device="kiosk", software="web")
    assert login(home, "ann").returncode == 0
    mine = next(s for s in sessions(home) if s["current"])
    ended = cli(home, "cloud", "sessions", "end", other["session_id"])
    assert ended.returncode == 0, ended.stderr
    assert cloud.request("GET", "/v1/sessions", session=other["session"])[0] == 401
    unknown = cli(home, "cloud", "sessions", "end", "no-such-session")
    assert unknown.returncode == 1
    assert "could not end the session" in unknown.stderr
    own = cli(home, "cloud", "sessions", "end", mine["id"])
    assert own.returncode == 0, own.stderr
    assert "logged out" in own.stdout
    assert not (home / "camagent" / "sessions" / "mock").exists()


def test_rate_limited_login_says_when_to_retry(home: Path, cloud: MockCloud) -> None:
    try:
        for _ in range(10):  # the mock's per-login limit of failures
            status, _ = cloud.request("POST", "/v1/auth/login", {"login": "fay", "password": "x"})
            assert status == 401
        result = login(home, "fay")
        assert result.returncode == 1
        assert re.search(
            r"too many failed logins at https://\S+ .*: try again in \d+ s", result.stderr
        )
    finally:
        cloud.advance_clock(301)  # let the failure windows pass for the other tests


@pytest.fixture
def captcha_always(cloud: MockCloud) -> Iterator[None]:
    cloud.set_settings(captcha="always")
    yield
    cloud.set_settings(captcha="off")


@pytest.mark.usefixtures("captcha_always")
def test_captcha_refresh_wrong_answer_then_right(piped: Any, cloud: MockCloud) -> None:
    dialog, process = piped("cloud", "login", "--login", "bob", "--password-stdin")
    dialog.send(USERS["bob"])
    first = dialog.expect(CAPTCHA.pattern)
    dialog.expect(r"\(r = new image\): $")
    png = Path(first[2])
    assert png.read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    # drawn in the terminal as well, within 80 columns
    drawing = dialog.output[first.end() :].splitlines()[1:-1]
    assert drawing
    assert max(len(line) for line in drawing) <= 80
    assert "█" in "".join(drawing)
    dialog.consume(first)

    dialog.send("r")
    second = dialog.expect(CAPTCHA.pattern)
    assert second[1] != first[1]
    assert cloud.request("GET", f"/v1/test/captcha/{first[1]}")[0] == 404  # replaced
    dialog.expect(r"\(r = new image\): $")
    dialog.consume(second)

    dialog.send("wrong")
    third = dialog.expect(CAPTCHA.pattern)
    assert "wrong" in dialog.output[: third.start()].lower()
    dialog.expect(r"\(r = new image\): $")
    dialog.send(cloud.captcha_answer(third[1]))
    dialog.expect("Logged in to .* as bob")
    assert process.wait(TIMEOUT) == 0
    assert not png.exists()  # the image file does not outlive the login


def test_captcha_after_a_failure(home: Path, cloud: MockCloud, piped: Any) -> None:
    cloud.set_settings(captcha={"after_failures": 1})
    try:
        assert login(home, "gus").returncode == 0  # no failure yet: no captcha
        wrong = cli(home, "cloud", "login", "--login", "gus", "--password-stdin", stdin="no\n")
        assert wrong.returncode == 1
        assert not CAPTCHA.search(wrong.stdout)
        dialog, process = piped("cloud", "login", "--login", "gus", "--password-stdin")
        dialog.send(USERS["gus"])
        captcha = dialog.expect(CAPTCHA.pattern)
        assert "The cloud asks you to solve a captcha." in dialog.output
        dialog.expect(r"\(r = new image\): $")
        dialog.send(cloud.captcha_answer(captcha[1]))
        dialog.expect("Logged in to .* as gus")
        assert process.wait(TIMEOUT) == 0
    finally:
        cloud.set_settings(captcha="off")


@pytest.mark.usefixtures("captcha_always")
def test_an_expired_captcha_is_replaced(piped: Any, cloud: MockCloud) -> None:
    dialog, process = piped("cloud", "login", "--login", "bob", "--password-stdin")
    dialog.send(USERS["bob"])
    first = dialog.expect(CAPTCHA.pattern)
    dialog.expect(r"\(r = new image\): $")
    answer = cloud.captcha_answer(first[1])
    dialog.consume(first)
    cloud.advance_clock(61)  # the person took longer than the captcha lives
    dialog.send(answer)
    second = dialog.expect(CAPTCHA.pattern)
    assert "expired" in dialog.output[: second.start()]
    dialog.expect(r"\(r = new image\): $")
    dialog.send(cloud.captcha_answer(second[1]))
    dialog.expect("Logged in to .* as bob")
    assert process.wait(TIMEOUT) == 0


@pytest.mark.usefixtures("captcha_always")
def test_captcha_with_everything_on_stdin(home: Path, cloud: MockCloud) -> None:
    # With no answer in the input the CLI stops with a clear message instead of hanging.
    result = login(home, "bob")
    assert result.returncode == 1
    assert CAPTCHA.search(result.stdout)
    assert "standard input ended" in result.stderr


def test_session_limit_cancel_then_end_the_newest(home: Path, cloud: MockCloud) -> None:
    laptop = cloud.login_body("cat", USERS["cat"], device="old-laptop", software="web")
    cloud.advance_clock(60)
    phone = cloud.login_body("cat", USERS["cat"], device="new-phone", software="app")

    cancelled = login(home, "cat", "q")
    assert cancelled.returncode == 1
    assert "login cancelled; no session was ended" in cancelled.stderr
    for kept in (laptop, phone):
        assert cloud.request("GET", "/v1/sessions", session=kept["session"])[0] == 200

    result = login(home, "cat", "3", "1", "n", "1", "y")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "already has 2 open session(s); the most allowed is 2" in out
    header = next(line for line in out.splitlines() if "last activity" in line)
    assert header.split() == ["#", "device", "software", "started", "last", "activity"]
    assert out.index("1  new-phone") < out.index("2  old-laptop")  # newest first
    assert "Type a number from 1 to 2, or q." in out
    assert out.count("unsaved work in that session may be lost") == 2
    assert "Session ended; logging in again." in out
    assert "Logged in" in out

    assert cloud.request("GET", "/v1/sessions", session=phone["session"])[0] == 401
    devices = sorted(s["device"] for s in sessions(home))
    assert devices == sorted(["old-laptop", socket.gethostname()])


# --- through a real pseudo-terminal -----------------------------------------------------------


def test_tty_password_is_not_echoed_and_the_limit_prompt_works(
    home: Path, cloud: MockCloud
) -> None:
    other = cloud.login_body("dan", USERS["dan"], device="desk-pc", software="desktop client")
    pid, master = pty.fork()
    if pid == 0:  # the child: becomes the CLI, with the pty as its controlling terminal
        try:
            os.execve(
                sys.executable,
                [sys.executable, "-m", "agent", "cloud", "login", "--login", "dan"],
                env_for(home),
            )
        finally:
            os._exit(127)
    dialog = Dialog(master, master, pid)
    try:
        dialog.expect(r"Password for dan at https://\S+: ")
        dialog.send(USERS["dan"])
        dialog.expect(r"End which session\? \[1-1, q to cancel\]: ")
        assert "desk-pc" in dialog.output
        assert "desktop client" in dialog.output
        dialog.send("1")
        dialog.expect(r"End session 1 \(desk-pc, desktop client\)\? \[y/N\]: ")
        assert "unsaved work in that session may be lost" in dialog.output
        dialog.send("y")
        dialog.expect("Logged in to .* as dan")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
    # the typed password never came back on the terminal; the other answers did (echo on)
    assert USERS["dan"] not in dialog.output
    assert re.search(r"Password for dan at \S+: \r\n", dialog.output)
    assert "[1-1, q to cancel]: 1\r\n" in dialog.output
    assert "[y/N]: y\r\n" in dialog.output
    assert cloud.request("GET", "/v1/sessions", session=other["session"])[0] == 401
    assert [s["device"] for s in sessions(home)] == [socket.gethostname()]


# --- used by other commands -------------------------------------------------------------------


def test_python_api_for_other_commands(
    home: Path, cloud: MockCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.account.api import open_session
    from agent.account.errors import CloudError, NotLoggedInError

    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    with pytest.raises(NotLoggedInError, match="cloud login --profile mock`"):
        open_session()
    assert login(home, "eve").returncode == 0
    session = open_session("mock")
    assert (session.profile.name, session.profile.url) == ("mock", cloud.url)
    sealed_token = session.add_camera("02:00:00:00:88:01", "label-pw", name="Hall")
    # The token sealed under the K of the password given: what the camera takes (§2.9).
    token = unseal_token(
        derive_key("label-pw", "02:00:00:00:88:01"), "02:00:00:00:88:01", sealed_token
    )
    assert token.count(".") == 1  # a signed device token
    assert parse_claims(token).sub == "02:00:00:00:88:01"
    with pytest.raises(CloudError, match=r"could not add the camera: .*already exists"):
        session.add_camera("02-00-00-00-88-01", "label-pw")
    with pytest.raises(CloudError, match="only to your organization"):
        session.add_camera("02:00:00:00:88:02", "label-pw", org="elsewhere")
    assert session.registration_token(title="rack 2").startswith("rt_")
    cloud.request("POST", "/v1/auth/logout", session=stored_token(home))
    with pytest.raises(NotLoggedInError, match="has ended or expired"):
        session.add_camera("02:00:00:00:88:03", "label-pw")


def test_nvr_register_through_the_profile(tmp_path: Path, cloud: MockCloud, home: Path) -> None:
    cli(
        home,
        "cloud",
        "servers",
        "add",
        "admin",
        cloud.url,
        "--login",
        "admin",
        "--ca-file",
        str(cloud.ca_file),
        "--default",
    )
    assert login(home, "ann").returncode == 0  # on "mock": not the default any more
    result = cli(home, "cloud", "login", "--password-stdin", stdin=cloud.admin_password + "\n")
    assert result.returncode == 0, result.stderr
    config = sandbox.write_agent_config(
        tmp_path / "nvr", cloud, device_id="02:00:00:00:77:01", password="nvr-pw", kind="nvr"
    )
    result = cli(home, "--config", str(config), "nvr", "register", "--profile", "admin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Linked" in result.stdout
    status = json.loads(cli(home, "--config", str(config), "status", "--json").stdout)
    assert status["kind"] == "nvr"
    assert status["token"]["present"] is True
    assert status["token"]["org"] == "demo"
    made = cloud.request("GET", "/v1/registrator-tokens", session=stored_token(home, "admin"))
    mine = [t for t in made[1]["tokens"] if t["note"] == "made by camagent nvr register"]
    assert len(mine) == 1
    assert mine[0]["used_at"] is not None  # and it was the one the NVR registered with


# -- finder push --profile: the device checks the password before the cloud hears of it ------


def test_finder_push_with_a_wrong_then_the_right_password(
    home: Path, cloud: MockCloud, fleet: Fleet
) -> None:
    from tests.e2e.test_local_api_e2e import start_device

    assert login(home, "ann").returncode == 0
    agent, local, device_id, password = start_device(fleet)
    target = f"127.0.0.1:{local['port']}"
    session = cloud.login()

    def cameras() -> list[dict[str, Any]]:
        status, body = cloud.request("GET", "/v1/cameras", session=session)
        assert status == 200
        return [c for c in body["cameras"] if c["device_id"] == device_id]

    # No terminal to ask on: the first contact at host:port is accepted by option.
    push = ("finder", "push", target, "--profile", "mock", "--password-stdin", "--accept-new-fp")
    wrong = cli(home, *push, "--name", "typo", stdin="not-the-label-password\n")
    assert wrong.returncode == 1, wrong.stdout
    assert "refused the password" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert cameras() == []  # nothing was written to the cloud
    right = cli(home, *push, "--name", "lobby", stdin=password + "\n")
    assert right.returncode == 0, right.stderr
    assert f"Camera {device_id} added in the cloud" in right.stdout
    agent.wait_for_state("connected", timeout=TIMEOUT)
    (camera,) = cameras()
    assert camera["name"] == "lobby"


def test_finder_push_over_a_waiting_camera_says_it_corrected_its_password(
    home: Path, cloud: MockCloud, fleet: Fleet
) -> None:
    """Issue 26: the camera was added earlier with a typo; the push corrects that claim's
    password, and says so, instead of saying "added"."""
    from tests.e2e.test_local_api_e2e import start_device

    assert login(home, "ann").returncode == 0
    agent, local, device_id, password = start_device(fleet)
    cloud.add_camera(cloud.login(), device_id, "a-typo-at-the-desk", "lobby")
    push = ("finder", "push", f"127.0.0.1:{local['port']}", "--profile", "mock")
    result = cli(home, *push, "--password-stdin", "--accept-new-fp", stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    assert "was waiting in the cloud with another password: corrected" in result.stdout
    assert "added in the cloud" not in result.stdout
    agent.wait_for_state("connected", timeout=TIMEOUT)


def test_one_ctrl_c_ends_finder_push_at_its_password_prompt(home: Path, fleet: Fleet) -> None:
    """The prompt waits inside the finder's asyncio loop: one Ctrl-C (here the byte a
    terminal turns into SIGINT) must end it, with exit 130 and no traceback."""
    from tests.e2e.test_local_api_e2e import start_device

    _agent, local, _device_id, _password = start_device(fleet)
    argv = ["finder", "push", f"127.0.0.1:{local['port']}", "--profile", "mock", "--accept-new-fp"]
    pid, master = pty.fork()
    if pid == 0:  # the child: the CLI, with the pty as its controlling terminal
        try:
            os.execve(sys.executable, [sys.executable, "-m", "agent", *argv], env_for(home))
        finally:
            os._exit(127)
    dialog = Dialog(master, master, pid)
    try:
        dialog.expect(r"Password of device \S+ \(user admin\): ")
        os.write(master, b"\x03")  # Ctrl-C, once
        done = eventually(
            lambda: os.waitpid(pid, os.WNOHANG),
            until=lambda d: d[0] != 0,
            timeout=TIMEOUT,
            interval=0.05,
            what="one Ctrl-C ending the prompt",
        )
        pid = 0
        assert os.waitstatus_to_exitcode(done[1]) == 130
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 65536):
                dialog.output += chunk.decode(errors="replace")
        os.close(master)
    assert "Traceback" not in dialog.output


# -- finder at host:port: the first contact shows the fingerprint and asks, as ssh does ------


def _finder_in_pty(home: Path, argv: list[str]) -> tuple[Dialog, int]:
    pid, master = pty.fork()
    if pid == 0:  # the child: the CLI, with the pty as its controlling terminal
        try:
            os.execve(sys.executable, [sys.executable, "-m", "agent", *argv], env_for(home))
        finally:
            os._exit(127)
    return Dialog(master, master, pid), pid


def _exit_code(dialog: Dialog, pid: int) -> int:
    """Wait for the CLI, keeping what it printed last."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline, f"the CLI did not end:\n{dialog.output}"
            with contextlib.suppress(OSError):
                ready, _, _ = select.select([dialog.read_fd], [], [], 0.1)
                if ready:
                    dialog.output += os.read(dialog.read_fd, 65536).decode(errors="replace")
        pid = 0
        return os.waitstatus_to_exitcode(done[1])
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            while chunk := os.read(dialog.read_fd, 65536):
                dialog.output += chunk.decode(errors="replace")
        os.close(dialog.read_fd)


def _known(home: Path) -> dict[str, Any]:
    path = home / "camagent" / "known_devices.json"
    return dict(json.loads(path.read_text())["devices"]) if path.exists() else {}


def test_first_contact_at_host_port_asks_on_a_terminal_n_then_y(home: Path, fleet: Any) -> None:
    from tests.e2e.test_local_api_e2e import start_device

    _agent, local, device_id, password = start_device(fleet)
    argv = ["finder", "poll-now", f"127.0.0.1:{local['port']}"]

    dialog, pid = _finder_in_pty(home, argv)
    asked = dialog.expect(r"Trust this device and remember its fingerprint\? \[y/N\] ")
    assert local["fp"] in dialog.output[: asked.start()]  # shown before the question
    assert device_id in dialog.output
    dialog.send("n")
    assert _exit_code(dialog, pid) == 1
    assert "not trusted: nothing was sent" in dialog.output
    assert "Password of device" not in dialog.output  # no secret asked for, none sent
    assert _known(home) == {}

    dialog, pid = _finder_in_pty(home, argv)
    dialog.consume(dialog.expect(r"\[y/N\] "))
    dialog.send("y")
    dialog.consume(dialog.expect(r"Password of device \S+ \(user admin\): "))
    dialog.send(password)
    assert _exit_code(dialog, pid) == 0, dialog.output
    assert "is polling the cloud for its token now" in dialog.output
    assert _known(home)[device_id]["fp"] == local["fp"]

    # Known now: no question, even without a terminal.
    again = cli(home, *argv, "--password-stdin", stdin=password + "\n")
    assert again.returncode == 0, again.stderr
    assert "[y/N]" not in again.stderr


def test_first_contact_at_host_port_without_a_terminal_is_refused_unless_accepted(
    home: Path, fleet: Any
) -> None:
    from tests.e2e.test_local_api_e2e import start_device

    _agent, local, device_id, password = start_device(fleet)
    argv = ["finder", "poll-now", f"127.0.0.1:{local['port']}", "--password-stdin"]
    refused = cli(home, *argv, stdin=password + "\n")
    assert refused.returncode == 1
    assert local["fp"] in refused.stderr
    assert "run the command again with --accept-new-fp" in refused.stderr
    assert "nothing was sent" in refused.stderr
    assert _known(home) == {}
    accepted = cli(home, *argv, "--accept-new-fp", stdin=password + "\n")
    assert accepted.returncode == 0, accepted.stderr
    assert _known(home)[device_id]["fp"] == local["fp"]
