"""`camagent label make`: a camera's factory label — its ID and password as text, and a
QR code a phone (the cloud's console, "Scan label") reads to add the camera.

The QR payload is `CAMAGENT:ID:<device id>;PW:<password>;;` with the WiFi card's escaping
(a backslash before each of `\\ ; , : "`); agent.qr.payloads reads it back as type
"label", and a device never applies one.

`--generate` makes the password: 15 characters from a 31-character alphabet without the
look-alikes 0/O, 1/I/L (74 bits from `secrets`), in three groups of five joined by `-`.
The dashes are part of the password: the label, the password file and what a person
types in the cloud are the same string.
"""

from __future__ import annotations

import argparse
import errno
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from agent import identity
from agent.atomic_file import fsync_dir, replace_file, write_atomic
from agent.errors import CamagentError, StateError, WireError
from agent.identity import MAX_PASSWORD_LEN, PasswordProblem
from agent.provisioning.wire import normalize_device_id
from agent.qr.payloads import Label, has_control_characters, label_payload, parse

if TYPE_CHECKING:
    from PIL.Image import Image

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS, GROUP_LEN = 3, 5
PASSWORD_FILE_MODE = 0o640
# The label shows the password: its image is as private as the password file, never more
# readable (a 0600 password file makes 0600 labels).
LABEL_MODE = 0o640
BOX_PX, BORDER_MODULES = 8, 4  # a printed label: large modules, the standard quiet zone


class LabelError(CamagentError):
    """A label that cannot be made: a bad ID, or a password file we may not touch."""


def generate_password() -> str:
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LEN)) for _ in range(GROUPS))
    return "-".join(groups)


def password_bits() -> float:
    import math

    return GROUPS * GROUP_LEN * math.log2(len(ALPHABET))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    label = sub.add_parser(
        "label",
        help="make a camera's label (ID, password, QR code)",
        description="Make a camera's factory label: its ID and password as text and as a "
        "QR code that the cloud's console reads to add the camera.",
        epilog="example:\n  camagent label make --device-id 00:11:22:33:44:55 "
        "--generate --password-file /etc/camagent/password --png label.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    make = actions.add_parser(
        "make",
        help="write the label as PNG and/or SVG (or show it in the terminal)",
        description="Write a camera's label. With --generate, make a new password first and "
        "store it in --password-file (mode 0640; never overwritten without --force).",
        epilog="examples:\n"
        "  camagent label make --device-id cam-0042 --generate "
        "--password-file pw.txt --svg label.svg\n"
        "  camagent label make --device-id 00:11:22:33:44:55 "
        "--password-file /etc/camagent/password --png label.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    make.add_argument("--device-id", required=True, metavar="ID", help="the camera's ID or MAC")
    make.add_argument(
        "--password-file",
        required=True,
        type=Path,
        metavar="FILE",
        help="the device's password file: read, or written with --generate",
    )
    make.add_argument(
        "--generate", action="store_true", help="make a new password and write it to FILE"
    )
    make.add_argument(
        "--force", action="store_true", help="with --generate: replace an existing FILE"
    )
    make.add_argument("--png", type=Path, metavar="FILE", help="write the label as PNG")
    make.add_argument("--svg", type=Path, metavar="FILE", help="write the label as SVG")


def run(args: argparse.Namespace) -> int:
    try:
        device_id = normalize_device_id(args.device_id)
    except WireError as exc:
        raise LabelError(str(exc)) from None
    if args.generate:
        password = generate_password()
        write_password_file(args.password_file, password, force=args.force)
        print(f"Wrote a new password to {args.password_file} ({password_bits():.0f} bits)")
    else:
        if args.force:
            raise LabelError("--force only goes with --generate")
        password = read_password_file(args.password_file)
    label = Label(device_id, password)
    text = payload(label)
    mode = label_mode(args.password_file)
    if args.png:
        write_png(label, text, args.png, mode)
        print(f"Wrote {args.png} (mode {mode:04o})")
    if args.svg:
        write_svg(label, text, args.svg, mode)
        print(f"Wrote {args.svg} (mode {mode:04o})")
    if not args.png and not args.svg:
        from agent.qr.make import terminal

        print(f"Camera ID  {device_id}\nPassword   {password}\n{terminal(text)}")
    return 0


def payload(label: Label) -> str:
    """The QR text, read back: a label we print must parse as this very label."""
    if has_control_characters(label.password):
        raise LabelError("the password holds control characters: a label cannot show them")
    text = label_payload(label)
    if parse(text).label != label:
        raise LabelError(f"cannot make a label for {label.device_id!r}: it would not read back")
    return text


def write_password_file(path: Path, password: str, *, force: bool) -> None:
    data = (password + "\n").encode()
    if force:
        try:
            write_atomic(path, data, mode=PASSWORD_FILE_MODE)
        except StateError as exc:
            raise LabelError(str(exc)) from None
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PASSWORD_FILE_MODE)
    except FileExistsError:
        raise LabelError(
            f"{path} already exists: it may hold the password of a camera already labelled; "
            "add --force to replace it"
        ) from None
    except OSError as exc:
        raise LabelError(f"cannot create {path}: {_why(exc, path)}") from None
    try:
        os.fchmod(fd, PASSWORD_FILE_MODE)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
        raise LabelError(f"cannot write {path}: {_why(exc, path)}") from None
    finally:
        os.close(fd)
    fsync_dir(path.parent if str(path.parent) else Path("."))


