"""`camagent doctor`: the hint that fixes each failure, warnings counted, commands in hints
that work with the --config given, and the daemon's no-token hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import doctor
from agent.checks import Check, format_results
from agent.cli import format_status


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "password").write_text("label password\n")
    path = tmp_path / "my agent.toml"
    path.write_text(
        f'[device]\nid = "cam-1"\npassword_file = "{tmp_path / "password"}"\n'
        '[cloud]\nurl = "https://127.0.0.1:9"\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\nrun_dir = "{tmp_path / "run"}"\n'
    )
    return path


def by_name(results: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in results}


def test_hints_carry_the_config_that_was_given(config_path: Path) -> None:
    checks = by_name(doctor.run_checks(config_path))
    assert checks["daemon"].status == "warn"
    assert checks["daemon"].fix == f"start it: camagent --config '{config_path}' run"
    assert "systemctl" not in checks["daemon"].fix
    assert checks["tls"].status == "fail"
    assert "cannot reach 127.0.0.1:9" in checks["tls"].detail
    broken = config_path.with_name("broken.toml")
    broken.write_text("[nope]\n")
    (only,) = doctor.run_checks(broken)
    assert only.fix == f"fix {broken}, then run `camagent --config {broken} doctor` again"


def test_the_default_config_keeps_the_systemd_hint() -> None:
    from agent.config import DEFAULT_CONFIG_PATH

    assert doctor.camagent_command(Path(DEFAULT_CONFIG_PATH), "run") == "camagent run"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p, "no such file"),  # never created
        (lambda p: p.mkdir() or p, "Is a directory"),
    ],
)
def test_an_unreadable_ca_file_says_so(config_path: Path, make, words: str) -> None:
    ca = make(config_path.parent / "ca.pem")
    config_path.write_text(
        config_path.read_text().replace(
            'url = "https://127.0.0.1:9"', f'url = "https://127.0.0.1:9"\nca_file = "{ca}"'
        )
    )
    tls = by_name(doctor.run_checks(config_path))["tls"]
    assert tls.status == "fail"
    assert tls.detail.startswith(f"cannot read ca_file {ca}: ")
    assert words in tls.detail
    assert "firewall" not in tls.fix
    assert str(config_path) in tls.fix


def test_a_damaged_state_file_is_the_only_case_for_reset(config_path: Path) -> None:
    state = config_path.parent / "state"
    state.mkdir()
    (state / "state.bin").write_bytes(b"garbage")
    check = by_name(doctor.run_checks(config_path))["state"]
    assert check.status == "fail"
    assert "reset" in check.fix
    assert f"camagent --config '{config_path}' reset" in check.fix


def test_warnings_are_counted_never_all_passed() -> None:
    text = format_results([Check("a", "ok", "fine"), Check("b", "warn", "hmm", "do x")])
    assert text.splitlines()[-1] == "1 warning."
    assert "All checks passed" not in text
    text = format_results(
        [Check("a", "fail", "bad"), Check("b", "warn", "hmm"), Check("c", "warn", "hmm")]
    )
    assert text.splitlines()[-1] == "1 check(s) failed, 2 warnings."
    assert format_results([Check("a", "ok", "fine")]).splitlines()[-1] == "All checks passed."


STATUS = {
    "device_id": "cam-1",
    "kind": "camera",
    "name": "",
    "state": "provisioning",
    "token": {"present": False},
    "provisioning": {
        "attempts": 0,
        "phase": "slow",
        "next_poll_in": 50.0,
        "last_attempt": 31,
        "last_result": "no token yet",
        "last_at": 1_700_000_000.0,
    },
    "cloud": {"url": "https://cloud.test", "connected_since": None},
    "version": "9",
    "daemon": True,
}


def test_the_no_token_hint_from_the_daemon_or_worked_out() -> None:
    told = {**STATUS, "provisioning": {**STATUS["provisioning"], "hint": "the daemon's words"}}
    assert doctor.no_token_hint(told) == "the daemon's words"
    worked_out = doctor.no_token_hint(STATUS)
    assert worked_out is not None
    assert worked_out.startswith("no token after 31 polls: if the camera was added")
    assert "password_file holds the label password" in worked_out
    assert "hint          no token after 31 polls" in format_status(STATUS)
    fast = {**STATUS, "provisioning": {**STATUS["provisioning"], "phase": "fast"}}
    unreachable = {
        **STATUS,
        "provisioning": {**STATUS["provisioning"], "last_result": "network error: refused"},
    }
    daemon_says_none = {**STATUS, "provisioning": {**STATUS["provisioning"], "hint": None}}
    for status in (fast, unreachable, daemon_says_none):
        assert doctor.no_token_hint(status) is None
        assert "hint" not in format_status(status)
