"""camagent-conformance: it passes against the mock, and catches broken clouds by name."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import cloud_mock.cameras
import cloud_mock.claims
import cloud_mock.devices_ws
import cloud_mock.store
from agent.errors import WireError
from agent.provisioning.wire import PollRequest, poll_proof
from agent.token_codec import b64url_encode, sign_token
from agent.video.relay import Relay
from cloud_mock.api import ApiError
from cloud_mock.conformance import tunnel_checks
from cloud_mock.conformance.__main__ import run
from cloud_mock.conformance.checks import Conformance, Options
from cloud_mock.conformance.cloud_side import CloudSide, CloudSideError, Hooks, run_hook
from cloud_mock.conformance.report import RULES, Outcome, Report
from cloud_mock.devices_ws import Channel, Channels, authorize
from cloud_mock.server import start
from cloud_mock.testing import MockCloud, running_mock_cloud
from cloud_mock.video import tunnels
from cloud_mock.video.sources import VideoSource
from tests.cloud_mock.conftest import mock_options

KIT = Path(sys.executable).parent / "camagent-conformance"
HOOK = Path(__file__).parent / "add_device_hook.py"
WATCH_HOOK = Path(__file__).parent / "watch_hook.py"
# A second organization and its user: the MAC squatter of the claims rule (§2.6).
SQUATTER, SQUATTER_PASSWORD = "squatter", "squatter-pass-1"


def _fixtures(directory: Path) -> Path:
    path = directory / "fixtures.json"
    fixtures = {
        "orgs": [{"name": "elsewhere", "business": False}],
        "users": [
            {"login": SQUATTER, "password": SQUATTER_PASSWORD, "org": "elsewhere", "role": "owner"}
        ],
    }
    path.write_text(json.dumps(fixtures))
    return path


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockCloud]:
    directory = tmp_path_factory.mktemp("conformance")
    with running_mock_cloud(directory / "cloud", fixtures=_fixtures(directory)) as running:
        yield running


def _kit(
    cloud: MockCloud, *args: str, env: dict[str, str] | None = None, session: str | None = None
) -> Any:
    """The kit as a subprocess; logged in with the admin password file, or with `session`
    on its standard input (`--session-file -`): never a secret on its command line."""
    credentials = (
        ["--session-file", "-"]
        if session
        else ["--password-file", str(cloud.data_dir / "admin-password")]
    )
    return subprocess.run(
        [str(KIT), cloud.url, "--ca", str(cloud.data_dir / "ca.pem"), *credentials, *args],
        input=f"{session}\n" if session else "",
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
    squatter_password = tmp_path / "squatter-password"
    squatter_password.write_text(SQUATTER_PASSWORD + "\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOOK_CLOUD_URL": cloud.url,
        "HOOK_CLOUD_CA": str(cloud.data_dir / "ca.pem"),
        "HOOK_ADMIN_PASSWORD_FILE": str(cloud.data_dir / "admin-password"),
        "HOOK_OTHER_LOGIN": SQUATTER,
        "HOOK_OTHER_PASSWORD_FILE": str(squatter_password),
        "HOOK_LOG": str(hook_log),
    }
    done = _kit(
        cloud,
        "--json",
        "--add-device-cmd",
        f"{sys.executable} {HOOK}",
        "--add-device-other-org-cmd",
        f"{sys.executable} {HOOK} --other-org",
        "--watch-cmd",
        f"{sys.executable} {WATCH_HOOK}",
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    outcomes = {r["rule"]: r["outcome"] for r in report["results"]}
    assert outcomes == {rule.id: "pass" for rule in RULES}
    assert report["failed"] == 0
    assert report["skipped"] == 0
    # The hook added the kit's cameras: the token check's, the claims check's owner, the
    # long-poll check's, and the tunnel checks' camera and other device; the squatter's
    # hook claimed the claims check's camera elsewhere; the watch hook watched a camera.
    lines = hook_log.read_text().splitlines()
    added = [line for line in lines if not line.startswith(("watch ", "other "))]
    watched = {line.removeprefix("watch ") for line in lines if line.startswith("watch ")}
    squatted = [line.removeprefix("other ") for line in lines if line.startswith("other ")]
    assert len(added) == 5
    assert len(watched) == 1
    assert watched < set(added)
    assert len(squatted) == 1
    assert set(squatted) < set(added)
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


def _credentials(*argv: str) -> tuple[str | None, str | None]:
    from cloud_mock.conformance.__main__ import _credentials, _parser

    return _credentials(_parser().parse_args(["https://cloud.test", *argv]))


def test_the_kits_secrets_come_from_files_stdin_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from cloud_mock.conformance.__main__ import ENV_PASSWORD, ENV_SESSION, UsageError

    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    monkeypatch.delenv(ENV_SESSION, raising=False)
    password, session = tmp_path / "password", tmp_path / "session"
    password.write_text("pass word\n")
    session.write_text("s3ss10n\n")
    both = ["--password-file", str(password), "--session-file", str(session)]
    assert _credentials(*both) == ("pass word", "s3ss10n")
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert _credentials("--session-file", "-") == (None, "from-stdin")
    monkeypatch.setenv(ENV_PASSWORD, "env-password")
    monkeypatch.setenv(ENV_SESSION, "env-session")
    assert _credentials() == ("env-password", "env-session")
    assert capsys.readouterr().err == ""
    # --session on the command line still works, with a warning that says why.
    assert _credentials("--session", "argv-session") == ("env-password", "argv-session")
    err = capsys.readouterr().err
    assert "camagent-conformance: warning: a session secret on the command line" in err
    assert "/proc/PID/cmdline" in err
    with pytest.raises(UsageError, match="cannot both read stdin"):
        _credentials("--password-file", "-", "--session-file", "-")
    with pytest.raises(UsageError, match="--other-password-file - cannot both read stdin"):
        _credentials("--session-file", "-", "--other-password-file", "-")
    with pytest.raises(UsageError, match="cannot read the password file"):
        _credentials("--password-file", str(tmp_path / "missing"))


def test_kit_refuses_an_unreadable_secret_file_with_status_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(KIT), "https://127.0.0.1:1", "--session-file", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot read the session secret file" in done.stderr


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
    monkeypatch.setattr(cloud_mock.store.DevicesStore, "remember_nonce", lambda *_: True)


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


def _proof_without_nonce(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def lax(key: bytes, device_id: str, ts: int, nonce: str, proof: str) -> bool:
        return proof in (poll_proof(key, device_id, ts, nonce), poll_proof(key, device_id, ts, ""))

    monkeypatch.setattr(cloud_mock.claims, "proof_matches", lax)


def _hello_for_another_device(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    monkeypatch.setattr(cloud_mock.devices_ws, "hello_problem", lambda _hello, _peer: None)


def _squatter_revokes_the_owner(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    """Before issue 15's fix: the winning claim moves every other organization's connected
    claim, whether or not the poll proved its password."""
    verify = cloud_mock.claims.verify
    places: list[cloud_mock.claims.Place] = []

    def remembering(checked: Any, *args: Any) -> cloud_mock.claims.Verdict:
        places[:] = checked
        return verify(checked, *args)

    def everyone_else(verdict: cloud_mock.claims.Verdict) -> list[cloud_mock.claims.Place]:
        winner = verdict.winner
        if winner is None:
            return []
        return [p for p in places if p.camera_id and p.org != winner.org and p.connected]

    monkeypatch.setattr(cloud_mock.claims, "verify", remembering)
    monkeypatch.setattr(cloud_mock.claims, "to_move", everyone_else)


def _never_replaced(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def keep_both(self: Channels, channel: Channel) -> None:
        self._by_peer[channel.peer.id] = channel

    monkeypatch.setattr(Channels, "attach", keep_both)


BROKEN = {
    "wrongly signed token": (_wrongly_signed, "token.signature"),
    "unsigned token": (_unsigned, "token.signature"),
    "replay accepted": (_replay_accepted, "prov.replay-refused"),
    "500 on bad input": (_error_500_on_bad_input, "prov.malformed-400"),
    "wrong close code": (_wrong_close_code, "channel.revoked-4401"),
    "token for another device": (_token_for_another_device, "token.sub"),
    "proof without the nonce accepted": (_proof_without_nonce, "proof.binds-every-field"),
    "hello for another device": (_hello_for_another_device, "channel.hello-identity"),
    "second connection never replaces": (_never_replaced, "channel.replaced-4409"),
    "a squatter's claim revokes the owner": (
        _squatter_revokes_the_owner,
        "claims.squatter-revokes-nothing",
    ),
}


@pytest.mark.parametrize("variant", list(BROKEN))
async def test_kit_catches_a_broken_cloud_by_name(
    variant: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real mock, in this process, with one fault patched in (see the README)."""
    breaks, rule = BROKEN[variant]
    running = await start(mock_options(tmp_path / "cloud", fixtures=_fixtures(tmp_path)))
    try:
        breaks(monkeypatch, running.app)
        context = ssl.create_default_context(cafile=str(running.data_dir / "ca.pem"))
        report: Report = await run(
            running.url,
            ssl_context=context,
            login="admin",
            password=(running.data_dir / "admin-password").read_text().strip(),
            options=Options(timing_samples=5),
            other_login=SQUATTER,
            other_password=SQUATTER_PASSWORD,
        )
    finally:
        await running.stop()
    assert report.outcome_of(rule) is Outcome.FAIL, report.table()
    assert report.failed
    # It is that rule that catches it: the rules of other concerns still pass.
    assert report.outcome_of("keys.published") is Outcome.PASS


