"""`camagent finder scan|push|reset|poll-now|wifi`: the installer's LAN tool (docs/design.md §5)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from agent import hints
from agent.finder.errors import DeviceRefused, FinderError
from agent.secret_input import DISCOURAGED, TOKEN_ENV, Secret, is_stdin, read_secret

if TYPE_CHECKING:  # the client (aiohttp) is loaded only by the commands that use it
    from agent.finder.client import Endpoint

SCAN_TIMEOUT_S = 3.0
SECURITIES = {"WPA": "WPA", "WPA2": "WPA", "WPA3": "SAE", "SAE": "SAE", "WEP": "WEP"}
SECURITIES["NOPASS"] = "nopass"
# One way to read a secret for every command (agent/secret_input.py).
PUSH_TOKEN = Secret("token", "--token", "--token-file", TOKEN_ENV)
WIFI_PASSWORD = Secret("WiFi password", "--password", "--password-file", password=True)


def add_parser(sub: Any) -> None:
    finder = sub.add_parser("finder", help="find camagent devices on the LAN and act on them")
    actions = finder.add_subparsers(dest="finder_command", required=True, metavar="ACTION")
    scan = actions.add_parser("scan", help="list the devices that answer on this network")
    scan.add_argument("--json", action="store_true", help="print a JSON list for scripts")
    scan.add_argument(
        "--timeout",
        type=_seconds,
        default=SCAN_TIMEOUT_S,
        metavar="S",
        help=f"seconds to listen (default {SCAN_TIMEOUT_S:g})",
    )
    push = _device_parser(actions, "push", "give the device its cloud token")
    how = push.add_mutually_exclusive_group()
    how.add_argument(
        "--token-file",
        metavar="FILE",
        help="push the token in FILE ('-': stdin): a camera's sealed token, from the cloud "
        'console\'s "Token for this camera" (or GET /v1/cameras/{id}/token); '
        f"with neither --token-file nor --profile: ${TOKEN_ENV}",
    )
    how.add_argument(
        "--token",
        metavar="T",
        help=DISCOURAGED,
    )
    from agent.account.profiles import add_profile_option

    add_profile_option(
        how,
        "add the camera in the cloud through this server profile, then push its token",
    )
    push.set_defaults(usage_error=push.error)
    push.add_argument("--name", default="", help="camera name in the cloud (with --profile)")
    _device_parser(actions, "reset", "make the device forget its token and provision again")
    _device_parser(actions, "poll-now", "make the device poll the cloud for its token now")
    wifi = _device_parser(actions, "wifi", "make the device join a WiFi network")
    wifi.add_argument("--ssid", required=True, metavar="S", help="network name")
    secret = wifi.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-file", metavar="FILE", help="the network password is in FILE ('-': stdin)"
    )
    secret.add_argument(
        "--password",
        metavar="P",
        help=DISCOURAGED,
    )
    wifi.add_argument(
        "--security",
        type=str.upper,
        choices=sorted(SECURITIES),
        metavar="SEC",
        help="WPA (default with a password), WPA2, WPA3, SAE, WEP or NOPASS (default without)",
    )
    wifi.add_argument("--hidden", action="store_true", help="the network hides its name")


def _device_parser(actions: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
    parser.add_argument(
        "device", metavar="DEVICE", help="device id (as in `finder scan`), mDNS name or host:port"
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the device password from standard input (for scripts) instead of asking",
    )
    parser.add_argument(
        "--accept-new-fp",
        action="store_true",
        help="trust and remember the device's certificate fingerprint without asking: one "
        "that differs from the one remembered (after a factory reset), or, at host:port, "
        "a device met for the first time (asked on a terminal, refused without one)",
    )
    parser.add_argument(
        "--scan-timeout",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="seconds to look for DEVICE on the LAN (default 5)",
    )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("give a number of seconds from 0 to 3600")
    return value


def run(args: argparse.Namespace) -> int:
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = {
        "scan": cmd_scan,
        "push": cmd_push,
        "reset": cmd_reset,
        "poll-now": cmd_poll_now,
        "wifi": cmd_wifi,
    }[args.finder_command]
    try:
        return asyncio.run(command(args))
    except DeviceRefused as exc:
        # The device's words name its own commands (`camagent reset`); from here they are
        # the finder's, for this device.
        raise DeviceRefused(hints.relay(str(exc), device=args.device), exc.status) from None


# -- scan ---------------------------------------------------------------------------------


async def cmd_scan(args: argparse.Namespace) -> int:
    from agent.finder.records import format_table, sort_records
    from agent.finder.scan import scan

    start = time.monotonic()
    progress = _progress_line if sys.stderr.isatty() else None
    try:
        records = sort_records(await scan(args.timeout, progress=progress))
    finally:
        if progress is not None:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([r.to_json() for r in records]))
    else:
        print(format_table(records, time.monotonic() - start))
    return 0


def _progress_line(found: int, elapsed: float) -> None:
    noun = "device" if found == 1 else "devices"
    print(
        f"\rScanning the LAN for camagent devices… {found} {noun} so far ({elapsed:.1f} s)",
        end="",
        file=sys.stderr,
        flush=True,
    )


# -- commands on one device -----------------------------------------------------------------


def _device_password(args: argparse.Namespace, device: str) -> str:
    from agent import prompts

    if args.password_stdin:
        with prompts.interruptible():
            password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = prompts.secret(f"Password of device {device} (user admin): ")
        except prompts.NoInput:
            password = ""
    if not password:
        raise FinderError("no device password given (it is on the device's label)")
    return password


async def _on_device(
    args: argparse.Namespace,
    path: str,
    body: dict[str, Any] | None,
    password: str | None = None,
) -> dict[str, Any]:
    """Open DEVICE (pinned), then POST `path` with Digest; returns the device's answer."""
    from agent.finder.device import open_device
    from agent.finder.known import KnownDevices, Trust

    known = KnownDevices.load()
    opened = await open_device(
        args.device,
        known,
        accept_new_fp=args.accept_new_fp,
        scan_timeout=args.scan_timeout,
        confirm_new=_confirm_first_contact,
    )
    async with opened.client as client:
        if opened.trust is Trust.NEW:
            print(
                f"First contact with {opened.info['id']}: its certificate fingerprint "
                f"{client.fp} is now remembered in {known.path}.",
                file=sys.stderr,
            )
        elif opened.trust is Trust.REPLACED:
            print(
                f"Accepted the new fingerprint {client.fp} of {opened.info['id']}.", file=sys.stderr
            )
        if password is None:
            password = _device_password(args, str(opened.info["id"]))
        answer = await client.command(path, body, password)
    return {"info": opened.info, "endpoint": str(client.endpoint), "answer": answer.body}


