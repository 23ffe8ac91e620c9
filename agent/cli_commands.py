"""The handlers of `camagent`'s commands: each takes the parsed arguments, returns the exit code."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent import config as config_mod
from agent import hints
from agent.cli_output import format_activation, format_status
from agent.errors import CamagentError, DaemonUnavailable
from agent.secret_input import TOKEN_ENV, Secret, read_secret

EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 130


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


def _ask(config: config_mod.Config, name: str) -> Any:
    """The daemon's answer to command `name`, or, with no daemon, the same command of its
    table carried out on the state on disk."""
    try:
        return _daemon(config, name)
    except DaemonUnavailable:
        from agent import offline

        return offline.ask(config, name)


def cmd_status(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    status = _ask(config, "status")
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
TOKEN_SET_SECRET = Secret("token", "TOKEN", "--token-file", TOKEN_ENV)
NVR_REGISTER_SECRET = Secret("registration token", "TOKEN", "--token-file", TOKEN_ENV)


def _advising(spec: Secret, hint: str, stdin: str = "") -> Secret:
    """`spec` whose warning names the command as this command line runs it."""
    return replace(spec, instead=f"`{hints.show(hint)}{stdin}`, --token-file FILE or {TOKEN_ENV}=…")


def read_token_argument(args: argparse.Namespace) -> str:
    """The token for `token set`: from --token-file, else $CAMAGENT_TOKEN, else stdin;
    TOKEN on the command line still works (scripts of older releases use it) but warns:
    every local user can read a command line in /proc/PID/cmdline, and shells keep it in
    their history."""
    spec = _advising(TOKEN_SET_SECRET, "token set")
    token = read_secret(spec, args.token, args.token_file, stdin=True, prompt=TOKEN_PROMPT)
    assert token is not None  # stdin=True: read, or refused
    return token


def cmd_poll_now(args: argparse.Namespace) -> int:
    config, _ = _config(args)
    _daemon(config, "poll_now")
    print("Polling now; the fast phase starts again.")
    return EXIT_OK


def cmd_nvr(args: argparse.Namespace) -> int:
    config, _ = _config(args)
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
        spec = _advising(NVR_REGISTER_SECRET, "nvr register", " < FILE")
        args.token = read_secret(spec, args.token, args.token_file)
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

            offline.nvr_register(config, args.token)
            # Nothing connects until the daemon runs: say so, and how to start it.
            start = hints.show("run")
            print(f"Linked: the NVR is registered with the cloud; it connects when `{start}` runs.")
            return EXIT_OK
        print("Linked: the NVR is registered with the cloud and connects with its token.")
        return EXIT_OK
    activation = _ask(config, "nvr_code")
    if args.json:
        print(json.dumps(activation))
    else:
        print(format_activation(activation))
    return EXIT_OK


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
            "checkout run scripts/demo.sh (or pip install ./cloud_mock, then "
            f"`{hints.show('demo')}`)"
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
