"""`camagent qr make`: WiFi, token and URL cards, in the terminal or as PNG files."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.errors import CamagentError, QrPayloadError
from agent.qr.payloads import SECURITIES, WifiNetwork, parse, token_payload, wifi_payload

TERMINAL_COLUMNS = 80


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    make = sub.add_parser("make", help="make a QR card: wifi, token or url")
    kinds = make.add_subparsers(dest="qr_kind", required=True, metavar="KIND")
    wifi = kinds.add_parser("wifi", help="a WiFi card (with --token: WiFi + token)")
    wifi.add_argument("--ssid", required=True)
    wifi.add_argument("--password", default="")
    wifi.add_argument(
        "--security",
        default=None,
        choices=["WPA", "SAE", "WEP", "nopass"],
        help="default: WPA with a password, nopass without",
    )
    wifi.add_argument("--hidden", action="store_true")
    wifi.add_argument("--token", default="", help="also provision the camera (combined card)")
    token = kinds.add_parser("token", help="a token card")
    token.add_argument("token", metavar="TOKEN")
    url = kinds.add_parser("url", help="a URL (e.g. an activation URL)")
    url.add_argument("url", metavar="URL")
    for parser in (wifi, token, url):
        parser.add_argument("--png", metavar="FILE", type=Path, help="write a PNG instead")


def payload_from_args(args: argparse.Namespace) -> str:
    """Build the text, then read it back: a card we print must parse as what was asked."""
    if args.qr_kind == "wifi":
        security = args.security or ("WPA" if args.password else "nopass")
        text = wifi_payload(
            WifiNetwork(
                args.ssid, args.password if security != "nopass" else "", security, args.hidden
            ),
            token=args.token,
        )
        expected = {"combined" if args.token else "wifi"}
    elif args.qr_kind == "token":
        text, expected = token_payload(args.token.strip()), {"token"}
    else:
        text, expected = args.url, {"url"}
    try:
        kind = parse(text).type
    except QrPayloadError as exc:
        raise CamagentError(f"cannot make this card: {exc}") from None
    if kind not in expected:
        raise CamagentError(
            f"cannot make this card: it would read as {kind}, not {' or '.join(sorted(expected))}"
        )
    return text


def terminal(text: str) -> str:
    from agent.qr.terminal import render

    # A screen shows every module crisply: lower error correction (smaller code) is fine
    # when the usual level would not fit the terminal.
    for level in ("M", "L"):
        drawing = render(text, level)
        if max(len(line) for line in drawing.splitlines()) <= TERMINAL_COLUMNS:
            return drawing
    raise CamagentError(
        f"this card is too large for an {TERMINAL_COLUMNS}-column terminal: use --png FILE"
    )


def write_png(text: str, path: Path) -> None:
    import qrcode

    image = qrcode.make(
        text, error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4
    )
    try:
        image.save(str(path))
    except OSError as exc:
        raise CamagentError(f"cannot write {path}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    text = payload_from_args(args)
    if args.png:
        write_png(text, args.png)
        print(f"Wrote {args.png}")
    else:
        print(terminal(text))
    return 0


__all__ = ["SECURITIES", "add_parser", "payload_from_args", "run", "terminal", "write_png"]