def _confirm_first_contact(device_id: str, fp: str, endpoint: Endpoint) -> None:
    """As ssh does: show the key of a device met for the first time, and ask."""
    from agent import prompts
    from agent.finder.device import first_contact_refusal

    answer = prompts.confirm(
        f"First contact with {device_id} at {endpoint}. Its certificate fingerprint is\n"
        f"  {fp}\n"
        f"Compare it with the one the device shows (`{hints.show('device status')}` on it).\n"
        "Trust this device and remember its fingerprint? [y/N] "
    )
    if answer is None:
        raise FinderError(first_contact_refusal(device_id, fp, endpoint))
    if not answer:
        raise FinderError(f"{device_id} at {endpoint} not trusted: nothing was sent to it")


def _one_reader_of_stdin(args: argparse.Namespace, file: str | None, option: str) -> None:
    if args.password_stdin and is_stdin(file):
        raise FinderError(
            f"--password-stdin and {option} - would both read standard input: put the "
            f"secret in a file for {option}, or type the device password at its prompt"
        )


async def cmd_push(args: argparse.Namespace) -> int:
    token = None
    if args.profile is None:  # --profile, given, wins over a token in the environment
        _one_reader_of_stdin(args, args.token_file, "--token-file")
        token = read_secret(PUSH_TOKEN, args.token, args.token_file)
        if token is None:
            args.usage_error(
                f"give the token with --token-file FILE ('-': stdin) or ${TOKEN_ENV}, or "
                "add the camera in the cloud and push its token with --profile NAME"
            )
    if token is not None:
        done = await _on_device(args, "/v1/token", {"token": token})
        print(f"Token pushed to {done['info']['id']} ({done['endpoint']}): it is connecting.")
        return 0
    return await _push_from_profile(args)


