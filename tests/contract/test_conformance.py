"""camagent-conformance: it passes against the mock, and catches broken clouds by name."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import cloud_mock.cameras
import cloud_mock.store
from agent.errors import WireError
from agent.provisioning.wire import PollRequest
from agent.token_codec import b64url_encode, sign_token
from cloud_mock.conformance.__main__ import run
from cloud_mock.conformance.checks import Options
from cloud_mock.conformance.cloud_side import CloudSideError, run_hook
from cloud_mock.conformance.report import RULES, Outcome, Report
from cloud_mock.server import start
from cloud_mock.testing import MockCloud, running_mock_cloud
from tests.cloud_mock.conftest import mock_options

KIT = Path(sys.executable).parent / "camagent-conformance"
HOOK = Path(__file__).parent / "add_device_hook.py"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    with running_mock_cloud(tmp_path_factory.mktemp("conformance") / "cloud") as running:
        yield running


def _kit(
    cloud: MockCloud, *args: str, env: dict[str, str] | None = None, session: str | None = None
) -> Any:
    """The kit as a subprocess; logged in with the admin password file, or `session`."""
    credentials = (
        ["--session", session]
        if session
        else ["--password-file", str(cloud.data_dir / "admin-password")]
    )
    return subprocess.run(
        [str(KIT), cloud.url, "--ca", str(cloud.data_dir / "ca.pem"), *credentials, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_kit_passes_against_the_mock_with_an_add_device_hook(
    cloud: MockCloud, tmp_path: Path
) -> None:
    hook_log = tmp_path / "hook.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOOK_CLOUD_URL": cloud.url,
        "HOOK_CLOUD_CA": str(cloud.data_dir / "ca.pem"),
        "HOOK_ADMIN_PASSWORD_FILE": str(cloud.data_dir / "admin-password"),
        "HOOK_LOG": str(hook_log),
    }
    done = _kit(cloud, "--json", "--add-device-cmd", f"{sys.executable} {HOOK}", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    outcomes = {r["rule"]: r["outcome"] for r in report["results"]}
    assert outcomes == {rule.id: "pass" for rule in RULES}
    assert report["failed"] == 0
    assert report["skipped"] == 0
    # The hook added the kit's cameras: the token check's and the long-poll check's.
    assert len(hook_log.read_text().split()) == 2
    for result in report["results"]:
        assert result["section"].startswith("docs/design.md §")


def test_kit_names_the_rule_and_section_of_a_failure_and_exits_1(cloud: MockCloud) -> None:
    # Logged in with --session this time: revoking and commands still go through the API.
    done = _kit(cloud, "--add-device-cmd", "false", session=cloud.login())
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    failing = [line for line in lines if line.startswith("FAIL")]
    assert any("prov.token-delivered" in line and "docs/design.md §2" in line for line in failing)
    assert any("prov.long-poll-wakeup" in line for line in failing)
    assert "add-device hook exited with 1" in done.stdout
    assert lines[-1].endswith(cloud.url)
    assert any(line.startswith("PASS") and "nvr.held-poll-answered" in line for line in lines)


def test_kit_will_not_run_without_a_way_to_add_a_camera(cloud: MockCloud) -> None:
    done = subprocess.run(
        [str(KIT), cloud.url, "--ca", str(cloud.data_dir / "ca.pem")],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--add-device-cmd" in done.stderr


def test_kit_refuses_a_cloud_that_is_not_https() -> None:
    done = subprocess.run(
        [str(KIT), "http://127.0.0.1:1"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "https://" in done.stderr


async def test_hooks_run_without_a_shell() -> None:
    script = "import os, sys; print(os.environ['DEVICE_ID'], sys.argv[1:])"
    command = f"{sys.executable} -c \"{script}\" 'a; touch /nonexistent' '$HOME'"
    out = await run_hook(command, {"DEVICE_ID": "aa:bb"}, "add-device")
    assert out.strip() == "aa:bb ['a; touch /nonexistent', '$HOME']"
    with pytest.raises(CloudSideError, match="cannot run"):
        await run_hook("/nonexistent/hook", {}, "add-device")


# --- deliberately broken clouds -------------------------------------------------------------


def _wrongly_signed(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    other = Ed25519PrivateKey.generate()
    monkeypatch.setattr(cloud_mock.cameras, "sign_token", lambda p, _key: sign_token(p, other))


def _unsigned(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def unsigned(payload: dict[str, Any], _key: Any) -> str:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return b64url_encode(body) + "." + b64url_encode(bytes(64))

    monkeypatch.setattr(cloud_mock.cameras, "sign_token", unsigned)


def _replay_accepted(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    monkeypatch.setattr(cloud_mock.store.Store, "remember_nonce", lambda *_: True)


def _error_500_on_bad_input(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    parse = PollRequest.parse

    def careless(body: bytes) -> PollRequest:
        try:
            return parse(body)
        except WireError as error:
            raise RuntimeError(str(error)) from None  # the mock's error middleware: 500

    monkeypatch.setattr(PollRequest, "parse", staticmethod(careless))


def _wrong_close_code(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    monkeypatch.setattr(cloud_mock.cameras, "CLOSE_REVOKED", 4000)


def _token_for_another_device(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def other_sub(payload: dict[str, Any], key: Any) -> str:
        return sign_token({**payload, "sub": "02:00:00:00:00:01"}, key)

    monkeypatch.setattr(cloud_mock.cameras, "sign_token", other_sub)


BROKEN = {
    "wrongly signed token": (_wrongly_signed, "token.signature"),
    "unsigned token": (_unsigned, "token.signature"),
    "replay accepted": (_replay_accepted, "prov.replay-refused"),
    "500 on bad input": (_error_500_on_bad_input, "prov.malformed-400"),
    "wrong close code": (_wrong_close_code, "channel.revoked-4401"),
    "token for another device": (_token_for_another_device, "token.sub"),
}


@pytest.mark.parametrize("variant", list(BROKEN))
async def test_kit_catches_a_broken_cloud_by_name(
    variant: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real mock, in this process, with one fault patched in (see the README)."""
    breaks, rule = BROKEN[variant]
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        breaks(monkeypatch, running.app)
        context = ssl.create_default_context(cafile=str(running.data_dir / "ca.pem"))
        report: Report = await run(
            running.url,
            ssl_context=context,
            login="admin",
            password=(running.data_dir / "admin-password").read_text().strip(),
            options=Options(timing_samples=5),
        )
    finally:
        await running.stop()
    assert report.outcome_of(rule) is Outcome.FAIL, report.table()
    assert report.failed
    # It is that rule that catches it: the rules of other concerns still pass.
    assert report.outcome_of("keys.published") is Outcome.PASS