# --- the cloud's end of the video tunnel (§12) -----------------------------------------------


async def _tunnel_report(
    url: str, data_dir: Path, hooks: Hooks | None = None, *, logged_in: bool = True
) -> Report:
    """Only the kit's tunnel checks (a few seconds instead of the whole run's)."""
    context = ssl.create_default_context(cafile=str(data_dir / "ca.pem"))
    password = (data_dir / "admin-password").read_text().strip() if logged_in else None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        side = await CloudSide.log_in(http, url, hooks or Hooks(), "admin", password, None)
        kit = Conformance(http, url, side)
        try:
            await tunnel_checks.run(kit)
        finally:
            await side.clean_up()
    assert {r.rule for r in kit.report.results} == set(tunnel_checks.TUNNEL_RULES)
    return kit.report


def _hook_env(monkeypatch: pytest.MonkeyPatch, cloud: MockCloud, log: Path) -> None:
    monkeypatch.setenv("HOOK_CLOUD_URL", cloud.url)
    monkeypatch.setenv("HOOK_CLOUD_CA", str(cloud.data_dir / "ca.pem"))
    monkeypatch.setenv("HOOK_ADMIN_PASSWORD_FILE", str(cloud.data_dir / "admin-password"))
    monkeypatch.setenv("HOOK_LOG", str(log))


