"""`camagent cloud servers …` in-process (no network); login/sessions run end to end in
tests/e2e/test_cloud_cli_e2e.py."""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path

import pytest

from agent import hints
from agent.account import profiles, session_file
from agent.account.session_file import StoredSession
from agent.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["cloud", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def listing(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    code, out, _ = run(capsys, "servers", "list", "--json")
    assert code == 0
    rows: list[dict[str, object]] = json.loads(out)
    return rows


def test_servers_add_list_default_remove(capsys: pytest.CaptureFixture[str]) -> None:
    assert listing(capsys) == []
    assert run(capsys, "servers", "add", "prod", "vms.example.com", "--login", "eve")[0] == 0
    code, out, _ = run(capsys, "servers", "add", "lab", "https://lab.example:8443/")
    assert code == 0
    assert "default stays 'prod'" in out
    assert listing(capsys) == [
        {"name": "prod", "url": "https://vms.example.com", "login": "eve", "default": True},
        {"name": "lab", "url": "https://lab.example:8443", "login": "", "default": False},
    ]
    code, _, err = run(capsys, "servers", "remove", "prod")
    assert code == 1
    assert "cannot be removed" in err
    assert "camagent cloud servers default" in err
    assert run(capsys, "servers", "default", "lab")[0] == 0
    assert run(capsys, "servers", "remove", "prod")[0] == 0
    assert listing(capsys) == [
        {"name": "lab", "url": "https://lab.example:8443", "login": "", "default": True}
    ]
    code, out, _ = run(capsys, "servers", "list")
    assert out.splitlines()[1].split() == ["*", "lab", "https://lab.example:8443"]


def test_bad_input_exits_1_with_the_reason_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "servers", "add", "prod", "vms.example.com")
    before = profiles.profiles_path().read_bytes()
    for argv, message in [
        (("servers", "add", "x", "http://vms.example.com"), "only https://"),
        (("servers", "add", "prod", "other.example"), "exists already"),
        (("servers", "add", "y", "a.example", "--ca-file", str(tmp_path / "no.pem")), "no.pem"),
        (("servers", "default", "nope"), "no server profile named 'nope'"),
        (("servers", "remove", "nope"), "no server profile named 'nope'"),
        (("login", "--server", "nope"), "no server profile named 'nope'"),
    ]:
        code, _, err = run(capsys, *argv)
        assert (code, message in err) == (1, True), (argv, err)
    assert profiles.profiles_path().read_bytes() == before


def test_no_profile_tells_how_to_add_one(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (("login",), ("sessions",), ("logout",)):
        code, _, err = run(capsys, *argv)
        assert code == 1
        assert "camagent cloud servers add" in err


def test_corrupt_file_names_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = profiles.profiles_path()
    path.parent.mkdir(parents=True)
    path.write_text("[[servers]\n")
    code, _, err = run(capsys, "servers", "list")
    assert code == 1
    assert str(path) in err


def test_not_logged_in_tells_how_to_log_in(capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "servers", "add", "my lab", "lab.example")
    code, _, err = run(capsys, "sessions")
    assert code == 1
    login = shlex.join([*hints.program(), "cloud", "login", "--profile", "my lab"])
    assert f"run `{login}`" in err
    code, out, _ = run(capsys, "logout")
    assert code == 0
    assert "Not logged in" in out


def test_a_session_for_another_url_is_not_sent_there(capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "servers", "add", "prod", "vms.example.com")
    session_file.save("prod", StoredSession("s", "id", "eve", "https://old.example"))
    code, _, err = run(capsys, "sessions")
    assert code == 1
    assert "is for https://old.example" in err
    assert run(capsys, "logout")[0] == 0
    assert session_file.load("prod") is None


def test_removing_a_profile_forgets_its_session(capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "servers", "add", "prod", "vms.example.com")
    # issued by another URL, so removing it does not try to reach a server
    path = session_file.save("prod", StoredSession("s", "id", "eve", "https://old.example"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run(capsys, "servers", "remove", "prod")[0] == 0
    assert not path.exists()
    assert listing(capsys) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["cloud", "sessions", "--server", "a", "end", "X"],
        ["cloud", "sessions", "end", "X", "--server", "a"],
    ],
)
def test_sessions_end_takes_server_before_or_after(argv: list[str]) -> None:
    from agent.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.profile, args.sessions_command, args.session_id) == ("a", "end", "X")


def test_nvr_register_parses_with_or_without_a_token() -> None:
    from agent.cli import build_parser

    given = build_parser().parse_args(["nvr", "register", "rt_x"])
    assert (given.token, given.profile) == ("rt_x", None)
    through = build_parser().parse_args(["nvr", "register", "--profile", "prod"])
    assert (through.token, through.profile) == (None, "prod")
