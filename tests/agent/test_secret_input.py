"""Secrets stay off command lines (README.md): one way to read a secret, for every command
that takes one — a file (`-`: stdin), the environment, stdin; the command-line form still
works, with a warning that says why."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest

from agent.cli import build_parser, main
from agent.qr import make as qr_make
from agent.qr.payloads import parse
from agent.secret_input import MAX_SECRET_INPUT, TOKEN_ENV, Secret, SecretInputError, read_secret

TOKEN_SECRET = Secret("token", "--token", "--token-file", TOKEN_ENV)
PASSWORD_SECRET = Secret("WiFi password", "--password", "--password-file", password=True)
WARNING = "on the command line is visible to every local user (ps, /proc/PID/cmdline)"
TOKEN = "eyJ2IjoxfQ.c2ln"  # shaped like a token: the card checks no more than that


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


# -- the helper ------------------------------------------------------------------------------


def test_a_file_then_the_environment_then_stdin_and_the_argument_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    path.write_text(" from-file \n")
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    _stdin(monkeypatch, "from-stdin\n")
    assert read_secret(TOKEN_SECRET, None, path, stdin=True) == "from-file"
    assert read_secret(TOKEN_SECRET, None, None, stdin=True) == "from-env"
    assert read_secret(TOKEN_SECRET, None, "-") == "from-stdin"  # '-' wins over the variable
    assert capsys.readouterr().err == ""
    monkeypatch.delenv(TOKEN_ENV)
    _stdin(monkeypatch, "stdin-too\n")
    assert read_secret(TOKEN_SECRET, None, None, stdin=True) == "stdin-too"
    assert read_secret(TOKEN_SECRET, "from-argv", None) == "from-argv"
    err = capsys.readouterr().err
    assert f"camagent: warning: a token {WARNING}" in err
    assert "--token-file FILE ('-': standard input) or CAMAGENT_TOKEN" in err
    assert "from-argv" not in err


def test_nothing_given_is_none_unless_the_command_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _stdin(monkeypatch, "never read\n")
    assert read_secret(TOKEN_SECRET, None, None) is None
    assert read_secret(TOKEN_SECRET, "", None) is None  # `--token ''`: none, as before
    assert read_secret(PASSWORD_SECRET, None, None) is None
    _stdin(monkeypatch, "")
    with pytest.raises(SecretInputError, match="no token in standard input"):
        read_secret(TOKEN_SECRET, None, None, stdin=True)


def test_refusals_name_the_source_and_never_read_a_whole_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(SecretInputError, match="either as --token or with --token-file"):
        read_secret(TOKEN_SECRET, "a", tmp_path / "t")
    with pytest.raises(SecretInputError, match=r"cannot read the token file .*/missing"):
        read_secret(TOKEN_SECRET, None, tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretInputError, match=f"no token in {empty}"):
        read_secret(TOKEN_SECRET, None, empty)
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_INPUT + 1))
    with pytest.raises(SecretInputError, match="more than 65536 bytes: not a token"):
        read_secret(TOKEN_SECRET, None, big)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(SecretInputError, match="cannot read the token file"):
        read_secret(TOKEN_SECRET, None, binary)


def test_a_password_keeps_its_spaces_and_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "wifi"
    path.write_text(" two  spaces \n")
    assert read_secret(PASSWORD_SECRET, None, path) == " two  spaces "
    path.write_text("line one\nline two\n")
    with pytest.raises(SecretInputError, match="more than one line"):
        read_secret(PASSWORD_SECRET, None, path)


def test_a_terminal_gets_a_prompt_that_does_not_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    asked: list[str] = []

    def secret(prompt: str, what: str = "password") -> str:
        asked.append(prompt)
        return "typed"

    monkeypatch.setattr("sys.stdin", Terminal(""))
    monkeypatch.setattr("agent.prompts.secret", secret)
    assert read_secret(PASSWORD_SECRET, None, "-") == "typed"
    assert asked == ["WiFi password (it is not shown): "]


# -- nvr register ------------------------------------------------------------------------------


@pytest.fixture
def nvr_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """An NVR's config and the registration tokens `nvr register` would use (no daemon)."""
    monkeypatch.delenv("CAMAGENT_CONFIG", raising=False)
    password = tmp_path / "password"
    password.write_text("label password\n")
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[device]\nid = "nvr-1"\nkind = "nvr"\npassword_file = "{password}"\n'
        f'[cloud]\nurl = "https://cloud.test"\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\nrun_dir = "{tmp_path / "run"}"\n'
    )
    used: list[str] = []
    monkeypatch.setattr("agent.offline.nvr_register", lambda config, token: used.append(token))

    def no_profile(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a token was given: no profile is asked")

    monkeypatch.setattr("agent.account.api.registration_token_for", no_profile)
    return path, used


def test_nvr_register_takes_the_token_from_a_file_stdin_or_the_environment(
    nvr_config: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, used = nvr_config
    argv = ["--config", str(config), "nvr", "register"]
    token_file = tmp_path / "rt"
    token_file.write_text("rt_file\n")
    assert main([*argv, "--token-file", str(token_file)]) == 0
    _stdin(monkeypatch, "rt_stdin\n")
    assert main([*argv, "--token-file", "-"]) == 0
    monkeypatch.setenv(TOKEN_ENV, "rt_env")
    assert main(argv) == 0
    assert used == ["rt_file", "rt_stdin", "rt_env"]
    assert "warning" not in capsys.readouterr().err
    # The argument still works, with the warning; both ways at once is refused.
    assert main([*argv, "rt_argv"]) == 0
    assert f"warning: a registration token {WARNING}" in capsys.readouterr().err
    assert used[-1] == "rt_argv"
    assert main([*argv, "rt_argv", "--token-file", str(token_file)]) == 1
    assert "not both" in capsys.readouterr().err


def test_nvr_register_without_a_token_makes_one_through_the_profile(
    nvr_config: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, used = nvr_config
    made: list[str | None] = []

    def registration_token_for(profile: str | None, url: str, **kwargs: Any) -> str:
        made.append(profile)
        return "rt_made"

    monkeypatch.setattr("agent.account.api.registration_token_for", registration_token_for)
    _stdin(monkeypatch, "never read: the token is made, not read\n")
    assert main(["--config", str(config), "nvr", "register", "--profile", "office"]) == 0
    assert (made, used) == (["office"], ["rt_made"])


# -- finder push and finder wifi -----------------------------------------------------------------


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What the finder would send to the device (path, body), instead of sending it."""
    sent: list[tuple[str, Any]] = []

    async def on_device(
        args: argparse.Namespace, path: str, body: Any, password: str | None = None
    ) -> dict[str, Any]:
        sent.append((path, body))
        return {"info": {"id": "dev"}, "endpoint": "https://dev", "answer": {}}

    monkeypatch.setattr("agent.finder.cli._on_device", on_device)
    return sent


def test_finder_push_reads_the_token_from_a_file_stdin_or_the_environment(
    pushed: list[tuple[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-file\n")
    assert main(["finder", "push", "dev", "--token-file", str(token_file)]) == 0
    _stdin(monkeypatch, "tok-stdin\n")
    assert main(["finder", "push", "dev", "--token-file", "-"]) == 0
    monkeypatch.setenv(TOKEN_ENV, "tok-env")
    assert main(["finder", "push", "dev"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["finder", "push", "dev", "--token", "tok-argv"]) == 0
    assert f"warning: a token {WARNING}" in capsys.readouterr().err
    tokens = [body["token"] for path, body in pushed if path == "/v1/token"]
    assert tokens == ["tok-file", "tok-stdin", "tok-env", "tok-argv"]


def test_finder_push_needs_a_token_or_a_profile_and_one_reader_of_stdin(
    pushed: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["finder", "push", "dev"])
    assert exited.value.code == 2
    assert "--token-file FILE" in capsys.readouterr().err
    argv = ["finder", "push", "dev", "--token-file", "-", "--password-stdin"]
    assert main(argv) == 1
    assert "would both read standard input" in capsys.readouterr().err
    for both in (["--token", "t", "--token-file", "f"], ["--token-file", "f", "--profile", "p"]):
        with pytest.raises(SystemExit) as exited:
            main(["finder", "push", "dev", *both])
        assert exited.value.code == 2
    assert pushed == []


def test_a_profile_wins_over_a_token_left_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "left-over")
    from agent.finder import cli as finder_cli

    profiles: list[str] = []

    async def push_from_profile(args: argparse.Namespace) -> int:
        profiles.append(args.profile)
        return 0

    monkeypatch.setattr(finder_cli, "_push_from_profile", push_from_profile)
    assert main(["finder", "push", "dev", "--profile", "office"]) == 0
    assert profiles == ["office"]


def test_finder_wifi_reads_the_network_password_from_a_file(
    pushed: list[tuple[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not a WiFi password")
    wifi = tmp_path / "wifi"
    wifi.write_text("secret pass\n")
    assert main(["finder", "wifi", "dev", "--ssid", "site", "--password-file", str(wifi)]) == 0
    assert main(["finder", "wifi", "dev", "--ssid", "open"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["finder", "wifi", "dev", "--ssid", "site", "--password", "argv pass"]) == 0
    assert f"warning: a WiFi password {WARNING}" in capsys.readouterr().err
    bodies = [body for path, body in pushed if path == "/v1/wifi"]
    assert [(b["ssid"], b["password"], b["security"]) for b in bodies] == [
        ("site", "secret pass", "WPA"),
        ("open", "", "nopass"),
        ("site", "argv pass", "WPA"),
    ]
    argv = ["finder", "wifi", "dev", "--ssid", "s", "--password-file", "-", "--password-stdin"]
    assert main(argv) == 1
    assert "would both read standard input" in capsys.readouterr().err


# -- qr make -----------------------------------------------------------------------------------


def _card(argv: list[str]) -> str:
    args = build_parser().parse_args(["qr", "make", *argv])
    qr_make.read_secrets(args)
    return qr_make.payload_from_args(args)


def test_qr_make_wifi_reads_its_password_and_token_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # a card's token is never taken from here
    wifi, token = tmp_path / "wifi", tmp_path / "token"
    wifi.write_text("secret pass\n")
    token.write_text(TOKEN + "\n")
    plain = parse(_card(["wifi", "--ssid", "site", "--password-file", str(wifi)]))
    assert plain.type == "wifi"
    assert plain.wifi is not None
    assert (plain.wifi.password, plain.wifi.security) == ("secret pass", "WPA")
    argv = ["wifi", "--ssid", "site", "--password-file", str(wifi), "--token-file", str(token)]
    combined = parse(_card(argv))
    assert (combined.type, combined.token) == ("combined", TOKEN)
    assert "warning" not in capsys.readouterr().err
    old = parse(_card(["wifi", "--ssid", "site", "--password", "argv pass", "--token", TOKEN]))
    assert old.wifi is not None
    assert (old.wifi.password, old.token) == ("argv pass", TOKEN)
    err = capsys.readouterr().err
    assert f"warning: a WiFi password {WARNING}" in err
    assert f"warning: a token {WARNING}" in err
    both = ["wifi", "--ssid", "s", "--password-file", "-", "--token-file", "-"]
    with pytest.raises(SecretInputError, match="both read standard input"):
        _card(both)


def test_qr_make_token_reads_a_file_the_environment_or_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    expected = f"CAMAGENT:T:{TOKEN};;"
    assert _card(["token", "--token-file", str(token)]) == expected
    _stdin(monkeypatch, TOKEN + "\n")
    assert _card(["token"]) == expected
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert _card(["token"]) == expected
    assert "warning" not in capsys.readouterr().err
    assert _card(["token", TOKEN]) == expected
    assert f"warning: a token {WARNING}" in capsys.readouterr().err


def test_a_card_with_a_secret_is_written_0640_and_a_url_card_as_usual(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    wifi = tmp_path / "wifi"
    wifi.write_text("secret pass\n")
    previous = os.umask(0)
    try:
        card, url = tmp_path / "card.png", tmp_path / "url.png"
        argv = ["qr", "make", "wifi", "--ssid", "s", "--password-file", str(wifi)]
        assert main([*argv, "--png", str(card)]) == 0
        assert main(["qr", "make", "url", "https://cloud.test/x", "--png", str(url)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(card.stat().st_mode) == 0o640
    assert card.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(url.stat().st_mode) == 0o666  # nothing secret: the umask decides


def test_every_secret_option_has_a_file_form() -> None:
    """No command takes a secret only on its command line."""
    parser = build_parser()
    from agent.cli import walk_commands

    secret_words = ("token", "password", "session")
    for path, sub, _help in walk_commands(parser):
        options = {o for action in sub._actions for o in action.option_strings}
        positionals = [a.dest for a in sub._actions if not a.option_strings]
        for option in options:
            if option.startswith("--") and option.removeprefix("--") in secret_words:
                assert f"{option}-file" in options, (path, option)
        if "token" in positionals:
            assert "--token-file" in options, path
