"""The parser of `camagent`: every command, its options, its help and its example."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent import __version__
from agent import config as config_mod
from agent.secret_input import DISCOURAGED, TOKEN_ENV

# One line of description comes from each command's help; the example is here, so that
# a new command without one fails tests/agent/test_cli.py.
EXAMPLES: dict[str, str] = {
    "run": "camagent --config /etc/camagent/agent.toml run -v",
    "status": "camagent status --json",
    "reset": "camagent --config /etc/camagent/agent.toml reset",
    "token": "camagent token set --token-file /root/token.txt",
    "token set": "camagent token set < token.txt",
    "token clear": "camagent token clear",
    "poll-now": "camagent poll-now",
    "nvr": "camagent nvr code",
    "nvr code": "camagent nvr code --json",
    "nvr register": "camagent nvr register --token-file - < registration-token.txt",
    "nvr checks": "camagent nvr checks",
    "qr": "camagent qr scan --apply /dev/video0",
    "qr scan": "camagent qr scan --json --timeout 20 rtsp://127.0.0.1:8554/cam",
    "qr make": "camagent qr make wifi --ssid site --password-file wifi.txt --png card.png",
    "qr make wifi": "camagent qr make wifi --ssid site --password-file wifi.txt --png card.png",
    "qr make token": "camagent qr make token --token-file token.txt --png token.png",
    "qr make url": "camagent qr make url https://cloud.example.com/registrators/activate",
    "finder": "camagent finder scan",
    "finder scan": "camagent finder scan --timeout 5 --json",
    "finder push": "camagent finder push 00:11:22:33:44:55 --profile office",
    "finder reset": "camagent finder reset 00:11:22:33:44:55",
    "finder poll-now": "camagent finder poll-now camagent-cam.local",
    "finder wifi": "camagent finder wifi 192.168.1.20:8443 --ssid site --password-file wifi.txt",
    "cloud": "camagent cloud login --profile office",
    "cloud servers": "camagent cloud servers list",
    "cloud servers add": "camagent cloud servers add office https://cloud.example.com "
    "--login admin",
    "cloud servers list": "camagent cloud servers list --json",
    "cloud servers default": "camagent cloud servers default office",
    "cloud servers remove": "camagent cloud servers remove lab",
    "cloud login": "camagent cloud login --profile office --login admin",
    "cloud sessions": "camagent cloud sessions --profile office",
    "cloud sessions end": "camagent cloud sessions end 3f2a… --profile office",
    "cloud logout": "camagent cloud logout --profile office",
    "label": "camagent label make --device-id cam-0042 --generate --password-file pw --png l.png",
    "label make": "camagent label make --device-id cam-0042 --password-file pw --svg label.svg",
    "demo": "camagent demo --once",
    "doctor": "camagent --config /etc/camagent/agent.toml doctor",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camagent",
        description="Connects this camera or NVR to its cloud with as little effort as possible.",
        epilog="examples:\n  camagent status\n  camagent --config ./agent.toml doctor\n"
        "  camagent doctor --config ./agent.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"camagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the daemon in the foreground")
    status = sub.add_parser("status", help="show the device's state")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub.add_parser("reset", help="forget the token and provision again from the first step")
    token = sub.add_parser("token", help="replace or forget the token (forced change)")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    token_set = token_sub.add_parser(
        "set",
        help="use a token (a camera's: its sealed_token), verified, from stdin or --token-file",
    )
    token_set.add_argument(
        "token",
        metavar="TOKEN",
        nargs="?",
        help=DISCOURAGED,
    )
    token_set.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help=f"read the token from FILE ('-': stdin); without it: ${TOKEN_ENV}, else stdin",
    )
    token_sub.add_parser("clear", help="forget the token (same as reset)")
    sub.add_parser("poll-now", help="restart the fast provisioning phase now")
    nvr = sub.add_parser("nvr", help="virtual NVR: activation code, registration, checks")
    nvr_sub = nvr.add_subparsers(dest="nvr_command", required=True, metavar="ACTION")
    nvr_code = nvr_sub.add_parser("code", help="the activation code to enter in the cloud")
    nvr_code.add_argument("--json", action="store_true", help="print JSON for scripts")
    nvr_register = nvr_sub.add_parser("register", help="link with a registration token")
    nvr_register.add_argument(
        "token",
        metavar="TOKEN",
        nargs="?",
        help=DISCOURAGED,
    )
    nvr_register.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help=f"read the registration token from FILE ('-': stdin); without it: ${TOKEN_ENV}, "
        "else one is made through --profile",
    )
    from agent.account.profiles import add_profile_option

    add_profile_option(nvr_register, "cloud server profile to get a token with (no token given)")
    nvr_checks = nvr_sub.add_parser("checks", help="the device-side checks the cloud shows")
    nvr_checks.add_argument("--json", action="store_true", help="print JSON for scripts")
    qr = sub.add_parser("qr", help="QR codes: read WiFi/token cards, make cards")
    qr_sub = qr.add_subparsers(dest="qr_command", required=True, metavar="ACTION")
    from agent.qr import make as qr_make
    from agent.qr import scan as qr_scan

    qr_scan.add_parser(qr_sub)
    qr_make.add_parser(qr_sub)
    from agent.account import cli as cloud_cli
    from agent.finder import cli as finder_cli

    finder_cli.add_parser(sub)
    cloud_cli.add_parser(sub)
    from agent import label

    label.add_parser(sub)
    demo = sub.add_parser("demo", help="mock cloud + agent on loopback, the story narrated")
    demo.add_argument("--once", action="store_true", help="exit when the camera is connected")
    doctor = sub.add_parser("doctor", help="check config, state, clock, DNS and TLS")
    doctor.add_argument("--json", action="store_true", help="print JSON for scripts")
    for path, subparser, help_text in walk_commands(parser):
        _global_options(subparser, argparse.SUPPRESS)
        _describe(subparser, " ".join(path), help_text)
    return parser


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--config and -v on every parser, so that they go before or after the command.

    The defaults are SUPPRESS: a subparser then leaves what the main parser read alone
    (argparse would otherwise overwrite it with the subparser's default).
    """
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="configuration file "
        f"(default: ${config_mod.CONFIG_ENV} or {config_mod.DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log debug messages; show the traceback of an unexpected error",
    )


def _describe(parser: argparse.ArgumentParser, path: str, help_text: str) -> None:
    if not parser.description:
        parser.description = help_text[:1].upper() + help_text[1:] + "."
    if not parser.epilog and path in EXAMPLES:
        parser.epilog = f"example:\n  {EXAMPLES[path]}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def walk_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every (sub)command below `parser`: its words, its parser, its one-line help."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, subparser in action.choices.items():
            yield (*path, name), subparser, helps.get(name, "")
            yield from walk_commands(subparser, (*path, name))
