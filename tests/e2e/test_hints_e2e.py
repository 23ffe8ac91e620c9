"""Hints run as printed (issue 26, item 2): a representative set, each taken from the
output of a real command, run word for word (shlex.split) against a live mock and
daemons, and checked to do what it says to the device, profile and config it names.

tests/agent/test_hints.py checks every registered hint parses and names the same
config, profile and device; this file checks that running them works.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_mock import sandbox
from cloud_mock.testing import mock_env
from tests.e2e.conftest import Fleet, polls
from tests.eventually import eventually

pytestmark = pytest.mark.e2e

PROGRAM = [sys.executable, "-m", "agent"]  # how these tests run camagent: hints repeat it
QUOTED = re.compile(r"`([^`]+)`")
WAIT_S = 60.0  # generous: the machine running the suite may be busy


def camagent(*argv: str, env: dict[str, str] | None = None, stdin: str = "") -> Any:
    return subprocess.run(
        [*PROGRAM, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def printed(text: str, words: str) -> list[str]:
    """The one backquoted command in `text` that contains `words`, split as a shell would."""
    (command,) = [c for c in QUOTED.findall(text) if words in c]
    argv = shlex.split(command)
    assert argv[: len(PROGRAM)] == PROGRAM, command  # the program that printed it
    return argv


def run_printed(argv: list[str], env: dict[str, str] | None = None, stdin: str = "") -> Any:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.fixture
def background() -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_poll_now_on_a_linked_camera_names_the_reset_of_its_own_config(
    fleet: Fleet, add_camera: Callable[..., Any]
) -> None:
    mine, device_id, password = fleet.configure(name="my camera", fast_interval=0.3)
    other, other_id, other_password = fleet.configure(fast_interval=0.3)
    add_camera(device_id, password)
    add_camera(other_id, other_password)
    agent, bystander = fleet.start(mine), fleet.start(other)
    agent.wait_for_state("connected", timeout=WAIT_S)
    bystander.wait_for_state("connected", timeout=WAIT_S)

    before, kept = len(polls(fleet.cloud, device_id)), len(polls(fleet.cloud, other_id))

    refused = camagent("--config", str(mine), "poll-now")
    assert refused.returncode == 1
    reset = printed(refused.stderr, " reset")
    assert reset == [*PROGRAM, "--config", str(mine), "reset"]
    done = run_printed(reset)
    assert done.returncode == 0, done.stderr
    assert "Token forgotten" in done.stdout
    # Forgot its token, so it polls for one again (and, still added, gets it back).
    eventually(
        lambda: len(polls(fleet.cloud, device_id)),
        until=lambda count: count > before,
        timeout=WAIT_S,
        what="the reset camera polling again",
    )
    assert len(polls(fleet.cloud, other_id)) == kept  # the other device was not touched


def test_a_stopped_nvr_and_doctor_say_how_to_start_it_and_that_starts_it(
    fleet: Fleet, background: Callable[[list[str]], subprocess.Popen[bytes]]
) -> None:
    config, _, _ = fleet.configure(name="an nvr", kind="nvr", fast_interval=0.3)
    nocode = camagent("--config", str(config), "nvr", "code")
    assert nocode.returncode == 1
    start = printed(nocode.stderr, " run")
    assert start == [*PROGRAM, "--config", str(config), "run"]
    doctor = camagent("--config", str(config), "doctor", "--json")
    fixes = [c.get("fix", "") for c in json.loads(doctor.stdout)]
    assert f"start it: {shlex.join(start)}" in fixes

    daemon = background(start)
    code = eventually(
        lambda: camagent("--config", str(config), "nvr", "code", "--json"),
        until=lambda result: result.returncode == 0 or daemon.poll() is not None,
        timeout=WAIT_S,
        what="an activation code from the daemon started as printed",
    )
    assert daemon.poll() is None
    assert re.search(r'"code": "\w{4}-\w{4}-\w{4}"', code.stdout)


def test_cloud_sessions_of_a_profile_names_that_profile_to_end_one(
    tmp_path: Path, cloud: sandbox.Cloud
) -> None:
    env = mock_env({"XDG_CONFIG_HOME": str(tmp_path / "home")})
    for name in ("alpha", "beta"):  # alpha is the default: a hint without --profile hits it
        added = camagent(
            "cloud", "servers", "add", name, cloud.url, "--ca-file", str(cloud.ca_file), env=env
        )
        assert added.returncode == 0, added.stderr
    login = camagent(
        "cloud",
        "login",
        "--profile",
        "beta",
        "--login",
        "admin",
        "--password-stdin",
        env=env,
        stdin=cloud.admin_password + "\n",
    )
    assert login.returncode == 0, login.stderr
    other = cloud.login_body()  # the same person, logged in somewhere else
    listing = camagent("cloud", "sessions", "--profile", "beta", env=env)
    assert listing.returncode == 0, listing.stderr
    end = printed(listing.stdout, " sessions end ")
    assert end == [*PROGRAM, "cloud", "sessions", "end", "ID", "--profile", "beta"]
    end[end.index("ID")] = other["session_id"]
    ended = run_printed(end, env=env)
    assert ended.returncode == 0, ended.stderr
    assert cloud.request("GET", "/v1/sessions", session=other["session"])[0] == 401


def test_finder_poll_now_on_a_linked_camera_names_the_finders_reset_for_it(
    tmp_path: Path, fleet: Fleet, add_camera: Callable[..., Any]
) -> None:
    from tests.e2e.test_local_api_e2e import start_device

    agent, local, device_id, password = start_device(fleet, fast_interval=0.3)
    add_camera(device_id, password)
    agent.wait_for_state("connected", timeout=WAIT_S)
    env = mock_env({"XDG_CONFIG_HOME": str(tmp_path / "laptop")})
    target = f"127.0.0.1:{local['port']}"
    refused = camagent(
        "finder",
        "poll-now",
        target,
        "--password-stdin",
        "--accept-new-fp",  # no terminal to ask on: the first contact is accepted here
        env=env,
        stdin=password + "\n",
    )
    assert refused.returncode == 1
    assert "holds a token" in refused.stderr
    reset = printed(refused.stderr, " reset")
    assert reset == [*PROGRAM, "finder", "reset", target]
    # As printed: the device password is asked for (here on a pipe).
    before = len(polls(fleet.cloud, device_id))
    done = run_printed(reset, env=env, stdin=password + "\n")
    assert done.returncode == 0, done.stderr
    assert "forgot its token" in done.stdout
    eventually(
        lambda: len(polls(fleet.cloud, device_id)),
        until=lambda count: count > before,
        timeout=WAIT_S,
        what="the reset camera polling again",
    )