async def test_the_mock_keeps_every_tunnel_rule_through_its_live_view(cloud: MockCloud) -> None:
    report = await _tunnel_report(cloud.url, cloud.data_dir)
    for rule in tunnel_checks.TUNNEL_RULES:
        assert report.outcome_of(rule) is Outcome.PASS, report.table()
    details = {r.rule: r.detail for r in report.results}
    assert "OPTIONS rtsp://127.0.0.1:" in details["tunnel.bytes-relayed"]  # ffmpeg asked
    assert "401" in details["tunnel.no-token-401"]
    assert "403" in details["tunnel.other-device-refused"]


async def test_a_watch_hook_makes_the_cloud_open_the_tunnels(
    cloud: MockCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hook_env(monkeypatch, cloud, tmp_path / "hook.log")
    hooks = Hooks(watch=f"{sys.executable} {WATCH_HOOK}")
    report = await _tunnel_report(cloud.url, cloud.data_dir, hooks)
    for rule in tunnel_checks.TUNNEL_RULES:
        assert report.outcome_of(rule) is Outcome.PASS, report.table()
    # The hook watched the kit's camera (and never stopped: the kit ended it). The second
    # tunnel may be the mock's retry of the first viewer's, before the second one is up.
    watched = set((tmp_path / "hook.log").read_text().splitlines())
    assert len(watched) == 1


async def test_a_failing_watch_hook_fails_the_tunnel_rule_and_skips_the_rest(
    cloud: MockCloud,
) -> None:
    report = await _tunnel_report(cloud.url, cloud.data_dir, Hooks(watch="false"))
    results = {r.rule: r for r in report.results}
    assert results["tunnel.target-named"].outcome is Outcome.FAIL, report.table()
    assert "the watch hook exited with 1" in results["tunnel.target-named"].detail
    assert results["tunnel.unknown-404"].outcome is Outcome.PASS  # needs no viewer
    # The mock's thumbnail after the hello may bring the first tunnel (the kit takes any);
    # the second needs a viewer.
    assert results["tunnel.other-device-refused"].outcome is Outcome.SKIP
    assert "see tunnel.target-named" in results["tunnel.other-device-refused"].detail
    assert report.count(Outcome.FAIL) == 1


async def test_without_a_way_to_watch_the_tunnel_rules_are_skipped_saying_why(
    cloud: MockCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Cameras added by a hook, no login: nothing can make the cloud open a tunnel.
    _hook_env(monkeypatch, cloud, tmp_path / "hook.log")
    hooks = Hooks(add_device=f"{sys.executable} {HOOK}")
    report = await _tunnel_report(cloud.url, cloud.data_dir, hooks, logged_in=False)
    results = {r.rule: r for r in report.results}
    assert results["tunnel.unknown-404"].outcome is Outcome.PASS, report.table()
    for rule in ("tunnel.no-token-401", "tunnel.other-device-refused", "tunnel.used-once"):
        assert results[rule].outcome is Outcome.SKIP, report.table()
        assert "--watch-cmd" in results[rule].detail
    assert results["tunnel.bytes-relayed"].outcome is Outcome.SKIP
    # The mock's own tunnel_open for a thumbnail after the hello, if any, is judged too.
    assert results["tunnel.target-named"].outcome is not Outcome.FAIL


def _tunnel_without_token(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def lenient(store: Any, request: web.Request) -> Any:
        if "Authorization" in request.headers:
            return authorize(store, request)
        pending = app[tunnels.BROKER]._pending.get(request.match_info["session"])
        return pending.peer if pending is not None else None  # whoever the session is for

    monkeypatch.setattr(tunnels, "authorize", lenient)


def _tunnel_for_any_device(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    claim = tunnels.TunnelBroker.claim

    def careless(self: tunnels.TunnelBroker, session_id: str, peer: Any) -> Any:
        pending = self._pending.get(session_id)  # the session's device, not the caller's
        return claim(self, session_id, pending.peer if pending is not None else peer)

    monkeypatch.setattr(tunnels.TunnelBroker, "claim", careless)


def _tunnel_used_twice(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def reusable(self: tunnels.TunnelBroker, session_id: str, peer: Any) -> Any:
        session = self._pending.get(session_id)  # left in place, used or not
        if session is None:
            raise ApiError(404, "no such tunnel session")
        if session.peer.id != peer.id:
            raise ApiError(403, "this tunnel session was made for another device")
        return session

    monkeypatch.setattr(tunnels.TunnelBroker, "claim", reusable)


def _tunnel_to_an_address(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    monkeypatch.setattr(VideoSource, "target", lambda _self, stream: f"rtsp://192.0.2.7/{stream}")


def _unknown_tunnel_500(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    claim = tunnels.TunnelBroker.claim

    def careless(self: tunnels.TunnelBroker, session_id: str, peer: Any) -> Any:
        self._pending[session_id]  # KeyError: the error middleware answers 500
        return claim(self, session_id, peer)

    monkeypatch.setattr(tunnels.TunnelBroker, "claim", careless)


def _tunnel_never_opens(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def nothing(self: tunnels.TunnelBroker, session_id: str, peer: Any) -> Any:
        raise ApiError(404, "no such tunnel session")

    monkeypatch.setattr(tunnels.TunnelBroker, "claim", nothing)


class _TextSender:
    """A tunnel WebSocket that sends text where the relay sends bytes."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    async def send_bytes(self, data: bytes) -> None:
        await self._ws.send_str(data.decode("latin-1"))


def _tunnel_in_text(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> None:
    def texting(reader: Any, writer: Any, ws: Any, **kwargs: Any) -> Any:
        return Relay(reader, writer, _TextSender(ws), **kwargs)

    monkeypatch.setattr(tunnels, "Relay", texting)


BROKEN_TUNNELS = {  # the fault, the rule that must catch it, a rule that must still pass
    "tunnel without a token": (_tunnel_without_token, "tunnel.no-token-401", "tunnel.used-once"),
    "another device's token": (
        _tunnel_for_any_device,
        "tunnel.other-device-refused",
        "tunnel.no-token-401",
    ),
    "session used twice": (_tunnel_used_twice, "tunnel.used-once", "tunnel.other-device-refused"),
    "target an address": (_tunnel_to_an_address, "tunnel.target-named", "tunnel.unknown-404"),
    "unknown session 500": (_unknown_tunnel_500, "tunnel.unknown-404", "tunnel.no-token-401"),
    "tunnel bytes as text": (_tunnel_in_text, "tunnel.bytes-relayed", "tunnel.used-once"),
    "no tunnel ever opens": (_tunnel_never_opens, "tunnel.bytes-relayed", "tunnel.unknown-404"),
}


@pytest.mark.parametrize("variant", list(BROKEN_TUNNELS))
async def test_kit_catches_a_broken_tunnel_endpoint_by_name(
    variant: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real mock, in this process, with one fault of its tunnel end patched in."""
    breaks, rule, unaffected = BROKEN_TUNNELS[variant]
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        breaks(monkeypatch, running.app)
        report = await _tunnel_report(running.url, running.data_dir)
    finally:
        await running.stop()
    assert report.outcome_of(rule) is Outcome.FAIL, report.table()
    assert report.outcome_of(unaffected) is Outcome.PASS, report.table()
