"""`camagent-conformance URL`: check a cloud against camagent's protocol.

Plays the device side (a camera, an NVR, and a few misbehaving devices) against the
cloud at URL and prints one line per rule: PASS, FAIL or SKIP, the rule, its section of
docs/design.md and what was seen. Exit status 1 when any rule failed, 2 on bad usage or
when the run could not start (the cloud unreachable, a login refused).

Cloud-side actions (adding the kit's cameras, revoking one, activating an NVR code,
watching a camera so that the cloud opens a video tunnel to it...) go through hooks when
given, else through the cloud's user API as docs/api/openapi.yaml describes it, logged in
with --login/--password-file or --session-file (or their environment variables: secrets
stay off the command line, agent/secret_input.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from pathlib import Path

import aiohttp

from agent.errors import CamagentError
from agent.secret_input import DISCOURAGED, Secret, is_stdin, read_secret
from cloud_mock.conformance.checks import (
    DEFAULT_TIMING_SAMPLES,
    DEFAULT_TIMING_TOLERANCE_S,
    Conformance,
    Options,
)
from cloud_mock.conformance.cloud_side import CloudSide, CloudSideError, Hooks
from cloud_mock.conformance.report import Report

ENV_PASSWORD = "CAMAGENT_CONFORMANCE_PASSWORD"
ENV_SESSION = "CAMAGENT_CONFORMANCE_SESSION"
ENV_OTHER_PASSWORD = "CAMAGENT_CONFORMANCE_OTHER_PASSWORD"
PROGRAM = "camagent-conformance"
# One way to read a secret for every command (agent/secret_input.py).
PASSWORD = Secret(
    "password", "--password", "--password-file", ENV_PASSWORD, password=True, program=PROGRAM
)
SESSION = Secret("session secret", "--session", "--session-file", ENV_SESSION, program=PROGRAM)
OTHER_PASSWORD = Secret(
    "second organization's password",
    "--other-password",
    "--other-password-file",
    ENV_OTHER_PASSWORD,
    password=True,
    program=PROGRAM,
)


class UsageError(Exception):
    """The run cannot start; the message says why."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camagent-conformance",
        description="Check a cloud against camagent's device protocol (docs/api/, "
        "docs/design.md §2, §3, §11, §12).",
        epilog=f"Environment: {ENV_PASSWORD} (instead of --password-file), {ENV_SESSION} "
        f"(instead of --session-file), {ENV_OTHER_PASSWORD} (instead of "
        "--other-password-file). Hooks run as argument vectors (split like a shell "
        "would, never run by one), with their inputs in the environment.",
    )
    parser.add_argument("url", help="the cloud's https origin, e.g. https://cloud.example:8443")
    parser.add_argument("--ca", type=Path, help="PEM file of the CA to trust for the cloud")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    api = parser.add_argument_group("the cloud's user API (default for cloud-side actions)")
    api.add_argument("--login", default="admin", help="user to log in as (default admin)")
    api.add_argument(
        "--password-file", type=Path, help="file holding that user's password ('-': stdin)"
    )
    session = api.add_mutually_exclusive_group()
    session.add_argument(
        "--session-file",
        type=Path,
        metavar="FILE",
        help="file holding an API session secret, instead of a login ('-': stdin)",
    )
    session.add_argument(
        "--session",
        metavar="SECRET",
        help=DISCOURAGED,
    )
    other = parser.add_argument_group(
        "a second organization (a MAC squatter, for the claims rule of §2.6)"
    )
    other.add_argument("--other-login", help="a user of another organization than --login's")
    other.add_argument(
        "--other-password-file", type=Path, help="file holding that user's password ('-': stdin)"
    )
    hooks = parser.add_argument_group("hooks (commands instead of the user API)")
    hooks.add_argument(
        "--add-device-cmd", metavar="CMD", help="adds a camera: DEVICE_ID and PASSWORD in env"
    )
    hooks.add_argument("--revoke-device-cmd", metavar="CMD", help="revokes it: DEVICE_ID in env")
    hooks.add_argument(
        "--send-command-cmd",
        metavar="CMD",
        help="sends it a command: DEVICE_ID, COMMAND in env; may print {ok, data} as JSON",
    )
    hooks.add_argument(
        "--activate-code-cmd", metavar="CMD", help="activates an NVR code: CODE in env"
    )
    hooks.add_argument(
        "--registration-token-cmd", metavar="CMD", help="prints a new NVR registration token"
    )
    hooks.add_argument(
        "--overload-cmd", metavar="CMD", help="makes the next poll answer 429/503 + Retry-After"
    )
    hooks.add_argument(
        "--add-device-other-org-cmd",
        metavar="CMD",
        help="adds a camera in a second organization (not the one --add-device-cmd adds "
        "to): DEVICE_ID and PASSWORD in env",
    )
    hooks.add_argument(
        "--watch-cmd",
        metavar="CMD",
        help="makes the cloud open a video tunnel to a camera (a viewer of its live video): "
        "DEVICE_ID in env; may exit at once or run until the kit ends it (SIGTERM)",
    )
    timing = parser.add_argument_group("timing")
    timing.add_argument(
        "--timing-samples",
        type=int,
        default=DEFAULT_TIMING_SAMPLES,
        help=f"polls of each kind compared for timing (default {DEFAULT_TIMING_SAMPLES})",
    )
    timing.add_argument(
        "--timing-tolerance-ms",
        type=float,
        default=DEFAULT_TIMING_TOLERANCE_S * 1000,
        help="largest allowed gap between the median answer times of an unknown device and "
        f"a wrong proof (default {DEFAULT_TIMING_TOLERANCE_S * 1000:g})",
    )
    return parser


