"""`camagent [--config PATH] COMMAND` (docs/design.md §10). Exit codes: 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent import config as config_mod
from agent.errors import CamagentError, DaemonUnavailable
from agent.secret_input import DISCOURAGED, TOKEN_ENV, Secret, read_secret

EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 130

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


def main(argv: Sequence[str] | None = None) -> int:
    verbose = False
    stdout_closed = sys.stdout is None  # `camagent status >&-`: Python gives us None
    if stdout_closed:
        import os

        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.config = getattr(args, "config", None)
        verbose = args.verbose = bool(getattr(args, "verbose", False))
        handler: Callable[[argparse.Namespace], int] = COMMANDS[args.command]
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        # Output that had nowhere to go ends quietly, with a broken pipe's exit code.
        return code or (EXIT_FAILURE if stdout_closed else EXIT_OK)
    except CamagentError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            print(file=sys.stderr)  # a prompt's line, if any, ends before the shell's
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`camagent status | head -2`): stop quietly, as Unix tools
        # do, and keep Python from complaining while it flushes stdout at exit.
        _silence_stdout()
        return EXIT_FAILURE
    except PermissionError as exc:
        from agent.file_access import permission_message

        return _fail(permission_message(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except Exception as exc:
        # A bug: one line for people, the whole traceback with -v for the report.
        if verbose:
            import traceback

            traceback.print_exc()
        return _fail(
            f"unexpected error ({type(exc).__name__}: {exc}); run with -v for details "
            "and please report it"
        )


def _fail(message: str) -> int:
    with contextlib.suppress(OSError):  # stderr itself gone: the exit code still says it
        print(f"camagent: {_terminal_safe(message)}", file=sys.stderr)
    return EXIT_FAILURE


def _silence_stdout() -> None:
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _terminal_safe(text: str) -> str:
    # Messages may quote what a device or a cloud said: no escape sequence reaches the
    # terminal from there.
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)


def _config(args: argparse.Namespace) -> tuple[config_mod.Config, Path]:
    path = config_mod.resolve_path(args.config)
    readable_or_explain(path)
    return config_mod.load(path), path


def readable_or_explain(path: Path) -> None:
    import errno
    import os

    from agent.file_access import permission_message

    if path.exists() and not os.access(path, os.R_OK):
        denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        raise CamagentError(permission_message(denied))


def _daemon(config: config_mod.Config, cmd: str, **cmd_args: Any) -> Any:
    from agent import control_socket

    return control_socket.request(config.control_socket, cmd, cmd_args)


# -- commands ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from agent import daemon, logging_setup

    logging_setup.setup(logging.DEBUG if args.verbose else logging.INFO)
    config, path = _config(args)
    return daemon.run(config, path)


def cmd_status(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    try:
        status = _daemon(config, "status")
    except DaemonUnavailable:
        from agent import offline

        status = offline.status(config)
    if args.json:
        print(json.dumps(status))
    else:
        print(format_status(status))
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    try:
        _daemon(config, "reset")
        print("Token forgotten; the device is provisioning again from the first step.")
    except DaemonUnavailable:
        from agent import offline

        offline.reset(config)
        print("Token forgotten; provisioning starts when the daemon starts.")
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    if args.token_command == "clear":
        return cmd_reset(args)
    config, _ = _config(args)
    token = read_token_argument(args)
    try:
        _daemon(config, "token_set", token=token)
        print("Token replaced; the device is connecting with it.")
    except DaemonUnavailable:
        from agent import offline

        offline.set_token(config, token)
        print("Token stored; the device connects with it when the daemon starts.")
    return EXIT_OK


TOKEN_PROMPT = "Token (paste it, then press Enter; it is not shown): "
# One way to read a secret for every command (agent/secret_input.py).
TOKEN_SET_SECRET = Secret(
    "token",
    "TOKEN",
    "--token-file",
    TOKEN_ENV,
    instead=f"`camagent token set < FILE`, --token-file FILE or {TOKEN_ENV}=…",
)
NVR_REGISTER_SECRET = Secret(
    "registration token",
    "TOKEN",
    "--token-file",
    TOKEN_ENV,
    instead=f"`camagent nvr register --token-file - < FILE` or {TOKEN_ENV}=…",
)


def read_token_argument(args: argparse.Namespace) -> str:
    """The token for `token set`: from --token-file, else $CAMAGENT_TOKEN, else stdin;
    TOKEN on the command line still works (scripts of older releases use it) but warns:
    every local user can read a command line in /proc/PID/cmdline, and shells keep it in
    their history."""
    token = read_secret(
        TOKEN_SET_SECRET, args.token, args.token_file, stdin=True, prompt=TOKEN_PROMPT
    )
    assert token is not None  # stdin=True: read, or refused
    return token


def cmd_poll_now(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    _daemon(config, "poll_now")
    print("Polling now; the fast phase starts again.")
    return EXIT_OK


def cmd_nvr(args: argparse.Namespace) -> int:
    config, config_path = _config(args)
    if config.device.kind != "nvr":
        raise CamagentError(
            f'this device is a {config.device.kind}: set device.kind = "nvr" '
            f"in {config.source} to use it as an NVR"
        )
    if args.nvr_command == "checks":
        from agent.checks import format_results
        from agent.nvr.checks import run_checks

        results = run_checks(config)
        print(json.dumps([r.to_json() for r in results]) if args.json else format_results(results))
        return EXIT_FAILURE if any(r.status == "fail" for r in results) else EXIT_OK
    if args.nvr_command == "register":
        args.token = read_secret(NVR_REGISTER_SECRET, args.token, args.token_file)
        if args.token is None:
            from agent.account.api import registration_token_for

            note = "made by camagent nvr register"
            args.token = registration_token_for(
                args.profile, config.cloud.url, title=config.device.name, note=note
            )
        try:
            _daemon(config, "nvr_register", token=args.token)
        except DaemonUnavailable:
            from agent import offline
            from agent.doctor import camagent_command

            offline.nvr_register(config, args.token)
            # Nothing connects until the daemon runs: say so, and how to start it.
            start = camagent_command(config_path, "run")
            print(f"Linked: the NVR is registered with the cloud; it connects when `{start}` runs.")
            return EXIT_OK
        print("Linked: the NVR is registered with the cloud and connects with its token.")
        return EXIT_OK
    try:
        activation = _daemon(config, "nvr_code")
    except DaemonUnavailable:
        from agent import offline

        activation = offline.nvr_code(config)
    if args.json:
        print(json.dumps(activation))
    else:
        print(format_activation(activation))
    return EXIT_OK


def format_activation(activation: dict[str, Any]) -> str:
    from agent.qr.terminal import render

    try:
        qr = render(activation["activation_url"])
    except ImportError:  # qrcode is recommended, not required, on small images
        qr = "(install python3-qrcode to see the URL as a QR code)"
    return "\n".join(
        [
            f"Activation code:  {activation['code']}",
            f"Valid until:      {_clock(activation['expires_at'])}",
            "Enter it in the cloud (Registrators → Add registrator → Connect), or open:",
            f"  {activation['activation_url']}",
            "",
            qr,
        ]
    )


def cmd_qr(args: argparse.Namespace) -> int:
    if args.qr_command == "scan":
        from agent.qr import scan as qr_scan

        return qr_scan.run(args, lambda: _config(args)[0])
    from agent.qr import make as qr_make

    return qr_make.run(args)


def cmd_finder(args: argparse.Namespace) -> int:
    from agent.finder import cli as finder_cli

    return finder_cli.run(args)


def cmd_cloud(args: argparse.Namespace) -> int:
    from agent.account import cli as cloud_cli

    return cloud_cli.run(args)


def cmd_label(args: argparse.Namespace) -> int:
    from agent import label

    return label.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from cloud_mock import demo
    except ImportError:  # the Debian package ships the agent without the mock cloud
        raise CamagentError(
            "the demo needs the mock cloud, which devices do not get: from a source "
            "checkout run scripts/demo.sh (or pip install ./cloud_mock, then camagent demo)"
        ) from None

    return demo.run(once=args.once)


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent import doctor

    path = config_mod.resolve_path(args.config)
    results = doctor.run_checks(path)
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    else:
        print(doctor.format_results(results))
    return EXIT_FAILURE if any(r.status == "fail" for r in results) else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "status": cmd_status,
    "finder": cmd_finder,
    "cloud": cmd_cloud,
    "reset": cmd_reset,
    "token": cmd_token,
    "poll-now": cmd_poll_now,
    "nvr": cmd_nvr,
    "qr": cmd_qr,
    "label": cmd_label,
    "demo": cmd_demo,
    "doctor": cmd_doctor,
}


# -- human output -----------------------------------------------------------------------


def format_status(status: dict[str, Any]) -> str:
    token = status["token"]
    prov = status["provisioning"]
    lines = [
        f"camagent {status['version']} — {status['kind']} {status['device_id']}"
        + (f" ({status['name']})" if status.get("name") else ""),
        f"  state         {status['state']}"
        + ("" if status.get("daemon") else "  (daemon not running)"),
        f"  cloud         {status['cloud']['url']}",
    ]
    since = status["cloud"].get("connected_since")
    if since:
        lines.append(f"  connected     since {_clock(since)}")
    if token.get("present"):
        issued = _clock(token["iat"]) if "iat" in token else "?"
        org, jti = token.get("org", "?"), token.get("jti", "?")
        lines.append(f"  token         org {org}, id {jti}, issued {issued}")
    else:
        lines.append("  token         none")
    if prov["phase"] == "off":
        lines.append("  provisioning  off" + (" (token held)" if token.get("present") else ""))
    else:
        nxt = prov["next_poll_in"]
        lines.append(
            f"  provisioning  {prov['phase']} phase, {prov['attempts']} request(s) so far, "
            f"next in {nxt:.1f} s"
        )
    if status.get("activation"):
        code = status["activation"]
        lines.append(
            f"  activation    code {code['code']}, valid until {_clock(code['expires_at'])}"
        )
        lines.append(f"                {code['activation_url']}")
    if prov.get("last_result"):
        lines.append(f"  last poll     {prov['last_result']} at {_clock(prov['last_at'])}")
    from agent.doctor import no_token_hint

    if hint := no_token_hint(status):
        lines.append(f"  hint          {hint}")
    lines.extend(_format_local_api(status.get("local_api")))
    return "\n".join(lines)


def _format_local_api(local: dict[str, Any] | None) -> list[str]:
    if not local:  # the daemon is not running: nothing listens
        return []
    if not local.get("enabled"):
        return ["  local API     off"]
    if local.get("error") and not local.get("port"):
        return [f"  local API     {local['error']}"]
    if not local.get("port"):
        return ["  local API     starting"]
    where = f"HTTPS on {local['listen']} port {local['port']}"
    mdns = f", on mDNS as {local['mdns']!r}" if local.get("mdns") else ""
    return [f"  local API     {where}{mdns}", f"  fingerprint   {local['fp']}"]


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
