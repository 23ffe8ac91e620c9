"""`camagent [--config PATH] COMMAND` (docs/design.md §10): exit codes, messages, status JSON."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import __version__, hints
from agent.cli import format_status, main
from agent.config import CONFIG_ENV
from agent.control_socket import serve
from agent.token_codec import sign_token
from agent.token_store import DeviceRecord, TokenStore
from agent.trust import PLAIN_REFUSED
from tests.agent.tokens import LABEL_PASSWORD, label_key, sealed

DEVICE = "aa:bb:cc:dd:ee:ff"
CLOUD = "https://cloud.test"


@pytest.fixture
def signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def config_path(tmp_path: Path, signer: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    pub = tmp_path / "signing.pub.pem"
    pub.write_bytes(
        signer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    password = tmp_path / "password"
    password.write_text(LABEL_PASSWORD + "\n")
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[device]
id = "aa-bb-cc-dd-ee-ff"
password_file = "{password}"
[cloud]
url = "{CLOUD}"
trust_keys = ["{pub}"]
[paths]
state_dir = "{tmp_path / "state"}"
run_dir = "{tmp_path / "run"}"
"""
    )
    return path


def token(signer: Ed25519PrivateKey, **changes: Any) -> str:
    payload = {
        "v": 1,
        "sub": DEVICE,
        "kind": "camera",
        "org": "acme",
        "api": CLOUD,
        "iat": 1_700_000_000,
        "jti": "t-42",
    }
    payload.update(changes)
    return sign_token(payload, signer)


def sealed_token(signer: Ed25519PrivateKey, **changes: Any) -> str:
    """A token as a camera takes it outside its poll: sealed for its label password."""
    return sealed(token(signer, **changes))


def token_set(config_path: Path, value: str) -> list[str]:
    """`token set --token-file F`: a token never goes on a command line (ps shows those)."""
    path = config_path.parent / "token.txt"
    path.write_text(value + "\n")
    return ["token", "set", "--token-file", str(path)]


def usage_exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


