"""The mock cloud and camagent daemons as real subprocesses in one directory.

The demo, the end-to-end tests and the benchmarks all run the system this way: real
processes, real TLS with the mock's own CA, intervals shrunk through configuration.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import control_socket
from agent.errors import CamagentError
from cloud_mock.testing import MockCloud, MockCloudError, start_mock_cloud, stop_process

__all__ = [
    "Agent",
    "Cloud",
    "MockCloudError",
    "SandboxError",
    "start_agent",
    "start_cloud",
    "write_agent_config",
]

READY_TIMEOUT_S = 30.0


class SandboxError(CamagentError):
    pass


def _wait_for(predicate: Any, timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise SandboxError(f"{what}: the process exited with code {process.returncode}")
        time.sleep(0.01)
    raise SandboxError(f"{what}: not ready after {timeout:.0f} s")


# -- the mock cloud: started by its own package's helper ---------------------------------

Cloud = MockCloud
start_cloud = start_mock_cloud


# -- agents -----------------------------------------------------------------------------

# A Unix socket's path has room for 107 bytes; a deep temporary directory (a test's,
# under pytest-xdist's worker directories) may not leave room for `run/control.sock`.
MAX_SOCKET_PATH = 100


def short_run_dir(directory: Path) -> Path:
    """`directory/run`, or a short directory of its own under /tmp when the control
    socket's path would not fit there."""
    run_dir = directory / "run"
    if len(str(run_dir / "control.sock")) <= MAX_SOCKET_PATH:
        return run_dir
    return Path(tempfile.mkdtemp(prefix="camagent-run-"))


def write_agent_config(
    directory: Path,
    cloud: Cloud,
    *,
    device_id: str,
    password: str,
    kind: str = "camera",
    fast_interval: float = 2.0,
    fast_attempts: int = 5,
    slow_interval: float = 30.0,
    slow_jitter: float = 0.1,
    long_poll: float = 1.0,
    trust_keys: bool = True,
    extra: str = "",
) -> Path:
    """A complete agent.toml for a device living in `directory`; `extra` is appended TOML
    (e.g. `[[nvr.cameras]]` tables)."""
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    keys = f'["{cloud.signing_key_file}"]' if trust_keys else "[]"
    run_dir = short_run_dir(directory)
    path = directory / "agent.toml"
    path.write_text(
        f"""[device]
id = "{device_id}"
kind = "{kind}"
password_file = "{password_file}"
name = "sandbox {device_id}"

[cloud]
url = "{cloud.url}"
ca_file = "{cloud.ca_file}"
trust_keys = {keys}

[provisioning]
fast_interval = {fast_interval}
fast_attempts = {fast_attempts}
slow_interval = {slow_interval}
slow_jitter = {slow_jitter}
long_poll = {long_poll}

[paths]
state_dir = "{directory / "state"}"
run_dir = "{run_dir}"

[local_api]
enabled = false
mdns = false

[nvr]
archive_path = "{directory / "archive"}"
{extra}"""
    )
    return path


@dataclass
class Agent:
    config_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @functools.cached_property
    def socket(self) -> Path:
        """The control socket the daemon was started with (read once: a test may break the
        file later, and a reload never moves the socket)."""
        from agent import config

        return config.load(self.config_path).control_socket

    def command(self, cmd: str, **args: Any) -> Any:
        return control_socket.request(self.socket, cmd, args, timeout=10)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.command("status")
        return status

    def wait_for_state(self, state: str, timeout: float = 20.0) -> float:
        """Block until the daemon reports `state`; return the seconds it took."""
        start = time.monotonic()
        _wait_for(
            lambda: self.status()["state"] == state, timeout, f"agent state {state}", self.process
        )
        return time.monotonic() - start

    def answers(self) -> bool:
        """True once the daemon answers on its control socket (a stale socket does not)."""
        try:
            self.status()
        except CamagentError:
            return False
        return True

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.process, 10.0)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_agent(
    config_path: Path,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    unset: tuple[str, ...] = (),
) -> Agent:
    """The daemon as a subprocess; `python` may be another interpreter (e.g. Debian's own,
    with its python3-aiohttp, as the .deb runs it); `unset` names variables of this
    environment the daemon must not inherit."""
    log_path = config_path.parent / "agent.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [python, "-m", "agent", "--config", str(config_path), "run"],
            stdout=log,
            stderr=log,
            env={k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset},
        )
    agent = Agent(config_path, process, log_path)
    agent.socket  # noqa: B018 - read before any test rewrites the file
    try:
        _wait_for(agent.answers, READY_TIMEOUT_S, "agent", process)
    except SandboxError:
        agent.stop()
        raise
    return agent