async def _push_from_profile(args: argparse.Namespace) -> int:
    """Add the camera in the cloud with the device password, then push the token to it.

    The same password authenticates to the device, so it is asked once; the device is
    located, pinned and the password checked against it first, so neither a typo in DEVICE
    nor a wrong password writes anything to the cloud. When this organization already
    waits for the camera under another password (an earlier mistake), that claim takes
    the password the device just accepted.
    """
    from agent.finder.device import open_device
    from agent.finder.known import KnownDevices

    known = KnownDevices.load()
    opened = await open_device(
        args.device,
        known,
        accept_new_fp=args.accept_new_fp,
        scan_timeout=args.scan_timeout,
        confirm_new=_confirm_first_contact,
    )
    async with opened.client as client:
        device_id = str(opened.info["id"])
        password = _device_password(args, device_id)
        # The device checks the password before the cloud hears of it: a typo must not
        # leave a camera with a wrong password in the cloud (its device could never prove
        # it), nor block the retry with the right one.
        await client.check_password(password)
        name = args.name or str(opened.info.get("name") or "")
        token, corrected = await asyncio.to_thread(
            _add_in_cloud, args.profile, device_id, password, name
        )
        try:
            await client.command("/v1/token", {"token": token}, password)
        except FinderError as exc:
            again = hints.show("finder push", device=args.device)
            raise FinderError(
                f"{exc}. The camera was added in the cloud (profile {args.profile}); push its "
                f"token once the problem is fixed: `{again}`, with this token in FILE: {token}"
            ) from None
    done = (
        "was waiting in the cloud with another password: corrected to the one the device accepted"
        if corrected
        else "added in the cloud"
    )
    print(
        f"Camera {device_id} {done} (profile {args.profile}), and its token pushed to "
        f"{client.endpoint}: it is connecting."
    )
    return 0


def _add_in_cloud(profile: str, device_id: str, password: str, name: str) -> tuple[str, bool]:
    from agent.account.api import open_session

    session = open_session(profile)
    return session.add_or_correct_camera(device_id, password, name=name)


async def cmd_reset(args: argparse.Namespace) -> int:
    done = await _on_device(args, "/v1/reset", None)
    print(f"{done['info']['id']} forgot its token and is provisioning again.")
    return 0


async def cmd_poll_now(args: argparse.Namespace) -> int:
    done = await _on_device(args, "/v1/poll-now", None)
    print(f"{done['info']['id']} is polling the cloud for its token now.")
    return 0


async def cmd_wifi(args: argparse.Namespace) -> int:
    _one_reader_of_stdin(args, args.password_file, "--password-file")
    password = read_secret(WIFI_PASSWORD, args.password, args.password_file) or ""
    security = SECURITIES[args.security] if args.security else ("WPA" if password else "nopass")
    if security != "nopass" and not password:
        raise FinderError(f"a {args.security} network needs --password-file FILE")
    body = {
        "ssid": args.ssid,
        "password": password,
        "security": security,
        "hidden": bool(args.hidden),
    }
    done = await _on_device(args, "/v1/wifi", body)
    print(f"{done['info']['id']} is joining WiFi network {args.ssid!r}.")
    return 0
