from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.account import session_file
from agent.account.session_file import StoredSession

S = StoredSession("secret", "sid", "eve", "https://a.example")


def test_saved_private_beside_the_profiles(config_home: Path) -> None:
    path = session_file.save("prod", S)
    assert path == config_home / "camagent" / "sessions" / "prod"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert session_file.load("prod") == S
    assert session_file.forget("prod")
    assert session_file.load("prod") is None
    assert not session_file.forget("prod")


@pytest.mark.parametrize("name", ["..", ".", "../../etc/passwd", "a/b", "x y", "☁"])
def test_odd_names_stay_inside_the_sessions_directory(name: str) -> None:
    path = session_file.path_for(name)
    assert path.parent == session_file.sessions_dir()
    assert "/" not in path.name
    assert path.name not in (".", "..")
    session_file.save(name, S)
    assert session_file.load(name) == S


def test_a_damaged_token_file_counts_as_not_logged_in() -> None:
    session_file.save("prod", S)
    session_file.path_for("prod").write_text("{not json")
    assert session_file.load("prod") is None
