"""Network-fault fixtures: a real mock, fault proxies, real agents with their own /etc/hosts.

The mock listens on `localhost:P` (its certificate and the `api` of its tokens say
`https://localhost:P`). Each agent runs in a private mount namespace whose /etc/hosts
(see hosts_ns.py) maps `localhost` either to a fault proxy on another loopback address,
same port P (127.0.0.3, .4, … — the agent's URL stays the mock's own, so its tokens
verify), or straight to the mock (127.0.0.1), or to nothing (a DNS failure).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cloud_mock import sandbox
from cloud_mock.testing import PROJECT_ROOT, start_mock_cloud
from tests.eventually import eventually
from tests.faults.proxy import FaultProxy

HEARTBEAT_S = "1"  # the mock tells agents to heartbeat every second: a dead link shows fast
MOCK_ADDRESS = "127.0.0.1"

# Short intervals: fast phase 0.5 s, slow phase 2 s ± 10 %, long-polls of 1 s there.
FAST_INTERVAL = 0.5
FAST_ATTEMPTS = 5
SLOW_INTERVAL = 2.0
SLOW_JITTER = 0.1
LONG_POLL = 1.0

_ids = itertools.count(1)
_addresses = itertools.count(3)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class FaultAgent:
    agent: sandbox.Agent
    device_id: str
    password: str
    hosts: Path
    launched_at: float  # time.monotonic() at Popen: the schedule starts after this
    started_at: float = 0.0  # time.monotonic() when it answered

    def point_at(self, address: str | None) -> None:
        """Where `localhost` resolves for this agent from now on (None: nowhere)."""
        # Rewritten in place: the bind mount follows the inode, not the name.
        with self.hosts.open("w") as f:
            f.write(f"{address} localhost\n" if address else "")

    def status(self) -> dict[str, Any]:
        return self.agent.status()

    def state(self) -> str:
        return str(self.status()["state"])

    def wait_for_state(self, state: str, timeout: float = 30.0) -> float:
        return self.agent.wait_for_state(state, timeout)


class Rig:
    """One mock, any number of proxies in front of it, agents; all stopped afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cloud = start_mock_cloud(
            root / "cloud", host="localhost", env={"CAMAGENT_MOCK_HEARTBEAT_S": HEARTBEAT_S}
        )
        port = urlsplit(self.cloud.url).port
        assert port is not None
        self.port = port
        self.proxies: list[FaultProxy] = []
        self.agents: list[FaultAgent] = []
        self._session: str | None = None

    @property
    def session(self) -> str:
        if self._session is None:
            self._session = self.cloud.login()
        return self._session

    def proxy(self) -> tuple[FaultProxy, str]:
        """A new proxy on its own loopback address, port P, forwarding to the mock."""
        address = f"127.0.0.{next(_addresses)}"
        proxy = FaultProxy((address, self.port), (MOCK_ADDRESS, self.port)).start()
        self.proxies.append(proxy)
        return proxy, address

    def restart_cloud(self) -> None:
        """Stop the mock and start it again on the same data dir (it takes port P back)."""
        self.cloud.stop()
        self.cloud = start_mock_cloud(
            self.cloud.data_dir,
            host="localhost",
            env={"CAMAGENT_MOCK_HEARTBEAT_S": HEARTBEAT_S},
        )
        assert urlsplit(self.cloud.url).port == self.port
        self._session = None

    def add_camera(self, agent: FaultAgent) -> dict[str, Any]:
        return self.cloud.add_camera(self.session, agent.device_id, agent.password, "fault test")

    def configure(self, address: str | None, **options: Any) -> tuple[Path, Path, str, str]:
        n = next(_ids)
        device_id = f"02:fa:00:00:{n // 256:02x}:{n % 256:02x}"
        password = f"fault-password-{n}"
        settings: dict[str, Any] = {
            "fast_interval": FAST_INTERVAL,
            "fast_attempts": FAST_ATTEMPTS,
            "slow_interval": SLOW_INTERVAL,
            "slow_jitter": SLOW_JITTER,
            "long_poll": LONG_POLL,
        }
        settings.update(options)
        directory = self.root / f"device-{n}"
        config = sandbox.write_agent_config(
            directory, self.cloud, device_id=device_id, password=password, **settings
        )
        hosts = directory / "hosts"
        hosts.write_text(f"{address} localhost\n" if address else "")
        return config, hosts, device_id, password

    def launch(self, address: str | None, **options: Any) -> tuple[FaultAgent, Path]:
        """Start an agent without waiting for it; `ready()` waits."""
        config, hosts, device_id, password = self.configure(address, **options)
        log_path = config.parent / "agent.log"
        launched = time.monotonic()
        argv = [
            "unshare",
            "--mount",
            "--",
            sys.executable,
            "-m",
            "tests.faults.hosts_ns",
            str(hosts),
            "--",
            sys.executable,
            "-m",
            "agent",
            "--config",
            str(config),
            "run",
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=PROJECT_ROOT,
                env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            )
        agent = FaultAgent(
            sandbox.Agent(config, process, log_path), device_id, password, hosts, launched
        )
        self.agents.append(agent)
        return agent, config

    def start(self, address: str | None, **options: Any) -> FaultAgent:
        agent, _ = self.launch(address, **options)
        self.ready(agent)
        return agent

    @staticmethod
    def ready(agent: FaultAgent, timeout: float = 60.0) -> None:
        def answers() -> bool:
            if agent.agent.process.poll() is not None:  # fail now, not after the timeout
                pytest.fail(f"agent exited:\n{agent.agent.log_text()[-3000:]}")
            return agent.agent.answers()

        try:
            eventually(answers, timeout=timeout, what="the agent answering")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{agent.agent.log_text()[-3000:]}") from None
        agent.started_at = time.monotonic()

    def close(self) -> None:
        for agent in self.agents:
            agent.agent.stop()
        for proxy in self.proxies:
            proxy.stop()
        self.cloud.stop()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()