def read_password_file(path: Path) -> str:
    try:
        return identity.password_in(path)
    except identity.PasswordFileError as exc:
        raise LabelError(_label_wording(exc)) from None


def _label_wording(exc: identity.PasswordFileError) -> str:
    path, cause = exc.path, exc.cause
    match exc.problem:
        case PasswordProblem.MISSING:
            return f"{path} does not exist: write the camera's password into it, or use --generate"
        case PasswordProblem.UNREADABLE:
            reason = _why(cause, path) if isinstance(cause, OSError) else str(cause)
            return f"cannot read {path}: {reason}"
        case PasswordProblem.EMPTY:
            return f"{path} is empty: write the camera's password into it"
        case PasswordProblem.TOO_LONG:
            return f"{path} holds more than {MAX_PASSWORD_LEN} characters"


def label_mode(password_file: Path) -> int:
    """LABEL_MODE, less what the password file does not allow either."""
    try:
        return LABEL_MODE & os.stat(password_file).st_mode
    except OSError:  # it was just read or written: gone meanwhile, the default stands
        return LABEL_MODE


def write_private(path: Path, data: bytes, mode: int = LABEL_MODE) -> None:
    """Write a file that shows a secret, created with `mode`: a temp file from mkstemp
    (O_EXCL, a random name, 0600) beside `path`, set to `mode`, written, then renamed over
    `path`. No moment finds it readable by others, whatever the umask, and a link planted
    at `path` is replaced, never followed. Owner and group are the writer's, as for the
    password file that --generate creates."""
    try:
        replace_file(path, data, mode, adopt=False)
    except OSError as exc:
        raise LabelError(f"cannot write {path}: {_why(exc, path)}") from None


def _why(exc: OSError, path: Path) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        from agent.file_access import owner_and_mode

        # A file that does not exist yet is made by its directory's owner.
        found = owner_and_mode(path if path.exists() else path.parent)
        if found is None:
            return "permission denied: run as root, or choose another path"
        holder, owner, _ = found
        what = "the file" if holder == path else f"the directory {holder}"
        root = "" if owner == "root" else " (or root)"
        return f"permission denied: run as {owner}, owner of {what}{root}, or choose another path"
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link: give the real path"
    return exc.strerror or str(exc)


# -- drawing ------------------------------------------------------------------------------


def _matrix(text: str) -> list[list[bool]]:
    import qrcode  # lazy: only the label and card commands draw

    code = qrcode.QRCode(border=0, error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1)
    code.add_data(text)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    return matrix


def _lines(label: Label) -> list[str]:
    return [f"ID {label.device_id}", f"PW {label.password}"]


def render_png(label: Label, text: str) -> Image:
    from PIL import Image as PilImage
    from PIL import ImageDraw, ImageFont

    matrix = _matrix(text)
    qr_px = (len(matrix) + 2 * BORDER_MODULES) * BOX_PX
    font_px = 28
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=font_px)
    except TypeError:  # Pillow < 10.1 (Debian 12): its small bitmap font, still legible
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(PilImage.new("L", (1, 1)))
    widths = [int(probe.textbbox((0, 0), line, font=font)[2]) + 1 for line in _lines(label)]
    line_px = font_px + 12
    width = max(qr_px, max(widths) + 2 * BORDER_MODULES * BOX_PX)
    image = PilImage.new("L", (width, qr_px + line_px * len(widths) + BOX_PX * 2), 255)
    offset = (width - qr_px) // 2 + BORDER_MODULES * BOX_PX
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                left, top = offset + x * BOX_PX, BORDER_MODULES * BOX_PX + y * BOX_PX
                draw.rectangle((left, top, left + BOX_PX - 1, top + BOX_PX - 1), fill=0)
    for i, line in enumerate(_lines(label)):
        draw.text((BORDER_MODULES * BOX_PX, qr_px + i * line_px), line, fill=0, font=font)
    return image


def write_png(label: Label, text: str, path: Path, mode: int = LABEL_MODE) -> None:
    import io

    data = io.BytesIO()
    render_png(label, text).save(data, format="PNG")
    write_private(path, data.getvalue(), mode)


def render_svg(label: Label, text: str) -> str:
    import xml.etree.ElementTree as ET

    matrix = _matrix(text)
    size = len(matrix) + 2 * BORDER_MODULES
    text_rows = 2
    height = size + text_rows * 4 + 2
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {size} {height}",
            "width": f"{size * 2}mm",
            "height": f"{height * 2}mm",
        },
    )
    ET.SubElement(svg, "title").text = f"camagent label {label.device_id}"
    ET.SubElement(svg, "rect", {"width": str(size), "height": str(height), "fill": "#fff"})
    path = "".join(
        f"M{x + BORDER_MODULES} {y + BORDER_MODULES}h1v1h-1z"
        for y, row in enumerate(matrix)
        for x, dark in enumerate(row)
        if dark
    )
    ET.SubElement(svg, "path", {"d": path, "fill": "#000", "shape-rendering": "crispEdges"})
    for i, line in enumerate(_lines(label)):
        node = ET.SubElement(
            svg,
            "text",
            {
                "x": str(BORDER_MODULES),
                "y": str(size + 3 + i * 4),
                "font-family": "DejaVu Sans Mono, monospace",
                "font-size": "2.6",
            },
        )
        node.text = line
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode")


def write_svg(label: Label, text: str, path: Path, mode: int = LABEL_MODE) -> None:
    write_private(path, render_svg(label, text).encode("utf-8"), mode)
