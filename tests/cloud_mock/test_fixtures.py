"""Fixtures files: account settings and users are checked before anything changes, and a
bad file stops the mock with exit 1 naming the file and the JSON path."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from cloud_mock.fixtures import (
    DEFAULT_SESSION_IDLE_S,
    AccountSettings,
    CaptchaMode,
    CaptchaPolicy,
    parse_fixtures,
    parse_settings,
)
from cloud_mock.testing import mock_command, mock_env
from tests.cloud_mock.accounts_helpers import write_json

USER = {"login": "vera", "password": "pw", "org": "demo", "role": "viewer"}


def test_settings_default_to_no_captcha_no_limit_a_week_idle() -> None:
    week = 7 * 86_400.0
    assert parse_settings({}) == AccountSettings(CaptchaPolicy(CaptchaMode.OFF), None, week)
    assert week == DEFAULT_SESSION_IDLE_S


def test_settings_parse() -> None:
    settings = parse_settings(
        {"captcha": {"after_failures": 3}, "max_sessions": 2, "session_idle_s": 0.5}
    )
    assert settings == AccountSettings(CaptchaPolicy(CaptchaMode.AFTER_FAILURES, 3), 2, 0.5)
    assert parse_settings({"captcha": "always"}).captcha.mode is CaptchaMode.ALWAYS


def test_captcha_policy_and_session_limit() -> None:
    after_two = CaptchaPolicy(CaptchaMode.AFTER_FAILURES, 2)
    assert [after_two.required(n) for n in range(4)] == [False, False, True, True]
    assert CaptchaPolicy(CaptchaMode.ALWAYS).required(0)
    assert not CaptchaPolicy(CaptchaMode.OFF).required(100)
    assert AccountSettings(max_sessions=5).session_limit(1) == 1
    assert AccountSettings(max_sessions=5).session_limit(None) == 5
    assert AccountSettings().session_limit(None) is None


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ([], "settings: must be a JSON object"),
        ({"captcha": "sometimes"}, "settings.captcha: must be"),
        ({"captcha": True}, "settings.captcha: must be"),
        ({"captcha": {"after_failures": 0}}, "settings.captcha.after_failures:"),
        ({"captcha": {"after_failures": "3"}}, "settings.captcha.after_failures:"),
        ({"captcha": {"after_failures": True}}, "settings.captcha.after_failures:"),
        ({"captcha": {"after": 3}}, "settings.captcha: unknown key(s) 'after'"),
        ({"max_sessions": 0}, "settings.max_sessions:"),
        ({"max_sessions": 1.5}, "settings.max_sessions:"),
        ({"max_sessions": False}, "settings.max_sessions:"),
        ({"session_idle_s": 0}, "settings.session_idle_s:"),
        ({"session_idle_s": -1}, "settings.session_idle_s:"),
        ({"session_idle_s": "60"}, "settings.session_idle_s:"),
        ({"session_idle_s": float("inf")}, "settings.session_idle_s:"),
        ({"max_session": 2}, "settings: unknown key(s) 'max_session'"),
    ],
)
def test_bad_settings_name_their_path(settings: Any, path: str) -> None:
    with pytest.raises(ValueError, match="^" + path.replace("(", r"\(").replace(")", r"\)")):
        parse_fixtures({"settings": settings})


@pytest.mark.parametrize("value", [0, -1, 2.0, "3", True])
def test_bad_user_max_sessions_names_its_path(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^users\[1\]\.max_sessions: must be a positive"):
        parse_fixtures({"users": [USER, {**USER, "login": "olga", "max_sessions": value}]})


@pytest.mark.parametrize(
    ("fixtures", "path"),
    [
        ({"settings": {"captcha": {"after_failures": -2}}}, "settings.captcha.after_failures"),
        ({"users": [{**USER, "max_sessions": 0}]}, "users[0].max_sessions"),
        ({"settings": {"session_idle_s": 0}}, "settings.session_idle_s"),
    ],
)
def test_mock_with_bad_fixtures_exits_1_naming_file_and_path(
    tmp_path: Path, fixtures: dict[str, Any], path: str
) -> None:
    bad = write_json(tmp_path / "bad.json", fixtures)
    result = subprocess.run(
        mock_command(tmp_path / "cloud", fixtures=bad),
        env=mock_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cloud_mock: error: {bad}: {path}:"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cloud" / "url").exists()
