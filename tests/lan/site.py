"""The pieces of a LAN test site: the mock cloud on the hub, devices, the finder.

Everything here is real: `python -m cloud_mock` in the hub namespace, `python -m agent
run` daemons in device namespaces (local API + mDNS on), `python -m agent finder` in its
own namespace, all joined by a bridge; only multicast and routes make them meet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_mock import sandbox
from cloud_mock.testing import start_mock_cloud
from tests.eventually import eventually
from tests.lan.netns import Lan, Namespace

ROOT = Path(__file__).resolve().parents[2]
LOCAL_API_OFF = "[local_api]\nenabled = false\nmdns = false\n"


def local_api_toml(**settings: Any) -> str:
    lines = ["[local_api]", "enabled = true", 'listen = "0.0.0.0"', "port = 0", "mdns = true"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Device:
    """A daemon in its namespace; `agent` is the sandbox handle (control socket, logs)."""

    ns: Namespace
    config: Path
    device_id: str
    password: str
    agent: sandbox.Agent
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.config.parent / "state"

    def local_api(self) -> dict[str, Any]:
        status = self.agent.status()
        api: dict[str, Any] = status["local_api"]
        return api

    def stop(self) -> None:
        self.agent.stop()

    def restart(self) -> None:
        self.agent.stop()
        self.agent = launch(self.ns, self.config, self.env)
        wait_local_api(self)


def launch(ns: Namespace, config: Path, env: dict[str, str] | None = None) -> sandbox.Agent:
    log_path = config.parent / "agent.log"
    with log_path.open("ab") as log:
        process = ns.popen(
            [sys.executable, "-m", "agent", "--config", str(config), "run"],
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env=_env(**(env or {})),
        )
    agent = sandbox.Agent(config, process, log_path)

    def started() -> bool:
        if process.poll() is not None:  # fail now, not after the timeout
            raise RuntimeError(f"agent in {ns.name} exited:\n{agent.log_text()[-3000:]}")
        return agent.answers()

    try:
        eventually(started, timeout=30, what=f"agent in {ns.name} answering")
    except AssertionError as exc:
        agent.stop()
        raise RuntimeError(f"{exc}\n{agent.log_text()[-3000:]}") from None
    except RuntimeError:
        agent.stop()
        raise
    return agent


def wait_local_api(device: Device, timeout: float = 20.0) -> dict[str, Any]:
    try:
        api = eventually(
            lambda: device.agent.status().get("local_api") or {},
            until=lambda api: api.get("port") and api.get("fp"),
            timeout=timeout,
            what="the local API in status",
        )
    except AssertionError as exc:
        raise RuntimeError(f"{exc}\n{device.agent.log_text()}") from None
    return dict(api)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_finder(
    ns: Namespace, xdg: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m agent finder ARGS` inside `ns`, its known devices under `xdg`."""
    return ns.run(
        [sys.executable, "-m", "agent", "finder", *args],
        input=stdin,
        cwd=ROOT,
        env=_env(XDG_CONFIG_HOME=str(xdg)),
        timeout=90,
    )


class Site:
    """One LAN: the hub runs the mock cloud; devices and finders get their own namespaces."""

    def __init__(self, lan: Lan, root: Path, cloud: sandbox.Cloud) -> None:
        self.lan = lan
        self.root = root
        self.cloud = cloud
        self.devices: list[Device] = []
        self._n = 0

    def device(
        self,
        role: str,
        *,
        local_api: bool = True,
        env: dict[str, str] | None = None,
        **settings: Any,
    ) -> Device:
        """A daemon in namespace `role`; `settings` go into its [local_api] table."""
        self._n += 1
        ns = self.lan.node(role)
        device_id = f"02:1a:{os.getpid() % 256:02x}:00:00:{self._n:02x}"
        password = f"label-pw-{self._n}"
        directory = self.root / role
        config = sandbox.write_agent_config(
            directory,
            self.cloud,
            device_id=device_id,
            password=password,
            fast_interval=1.0,
            long_poll=1.0,
        )
        text = config.read_text()
        assert LOCAL_API_OFF in text
        if local_api:
            config.write_text(text.replace(LOCAL_API_OFF, local_api_toml(**settings)))
        device = Device(ns, config, device_id, password, launch(ns, config, env), env or {})
        self.devices.append(device)
        if local_api:
            wait_local_api(device)
        return device

    def finder(
        self, ns: Namespace, *args: str, stdin: str | None = None, xdg: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_finder(ns, xdg or self.root / "finder-config", *args, stdin=stdin)

    def scan(self, ns: Namespace, timeout: float = 3.0) -> dict[str, dict[str, Any]]:
        result = self.finder(ns, "scan", "--json", "--timeout", str(timeout))
        assert result.returncode == 0, result.stderr
        return {d["id"]: d for d in json.loads(result.stdout)}

    def add_camera(self, device: Device, name: str = "lan camera") -> dict[str, Any]:
        """POST /v1/cameras from the hub (where the mock listens): {camera_id, token}."""
        session = self.lan.hub.call(self.cloud.login)
        body: dict[str, Any] = self.lan.hub.call(
            self.cloud.add_camera, session, device.device_id, device.password, name
        )
        return body

    def delete_camera(self, camera_id: str) -> None:
        session = self.lan.hub.call(self.cloud.login)
        self.lan.hub.call(self.cloud.delete_camera, session, camera_id)

    def camera_status(self, camera_id: str) -> str:
        session = self.lan.hub.call(self.cloud.login)
        return str(self.lan.hub.call(self.cloud.camera, session, camera_id)["status"])

    def close(self) -> None:
        for device in self.devices:
            device.stop()
        self.cloud.stop()


def open_site(lan: Lan, root: Path) -> Site:
    """The mock cloud on the hub (reachable from every node at the hub's address)."""
    cloud = lan.hub.call(start_mock_cloud, root / "cloud", host=lan.hub.address)
    return Site(lan, root, cloud)
