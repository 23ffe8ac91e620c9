"""A mock cloud and camagent daemons as real subprocesses in one directory.

The demo, the end-to-end tests and the benchmarks all run the system this way: real
processes, real TLS with the mock's own CA, intervals shrunk through configuration.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent import control_socket
from agent.errors import CamagentError

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


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# -- the mock cloud ---------------------------------------------------------------------


@dataclass
class Cloud:
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    url: str = ""
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def signing_key_file(self) -> Path:
        return self.data_dir / "token-signing.pub.pem"

    @property
    def admin_password(self) -> str:
        return (self.data_dir / "admin-password").read_text().strip()

    def ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context(cafile=str(self.ca_file))
        return self._context

    def request(
        self, method: str, path: str, body: Any = None, session: str | None = None
    ) -> tuple[int, Any]:
        """One JSON request to the mock's API; returns (status, decoded body or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if session:
            req.add_header("Authorization", f"Bearer {session}")
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=30) as resp:  # noqa: S310
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def login(self, login: str = "admin", password: str | None = None) -> str:
        status, body = self.request(
            "POST",
            "/v1/auth/login",
            {
                "login": login,
                "password": password or self.admin_password,
                "device": "sandbox",
                "software": "camagent-sandbox",
            },
        )
        if status != 200:
            raise SandboxError(f"login as {login} failed: HTTP {status} {body}")
        return str(body["session"])

    def stop(self) -> int:
        code = _stop(self.process)
        self.log.close()
        return code


def start_cloud(
    data_dir: Path,
    *,
    port: int = 0,
    test_hooks: bool = True,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Cloud:
    data_dir.mkdir(parents=True, exist_ok=True)
    url_file = data_dir / "url"
    # The mock replaces `url` atomically when it is ready; an earlier run's file (whose port
    # the mock reuses) is told apart by its inode.
    old_inode = url_file.stat().st_ino if url_file.exists() else None
    argv = [sys.executable, "-m", "cloud_mock", "--port", str(port), "--data-dir", str(data_dir)]
    if test_hooks:
        argv.append("--test-hooks")
    log = (data_dir / "cloud.log").open("ab")
    process = subprocess.Popen(
        [*argv, *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, **(env or {})},
    )
    cloud = Cloud(data_dir, process, log)
    try:
        _wait_for(
            lambda: url_file.exists() and url_file.stat().st_ino != old_inode,
            READY_TIMEOUT_S,
            "mock cloud",
            process,
        )
    except SandboxError:
        cloud.stop()
        raise
    cloud.url = url_file.read_text().strip()
    return cloud


# -- agents -----------------------------------------------------------------------------


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
) -> Path:
    """A complete agent.toml for a device living in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    keys = f'["{cloud.signing_key_file}"]' if trust_keys else "[]"
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
run_dir = "{directory / "run"}"

[local_api]
enabled = false
mdns = false
"""
    )
    return path


@dataclass
class Agent:
    config_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def socket(self) -> Path:
        return self.config_path.parent / "run" / "control.sock"

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
        return _stop(self.process)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_agent(config_path: Path, env: dict[str, str] | None = None) -> Agent:
    log_path = config_path.parent / "agent.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(config_path), "run"],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
    agent = Agent(config_path, process, log_path)
    try:
        _wait_for(agent.answers, READY_TIMEOUT_S, "agent", process)
    except SandboxError:
        agent.stop()
        raise
    return agent