def _credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(password, session), each from its file ('-': stdin), else its environment
    variable; --session on the command line still works, with a warning."""
    readers = [
        option
        for option, path in (
            ("--password-file", args.password_file),
            ("--session-file", args.session_file),
            ("--other-password-file", args.other_password_file),
        )
        if is_stdin(path)
    ]
    if len(readers) > 1:
        raise UsageError(f"{readers[0]} - and {readers[1]} - cannot both read stdin")
    try:
        password = read_secret(PASSWORD, None, args.password_file)
        session = read_secret(SESSION, args.session, args.session_file)
    except CamagentError as error:
        raise UsageError(str(error)) from None
    return password, session


def _other_password(args: argparse.Namespace) -> str | None:
    """The second organization's user's password, when --other-login is given."""
    if not args.other_login:
        return None
    try:
        return read_secret(OTHER_PASSWORD, None, args.other_password_file)
    except CamagentError as error:
        raise UsageError(str(error)) from None


def _ssl_context(ca: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as error:
        raise UsageError(f"--ca {ca}: {error}") from None


async def run(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    hooks: Hooks | None = None,
    login: str | None = None,
    password: str | None = None,
    session: str | None = None,
    options: Options | None = None,
    other_login: str | None = None,
    other_password: str | None = None,
) -> Report:
    """Run every check against the cloud at `url`; UsageError if it cannot start."""
    if not url.startswith("https://"):
        raise UsageError(f"{url!r}: a camagent cloud is an https:// origin")
    connector = aiohttp.TCPConnector(ssl=ssl_context or ssl.create_default_context(), limit=32)
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            cloud = await CloudSide.log_in(
                http,
                url.rstrip("/"),
                hooks or Hooks(),
                login,
                password,
                session,
                other_login=other_login,
                other_password=other_password,
            )
        except CloudSideError as error:
            raise UsageError(f"cannot log in to the cloud's user API: {error}") from None
        if cloud.hooks.add_device is None and cloud.api_session is None:
            # Without a way to add a camera nearly every rule would be skipped: no run.
            raise UsageError(
                "no way to add a camera: give --add-device-cmd, or --password-file (or "
                f"{ENV_PASSWORD}) or --session for the cloud's user API"
            )
        try:
            return await Conformance(http, url, cloud, options or Options()).run()
        finally:
            await cloud.clean_up()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.timing_samples < 3:
        parser.error("--timing-samples must be at least 3")
    try:
        password, session = _credentials(args)
        other_password = _other_password(args)
    except UsageError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    hooks = Hooks(
        add_device=args.add_device_cmd,
        revoke_device=args.revoke_device_cmd,
        send_command=args.send_command_cmd,
        activate_code=args.activate_code_cmd,
        registration_token=args.registration_token_cmd,
        overload=args.overload_cmd,
        watch=args.watch_cmd,
        add_device_elsewhere=args.add_device_other_org_cmd,
    )
    try:
        report = asyncio.run(
            run(
                args.url,
                ssl_context=_ssl_context(args.ca),
                hooks=hooks,
                login=args.login,
                password=password,
                session=session,
                options=Options(args.timing_samples, args.timing_tolerance_ms / 1000),
                other_login=args.other_login,
                other_password=other_password,
            )
        )
    except UsageError as error:
        print(f"camagent-conformance: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(report.to_json() if args.json else report.table())
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
