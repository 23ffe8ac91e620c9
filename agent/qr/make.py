"""`camagent qr make`: WiFi, token and URL cards, in the terminal or as PNG files."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from agent.errors import CamagentError, QrPayloadError
from agent.qr.payloads import SECURITIES, WifiNetwork, parse, token_payload, wifi_payload
from agent.secret_input import (
    DISCOURAGED,
    TOKEN_ENV,
    Secret,
    SecretInputError,
    is_stdin,
    read_secret,
)

TERMINAL_COLUMNS = 80
# A card that carries a secret (a WiFi password, a token) is written for its owner and
# group only, created so (agent/label.py writes labels the same way).
SECRET_CARD_MODE = 0o640
# One way to read a secret for every command (agent/secret_input.py). The card's optional
# secrets have no environment variable: one left there would change every card made.
WIFI_PASSWORD = Secret("WiFi password", "--password", "--password-file", password=True)
CARD_TOKEN = Secret("token", "--token", "--token-file")
TOKEN_CARD = Secret("token", "TOKEN", "--token-file", TOKEN_ENV)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    make = sub.add_parser("make", help="make a QR card: wifi, token or url")
    kinds = make.add_subparsers(dest="qr_kind", required=True, metavar="KIND")
    wifi = kinds.add_parser("wifi", help="a WiFi card (with --token: WiFi + token)")
    wifi.add_argument("--ssid", required=True)
    password = wifi.add_mutually_exclusive_group()
    password.add_argument(
        "--password-file", metavar="FILE", help="the network password is in FILE ('-': stdin)"
    )
    password.add_argument("--password", metavar="P", help=DISCOURAGED)
    wifi.add_argument(
        "--security",
        default=None,
        choices=["WPA", "SAE", "WEP", "nopass"],
        help="default: WPA with a password, nopass without",
    )
    wifi.add_argument("--hidden", action="store_true")
    card_token = wifi.add_mutually_exclusive_group()
    card_token.add_argument(
        "--token-file",
        metavar="FILE",
        help="also provision the camera (combined card): its sealed_token is in FILE ('-': stdin)",
    )
    card_token.add_argument("--token", metavar="T", help=DISCOURAGED)
    token = kinds.add_parser("token", help="a token card (a camera's: its sealed_token)")
    token.add_argument("token", metavar="TOKEN", nargs="?", help=DISCOURAGED)
    token.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"read the token from FILE ('-': stdin); without it: ${TOKEN_ENV}, else stdin",
    )
    url = kinds.add_parser("url", help="a URL (e.g. an activation URL)")
    url.add_argument("url", metavar="URL")
    for parser in (wifi, token, url):
        parser.add_argument("--png", metavar="FILE", type=Path, help="write a PNG instead")


def read_secrets(args: argparse.Namespace) -> None:
    """Put the card's secrets in `args` (`password`, `token`), read the one way every
    command reads a secret: a file (or stdin), the environment, the command line (warned)."""
    if args.qr_kind == "wifi":
        if is_stdin(args.password_file) and is_stdin(args.token_file):
            raise SecretInputError(
                "--password-file - and --token-file - would both read standard input: "
                "put one of them in a file"
            )
        args.password = read_secret(WIFI_PASSWORD, args.password, args.password_file) or ""
        args.token = read_secret(CARD_TOKEN, args.token, args.token_file) or ""
    elif args.qr_kind == "token":
        from agent import hints

        # The warning names the command as this command line runs it.
        instead = f"`{hints.show('qr make token')}`, --token-file FILE or {TOKEN_ENV}=…"
        spec = replace(TOKEN_CARD, instead=instead)
        args.token = read_secret(spec, args.token, args.token_file, stdin=True)


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


def write_png(text: str, path: Path, mode: int | None = None) -> None:
    """The card as a PNG; `mode` (e.g. SECRET_CARD_MODE): created with it, never readable
    by others on the way (as agent/label.py writes labels)."""
    import io

    import qrcode

    image = qrcode.make(
        text, error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4
    )
    if mode is None:
        try:
            image.save(str(path))
        except OSError as exc:
            raise CamagentError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    from agent.label import write_private

    data = io.BytesIO()
    image.save(data, format="PNG")
    write_private(path, data.getvalue(), mode)


def run(args: argparse.Namespace) -> int:
    read_secrets(args)
    text = payload_from_args(args)
    if args.png:
        write_png(text, args.png, None if args.qr_kind == "url" else SECRET_CARD_MODE)
        print(f"Wrote {args.png}")
    else:
        print(terminal(text))
    return 0


__all__ = ["SECURITIES", "add_parser", "payload_from_args", "run", "terminal", "write_png"]
