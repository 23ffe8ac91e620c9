"""The I/O under thumbnails (docs/design.md §12.6): one JPEG from ffmpeg or from the
camera's snapshot URL, and the picture files.

`thumbnails` decides which source's picture to take and when; this module takes one and
keeps it. Every way in is bounded: a JPEG over MAX_JPEG bytes, an answer that is not a
JPEG, or a snapshot URL slower than SNAPSHOT_TIMEOUT_S is a `ThumbnailFailed` whose
message says why, for a person; ffmpeg is always stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import aiohttp

from agent.atomic_file import write_atomic
from cloud_mock.video.ffmpeg import Ffmpeg, FfmpegMissing, fmp4_frame_args
from cloud_mock.video.tunnels import OpenTunnel

# Half a thumbnail job's time (thumbnails.JOB_TIMEOUT_S): the other half is for one
# frame of a stream instead.
SNAPSHOT_TIMEOUT_S = 10.0
MAX_JPEG = 5 * 1024 * 1024  # a snapshot, or what ffmpeg makes
JPEG_MAGIC = b"\xff\xd8"
_FILE = re.compile(r"[0-9a-f]{32}\.jpg")


class ThumbnailFailed(Exception):
    """No picture this time; the message says why, for a person."""


# -- ffmpeg and HTTP --------------------------------------------------------------------


def jpeg_frame_args(ffmpeg: str) -> list[str]:
    """A JPEG on stdin, the same small JPEG as ffmpeg.fmp4_frame_args makes on stdout."""
    argv = fmp4_frame_args(ffmpeg)
    at = argv.index("-f")  # the input's format: the first -f
    if argv[at + 1] != "mp4":
        raise RuntimeError(f"unexpected fmp4_frame_args: {argv}")
    argv[at + 1] = "jpeg_pipe"
    return argv


async def ffmpeg_jpeg(argv: list[str], stdin: bytes | None = None) -> bytes:
    """Run ffmpeg (input on stdin when given) for one JPEG on stdout."""
    ffmpeg = Ffmpeg(argv)
    try:
        await ffmpeg.start(stdin=stdin is not None)
    except FfmpegMissing as exc:
        raise ThumbnailFailed(str(exc)) from None
    except OSError as exc:
        raise ThumbnailFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    out = bytearray()

    def keep(chunk: bytes) -> None:
        out.extend(chunk)
        if len(out) > MAX_JPEG:
            raise ThumbnailFailed(f"ffmpeg's picture is larger than {MAX_JPEG} bytes")

    feeder = asyncio.create_task(_feed(ffmpeg, stdin)) if stdin is not None else None
    code: int | None = None
    try:
        await ffmpeg.read_stdout(keep)
        code = await ffmpeg.wait()
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        await ffmpeg.stop()
    if code != 0 or not out.startswith(JPEG_MAGIC):
        raise ThumbnailFailed(ffmpeg.why(code) if code else "ffmpeg made no picture")
    return bytes(out)


async def _feed(ffmpeg: Ffmpeg, data: bytes) -> None:
    assert ffmpeg.process is not None
    assert ffmpeg.process.stdin is not None
    stdin = ffmpeg.process.stdin
    with contextlib.suppress(ConnectionError):  # ffmpeg stopped reading: it says why
        stdin.write(data)
        await stdin.drain()
    stdin.close()


async def http_jpeg(tunnel: OpenTunnel, port: int) -> bytes:
    """GET the snapshot through the bridge on `port`: a JPEG of at most MAX_JPEG."""
    grant = tunnel.grant
    if grant.scheme not in ("http", "https"):
        raise ThumbnailFailed(f"the device granted {grant.scheme} for its snapshot")
    auth = None
    if grant.username is not None:
        try:
            auth = aiohttp.BasicAuth(grant.username, grant.password or "")
        except ValueError:
            raise ThumbnailFailed("the snapshot's user name holds a ':' (HTTP Basic)") from None
    url = f"{grant.scheme}://127.0.0.1:{port}{grant.path}"
    # ssl=False: for an https snapshot, TLS runs through the bridge without checking the
    # camera's certificate. It is the camera's own (self-signed, or issued for its LAN
    # name or address), never one for 127.0.0.1 where the bridge listens, so no check
    # could pass; who answers rests on the tunnel instead: the device, authenticated by
    # its token, connected to the address in its own config.
    connector = aiohttp.TCPConnector(limit=1, force_close=True, ssl=False)
    timeout = aiohttp.ClientTimeout(total=SNAPSHOT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        try:
            # No redirects: the bridge reaches this one target; a Location elsewhere
            # would make the mock fetch whatever the device names.
            async with http.get(
                url, auth=auth, allow_redirects=False, headers={"Accept": "image/jpeg"}
            ) as response:
                if response.status != 200:
                    raise ThumbnailFailed(_http_problem(response))
                data = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    data.extend(chunk)
                    if len(data) > MAX_JPEG:
                        raise ThumbnailFailed(f"the camera's snapshot is over {MAX_JPEG} bytes")
        except TimeoutError:
            raise ThumbnailFailed(
                f"the camera's snapshot URL did not answer within {SNAPSHOT_TIMEOUT_S:g} s"
            ) from None
        except aiohttp.ClientConnectorError:
            raise ThumbnailFailed("the tunnel to the snapshot closed before the request") from None
        except aiohttp.ClientError as exc:
            raise ThumbnailFailed(f"the camera's snapshot URL failed: {exc}") from None
    if not data.startswith(JPEG_MAGIC):
        raise ThumbnailFailed("the camera's snapshot URL did not answer with a JPEG")
    return bytes(data)


def _http_problem(response: aiohttp.ClientResponse) -> str:
    text = f"the camera's snapshot URL answered HTTP {response.status}"
    if response.status == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("digest"):
            return text + " (it wants Digest authentication; the mock sends Basic)"
        return text + " (check the user and password in video.snapshot)"
    return text


# -- files ------------------------------------------------------------------------------


def write_picture(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, data, 0o600)


def remove_picture(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_picture(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def scan_pictures(directory: Path, clock_offset: float) -> dict[str, float]:
    """The pictures in `directory` (slug -> mock time); temp files of writes that were
    interrupted are removed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    found: dict[str, float] = {}
    for path in directory.iterdir():
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            remove_picture(path)
        elif _FILE.fullmatch(path.name):
            with contextlib.suppress(OSError):
                found[path.stem] = path.stat().st_mtime + clock_offset
    return found