# -- usage errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["token"], ["token", "bogus"], ["status", "--yaml"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_exit(argv) == 2
    err = capsys.readouterr().err
    assert "usage: camagent" in err
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_exit(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"camagent {__version__}"


# -- failures: exit 1 and one line -------------------------------------------------------


def one_line_failure(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err
    assert err.startswith("camagent: ")
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    return err


def test_a_broken_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[device]\nkind = "dvr"\n')
    err = one_line_failure(capsys, ["--config", str(path), "status"])
    assert str(path) in err
    assert "device.kind" in err


def test_a_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_failure(capsys, ["--config", str(tmp_path / "none.toml"), "status", "--json"])
    assert "no such configuration file" in err


def test_config_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.toml"
    path.write_text("[nope]\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    err = one_line_failure(capsys, ["reset"])
    assert str(path) in err
    assert "unknown section [nope]" in err


@pytest.mark.parametrize("bad", ["garbage", "a.b", "x" * 9000])
def test_a_garbage_token(config_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    err = one_line_failure(capsys, ["--config", str(config_path), *token_set(config_path, bad)])
    assert "token" in err
    assert not (config_path.parent / "state" / "state.bin").exists()


def test_a_forged_token_leaves_the_state_alone(
    config_path: Path, signer: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    good = token(signer)
    assert main(["--config", str(config_path), *token_set(config_path, sealed(good))]) == 0
    capsys.readouterr()
    forged = sealed_token(Ed25519PrivateKey.generate())  # sealed right, signed by nobody
    err = one_line_failure(capsys, ["--config", str(config_path), *token_set(config_path, forged)])
    assert "signature" in err
    assert TokenStore(config_path.parent / "state").load().token == good


def test_token_set_refuses_a_plain_token_and_one_sealed_for_another_password(
    config_path: Path, signer: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/design.md §2.9: what a MAC squatter's org gets from the cloud, either form."""
    plain = token(signer, org="squatter")
    err = one_line_failure(capsys, ["--config", str(config_path), *token_set(config_path, plain)])
    assert err == f"camagent: {PLAIN_REFUSED}\n"
    squatters = sealed(plain, "what-the-squatter-typed")
    argv = ["--config", str(config_path), *token_set(config_path, squatters)]
    err = one_line_failure(capsys, argv)
    assert "does not open with this device's key" in err
    assert "sealed for another password" in err
    assert not (config_path.parent / "state" / "state.bin").exists()


def test_poll_now_without_a_daemon(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_failure(capsys, ["--config", str(config_path), "poll-now"])
    assert "no camagent daemon is running" in err


# -- without a daemon --------------------------------------------------------------------


def status_json(config_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["--config", str(config_path), "status", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    status: dict[str, Any] = json.loads(out)
    return status


def test_status_json_without_a_daemon(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = status_json(config_path, capsys)
    assert status["device_id"] == DEVICE
    assert status["kind"] == "camera"
    assert status["state"] == "provisioning"
    assert status["state"] in {
        "provisioning",
        "connecting",
        "connected",
        "disconnected",
        "awaiting_activation",
    }
    assert status["token"] == {"present": False}
    assert set(status["provisioning"]) >= {"attempts", "phase", "next_poll_in"}
    assert status["provisioning"]["attempts"] == 0
    assert status["version"] == __version__


def test_token_set_then_reset_without_a_daemon(
    config_path: Path, signer: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    state = config_path.parent / "state"
    good = token(signer)
    assert main(["--config", str(config_path), *token_set(config_path, sealed(good))]) == 0
    assert "Token stored" in capsys.readouterr().out
    assert TokenStore(state).load().token == good

    status = status_json(config_path, capsys)
    assert status["token"] == {
        "present": True,
        "org": "acme",
        "api": CLOUD,
        "jti": "t-42",
        "iat": 1_700_000_000,
    }
    assert status["state"] == "disconnected"

    assert main(["--config", str(config_path), "reset"]) == 0
    assert "Token forgotten" in capsys.readouterr().out
    # The token is gone; K, derived to open the seal, stays (as a poll's K stays).
    record = TokenStore(state).load()
    assert record.provisioning_key() == label_key()
    assert record == DeviceRecord(device_id=DEVICE, key=record.key, key_stamp=record.key_stamp)
    assert status_json(config_path, capsys)["token"] == {"present": False}


def test_token_clear_is_reset(
    config_path: Path, signer: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(config_path), *token_set(config_path, sealed_token(signer))]
    assert main(argv) == 0
    assert main(["--config", str(config_path), "token", "clear"]) == 0
    assert not TokenStore(config_path.parent / "state").load().has_token


def test_human_status_without_a_daemon(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config_path), "status"]) == 0
    out = capsys.readouterr().out
    assert DEVICE in out
    assert "daemon not running" in out
    assert "token         none" in out


def test_status_with_a_long_run_dir_falls_back_to_the_state_file(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config_path.read_text().replace(
        f'run_dir = "{tmp_path / "run"}"', f'run_dir = "{tmp_path / ("r" * 120)}"'
    )
    assert text != config_path.read_text()
    config_path.write_text(text)
    assert status_json(config_path, capsys)["device_id"] == DEVICE


# -- with a daemon -----------------------------------------------------------------------


async def test_commands_go_to_a_running_daemon(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    status = {
        "device_id": DEVICE,
        "kind": "camera",
        "name": "",
        "state": "connected",
        "token": {"present": True, "org": "acme", "api": CLOUD, "jti": "t-1", "iat": 0},
        "provisioning": {"attempts": 0, "phase": "off", "next_poll_in": None},
        "cloud": {"url": CLOUD, "connected_since": 1_700_000_000.0},
        "version": __version__,
        "daemon": True,
    }

    async def handler(cmd: str, args: dict[str, Any]) -> Any:
        calls.append((cmd, args))
        return status

    server = await serve(config_path.parent / "run" / "control.sock", handler)
    try:
        argv = ["--config", str(config_path)]
        assert await asyncio.to_thread(main, [*argv, "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == status
        assert await asyncio.to_thread(main, [*argv, *token_set(config_path, "a.b")]) == 0
        assert await asyncio.to_thread(main, [*argv, "reset"]) == 0
        assert await asyncio.to_thread(main, [*argv, "poll-now"]) == 0
    finally:
        server.close()
        await server.wait_closed()
    assert calls == [
        ("status", {}),
        ("token_set", {"token": "a.b"}),
        ("reset", {}),
        ("poll_now", {}),
    ]
    # Nothing was written by the CLI itself: the daemon owns the state while it runs.
    assert not (config_path.parent / "state" / "state.bin").exists()


# -- format_status -----------------------------------------------------------------------


def test_format_status_connected() -> None:
    since = time.mktime((2024, 5, 6, 7, 8, 9, 0, 0, -1))
    text = format_status(
        {
            "device_id": DEVICE,
            "kind": "camera",
            "name": "Lobby",
            "state": "connected",
            "token": {"present": True, "org": "acme", "api": CLOUD, "jti": "t-9", "iat": since},
            "provisioning": {"attempts": 0, "phase": "off", "next_poll_in": None},
            "cloud": {"url": CLOUD, "connected_since": since},
            "version": "9.9.9",
            "daemon": True,
        }
    )
    lines = text.splitlines()
    assert lines[0] == f"camagent 9.9.9 — camera {DEVICE} (Lobby)"
    assert "state         connected" in text
    assert "daemon not running" not in text
    assert f"cloud         {CLOUD}" in text
    assert "connected     since 2024-05-06 07:08:09" in text
    assert "token         org acme, id t-9, issued 2024-05-06 07:08:09" in text
    assert "provisioning  off (token held)" in text


def test_format_status_provisioning() -> None:
    last_at = time.mktime((2024, 1, 2, 3, 4, 5, 0, 0, -1))
    text = format_status(
        {
            "device_id": DEVICE,
            "kind": "camera",
            "name": "",
            "state": "provisioning",
            "token": {"present": False},
            "provisioning": {
                "attempts": 3,
                "phase": "fast",
                "next_poll_in": 42.34,
                "last_result": "no token yet",
                "last_at": last_at,
            },
            "cloud": {"url": CLOUD, "connected_since": None},
            "version": "9.9.9",
            "daemon": True,
        }
    )
    assert text.splitlines()[0] == f"camagent 9.9.9 — camera {DEVICE}"
    assert "state         provisioning" in text
    assert "token         none" in text
    assert "provisioning  fast phase, 3 request(s) so far, next in 42.3 s" in text
    assert "last poll     no token yet at 2024-01-02 03:04:05" in text
    assert "connected     since" not in text


def test_error_messages_reach_the_terminal_without_control_characters(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import cli
    from agent.errors import CamagentError

    def refuse(args: object) -> int:
        raise CamagentError("the device said: \x1b]0;owned\x07\x1b[2J\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "reset", refuse)
    assert cli.main(["reset"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "\x07" not in err
    assert "?]0;owned??[2J\nsecond line" in err


# -- secrets off the command line: token set ------------------------------------------------


def test_token_set_reads_stdin_a_file_or_warns_about_the_argument(
    config_path: Path,
    signer: Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    state = config_path.parent / "state"
    argv = ["--config", str(config_path), "token", "set"]
    first = token(signer, jti="stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO(sealed(first) + "\n"))
    assert main(argv) == 0
    assert capsys.readouterr().err == ""
    assert TokenStore(state).load().token == first

    second = token(signer, jti="file")
    assert main([*argv[:2], *token_set(config_path, sealed(second))]) == 0
    assert capsys.readouterr().err == ""
    assert TokenStore(state).load().token == second

    third = token(signer, jti="argument")
    assert main([*argv, sealed(third)]) == 0
    err = capsys.readouterr().err
    assert "warning: a token on the command line is visible to every local user" in err
    assert TokenStore(state).load().token == third

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "no token in standard input" in one_line_failure(capsys, argv)
    assert "both" in one_line_failure(capsys, [*argv, sealed(third), "--token-file", "x"])
    missing = one_line_failure(capsys, [*argv, "--token-file", str(config_path.parent / "no")])
    assert "cannot read the token file" in missing
    assert TokenStore(state).load().token == third


# -- the parser: global options anywhere, one profile option, help pages --------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "C", "-v", "status", "--json"],
        ["status", "--config", "C", "-v", "--json"],
        ["-v", "status", "--json", "--config", "C"],
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    from agent.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.config, args.verbose, args.json) == ("C", True, True)


def test_global_options_deep_in_subcommands_and_defaults() -> None:
    from agent.cli import build_parser

    parser = build_parser()
    deep = parser.parse_args(["cloud", "sessions", "end", "X", "--config", "C", "-v"])
    assert (deep.config, deep.verbose) == ("C", True)
    plain = parser.parse_args(["status"])
    assert not hasattr(plain, "config") or plain.config is None


@pytest.mark.parametrize(
    "argv",
    [
        ["cloud", "login", "--profile", "P"],
        ["cloud", "login", "--server", "P"],
        ["cloud", "sessions", "--profile", "P"],
        ["cloud", "sessions", "end", "X", "--server", "P"],
        ["cloud", "logout", "--profile", "P"],
        ["finder", "push", "dev", "--profile", "P"],
        ["finder", "push", "dev", "--server", "P"],
        ["nvr", "register", "--profile", "P"],
        ["nvr", "register", "--server", "P"],
    ],
)
def test_one_profile_option_everywhere(argv: list[str]) -> None:
    from agent.cli import build_parser

    assert build_parser().parse_args(argv).profile == "P"


def test_every_command_has_a_description_and_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agent.cli import build_parser, walk_commands

    commands = list(walk_commands(build_parser()))
    assert len(commands) >= 30
    for path, _parser, _help in commands:
        assert usage_exit([*path, "--help"]) == 0
        out = capsys.readouterr().out
        description = out.split("\n\n")[1]
        assert description.strip(), (path, out)
        assert "\n" not in description.strip(), (path, out)
        assert re.search(r"\nexamples?:\n  camagent ", out), (path, out)


def test_a_closed_stdout_ends_quietly_with_the_broken_pipe_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `camagent --version >&-`: Python starts with sys.stdout None; no AttributeError.
    monkeypatch.setattr("sys.stdout", None)
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0  # argparse's own exit, before our handlers
    sys.stdout.close()  # main's stand-in for the closed stdout, which a process keeps
    monkeypatch.setattr("sys.stdout", None)
    assert main(["qr", "make", "url", "https://example.com"]) == 1
    sys.stdout.close()
    assert capsys.readouterr().err == ""


def test_a_secret_without_a_terminal_reads_a_line_and_names_the_end_of_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from agent import prompts

    monkeypatch.setattr("sys.stdin", io.StringIO("hunter2\n"))
    assert prompts.secret("Password: ") == "hunter2"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(
        prompts.NoInput, match=re.escape("standard input ended (it is not a terminal)")
    ):
        prompts.secret("Password: ")
    assert "echoed" not in capsys.readouterr().err


def test_label_permission_hint_names_the_directory_of_a_file_not_made_yet(tmp_path: Path) -> None:
    import errno
    import getpass as getpass_mod

    from agent.label import _why

    refused = PermissionError(errno.EACCES, "Permission denied")
    missing = _why(refused, tmp_path / "label.png")
    assert f"owner of the directory {tmp_path}" in missing
    assert getpass_mod.getuser() in missing
    (tmp_path / "label.png").write_bytes(b"")
    assert "owner of the file" in _why(refused, tmp_path / "label.png")


def test_nvr_register_without_a_daemon_says_it_connects_when_run(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent import offline

    config_path.write_text(
        config_path.read_text().replace("[device]\n", '[device]\nkind = "nvr"\n')
    )
    (config_path.parent / "reg.txt").write_text("registration-token\n")
    registered: list[str] = []
    monkeypatch.setattr(offline, "nvr_register", lambda config, token: registered.append(token))
    argv = ["--config", str(config_path), "nvr", "register"]
    assert main([*argv, "--token-file", str(config_path.parent / "reg.txt")]) == 0
    assert registered == ["registration-token"]
    out = capsys.readouterr().out
    assert "connects with its token" not in out
    start = shlex.join([*hints.program(), "--config", str(config_path), "run"])
    assert f"it connects when `{start}` runs" in out


def test_permission_on_a_file_not_made_yet_names_the_directorys_owner(tmp_path: Path) -> None:
    """Issue 26: "run as the file's owner" for a file that does not exist; the directory
    that refused is the one whose owner and mode matter."""
    import errno
    import getpass as getpass_mod

    from agent.file_access import permission_message

    missing = tmp_path / "not-made-yet.toml"
    message = permission_message(PermissionError(errno.EACCES, "Permission denied", str(missing)))
    assert f"{missing}: permission denied ({tmp_path}: owner {getpass_mod.getuser()}" in message
    assert "file's owner" not in message


async def test_the_daemons_refusal_names_the_reset_of_this_config(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 26: `poll-now` on a linked device said "run `camagent reset` first", which,
    run as printed, resets the device of the default config instead."""
    from agent.commands import NotNow

    async def handler(cmd: str, args: dict[str, Any]) -> Any:
        raise NotNow("this device holds a token; run `camagent reset` first to provision again")

    server = await serve(config_path.parent / "run" / "control.sock", handler)
    try:
        argv = ["--config", str(config_path), "poll-now"]
        assert await asyncio.to_thread(main, argv) == 1
    finally:
        server.close()
        await server.wait_closed()
    reset = shlex.join([*hints.program(), "--config", str(config_path), "reset"])
    assert f"run `{reset}` first" in capsys.readouterr().err
