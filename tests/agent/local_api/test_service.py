"""The device model shown in /v1/info."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.local_api.service import device_model
from tests.eventually import eventually_async


def test_model_from_the_first_readable_file(tmp_path: Path) -> None:
    dmi, tree = tmp_path / "product_name", tmp_path / "model"
    tree.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert device_model((dmi, tree)) == "Raspberry Pi 4 Model B Rev 1.4"
    dmi.write_text("Standard PC (Q35 + ICH9, 2009)\n")
    assert device_model((dmi, tree)) == "Standard PC (Q35 + ICH9, 2009)"


def test_no_model_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert device_model((tmp_path / "missing", empty)) == ""


class FakeAnnouncer:
    """Stands in for zeroconf: registration takes as long as the test wants."""

    instances: list[FakeAnnouncer] = []

    def __init__(self, *args: object) -> None:
        self.registered = asyncio.Event()
        self.started: dict[str, Any] | None = None
        self.updates: list[dict[str, Any]] = []
        self.registered_name = "x._camagent._tcp.local."
        FakeAnnouncer.instances.append(self)

    async def start(self, info: dict[str, Any]) -> None:
        self.started = dict(info)
        await self.registered.wait()

    async def update(self, info: dict[str, Any]) -> None:
        self.updates.append(dict(info))

    async def stop(self) -> None:
        pass


class StateDevice:
    def __init__(self) -> None:
        self.state = "provisioning"

    def info(self) -> dict[str, Any]:
        return {"id": "i", "kind": "camera", "state": self.state, "ver": "1", "name": ""}


async def test_a_state_change_while_registering_reaches_the_txt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import config as config_mod
    from agent.local_api import mdns
    from agent.local_api.service import LocalApi

    monkeypatch.setattr(mdns, "Announcer", FakeAnnouncer)
    config = config_mod.parse(
        f'[paths]\nstate_dir = "{tmp_path}"\n[local_api]\nlisten = "127.0.0.1"\nport = 0\n',
        "t.toml",
    )
    device = StateDevice()
    api = LocalApi(config, "02:00:00:00:00:01", device)  # type: ignore[arg-type]
    start = asyncio.create_task(api.start())
    await eventually_async(lambda: FakeAnnouncer.instances, interval=0.01, what="an announcer")
    announcer = FakeAnnouncer.instances[-1]
    device.state = "connected"
    api.state_changed()  # while zeroconf is still probing
    announcer.registered.set()
    await start
    await eventually_async(lambda: announcer.updates, interval=0.01, what="the TXT update")
    assert announcer.started is not None
    assert announcer.started["state"] == "provisioning"
    assert announcer.updates
    assert announcer.updates[-1]["state"] == "connected"
    assert api.status()["port"]
    await api.stop()
