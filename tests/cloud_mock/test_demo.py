"""`camagent demo`'s own words: what it keeps when it fails, and what it tells a person."""

from __future__ import annotations

import shlex
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

from agent.errors import CamagentError
from cloud_mock import demo, sandbox


def test_a_failed_demo_keeps_its_directory_and_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(signal, "signal", lambda *args: None)

    def broken_cloud(directory: Path) -> Any:
        directory.mkdir(parents=True)
        (directory / "cloud.log").write_text("what went wrong\n")
        raise CamagentError("the mock cloud did not start")

    monkeypatch.setattr(sandbox, "start_cloud", broken_cloud)
    with pytest.raises(CamagentError, match="did not start"):
        demo.run(once=True)
    (workdir,) = tmp_path.glob("camagent-demo-*")
    assert (workdir / "cloud" / "cloud.log").read_text() == "what went wrong\n"
    err = capsys.readouterr().err
    assert f"kept in {workdir}" in err
    assert f"rm -r {workdir}" in err


def test_a_demo_stopped_by_the_user_removes_its_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(signal, "signal", lambda *args: None)

    def interrupted(directory: Path) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(sandbox, "start_cloud", interrupted)
    assert demo.run(once=True) == 0
    assert list(tmp_path.glob("camagent-demo-*")) == []


def test_the_closing_hint_says_the_browser_warns_and_how_to_trust_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "cloud" / "ca.pem"
    hint = demo.closing_hint(
        "https://127.0.0.1:1", "pw", tmp_path / "agent.toml", ["camagent"], ca_file=ca
    )
    browser = next(line for line in hint.splitlines() if line.startswith("  browser:"))
    assert "ERR_CERT_AUTHORITY_INVALID" in browser
    assert f"certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n camagent-mock -i {ca}" in browser
    assert "trust store" in browser
    again = next(line for line in hint.splitlines() if line.startswith("  add it again:"))
    assert "poll-now" in again
    assert "slow phase" in again


class FakeProcess:
    def __init__(self) -> None:
        self.polls = 0

    def poll(self) -> int | None:
        self.polls += 1
        return None if self.polls <= 3 else 0


class FakeAgent:
    def __init__(self, phases: list[str]) -> None:
        self.process = FakeProcess()
        self.config_path = Path("/tmp/demo dir/agent.toml")
        self.phases = phases
        self.commands: list[str] = []

    def status(self) -> dict[str, Any]:
        phase = self.phases.pop(0)
        return {"state": "provisioning", "provisioning": {"phase": phase}}

    def command(self, cmd: str, **args: Any) -> Any:
        self.commands.append(cmd)


class FakeCloud:
    def __init__(self) -> None:
        self.process = FakeProcess()
        self.process.polls = -100


def test_the_demo_keeps_a_camera_without_a_token_in_its_fast_phase() -> None:
    agent = FakeAgent(["fast", "slow", "fast"])
    said: list[str] = []
    demo._keep_fast(agent, FakeCloud(), said.append, check_every=0)  # type: ignore[arg-type]
    assert agent.commands == ["poll_now"]
    # The command it names is the one for the demo's camera, runnable as printed.
    printed = [*demo.camagent_command(), "--config", str(agent.config_path), "poll-now"]
    assert f"`{shlex.join(printed)}`" in said[0]
