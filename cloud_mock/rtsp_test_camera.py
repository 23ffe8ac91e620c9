"""A real RTSP test camera: GStreamer's gst-rtsp-server serving a live picture that
carries its own capture time, for the tests, the benchmarks and the demo.

Run it with Debian's python3 (the venv has no GObject bindings); it imports nothing
from this project, only the standard library and `gi`:

    /usr/bin/python3 cloud_mock/rtsp_test_camera.py [--port 0] [--codec h264|h265] ...

Debian packages: python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base
(appsrc), gstreamer1.0-plugins-good (rtph264pay, rtph265pay), gstreamer1.0-plugins-ugly
(x264enc), gstreamer1.0-plugins-bad (x265enc).

Once it listens it prints ONE line of JSON to stdout (and nothing else there):

    {"port": N, "main": "rtsp://USER:PASS@HOST:N/main", "sub": "rtsp://USER:PASS@HOST:N/sub",
     "user": "camera", "password": "test-camera-pw"}

(`user` and `password` are null, and the URLs carry none, with `--no-auth`; user and
password are percent-encoded in the URLs.) `--port 0` (the default) binds a free port
and reports the one bound. Two mounts: `/main` (`--width`x`--height`, default 640x360)
and `/sub` (half of each, rounded down to even: 320x180), both at `--fps`; each mount's
media is shared, so several clients share one encoder. Without `--no-auth` a request
needs the credentials (RTSP Basic, or Digest with `--auth digest`);
without them the answer is 401 with `WWW-Authenticate`.

The picture (raw I420 pushed into an appsrc at `--fps`, then x264enc or x265enc):
- a TIME CODE band across the top: the wall clock when the frame was made,
  `time.time()` in whole milliseconds, as 48 black and white cells (the layout is the
  one `cloud_mock/test_camera.py` documents in TIMECODE_LAYOUT and reads with
  `read_timecode`; the two must agree);
- below it, `--pattern bars`: colour bars scrolling sideways and a white bar moving
  down (every frame differs; cheap to encode), or `--pattern noise`: random bytes,
  for encoder benchmarks that must really reach `--bitrate` (1000..16000 kbit/s).

SIGTERM or SIGINT stops it (exit 0); so does EOF on stdin with `--exit-on-stdin-eof`
(a parent that dies leaves no orphan camera). A missing GStreamer element or binding:
exit 2 with the Debian package to install on stderr. `--check` only checks them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from typing import Any, NoReturn

DEFAULT_USER = "camera"
DEFAULT_PASSWORD = "test-camera-pw"

# The time code's layout (the same numbers as TIMECODE_LAYOUT in cloud_mock/test_camera.py).
COLUMNS = 64  # cell width = width // COLUMNS pixels
FIRST_CELL = 6  # the first cell starts at FIRST_CELL cell widths from the left edge
START_GUARD = (1, 0)
BITS = 48  # milliseconds since the Unix epoch, most significant bit first
END_GUARD = (0, 1)
MIN_CELL_HEIGHT = 16  # cell height = max(MIN_CELL_HEIGHT, 2 * cell width)
LUMA_ZERO = 16
LUMA_ONE = 235
BAND_LUMA = 128  # the band around the cells
NEUTRAL_CHROMA = 128

# 75 % colour bars (BT.601 limited range): white, yellow, cyan, green, magenta, red, blue, black.
BARS_Y = (180, 162, 131, 112, 84, 65, 35, 16)
BARS_U = (128, 44, 156, 72, 184, 100, 212, 128)
BARS_V = (128, 142, 44, 58, 198, 212, 114, 128)

ELEMENT_PACKAGES = {
    "appsrc": "gstreamer1.0-plugins-base",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "x265enc": "gstreamer1.0-plugins-bad",
    "rtph265pay": "gstreamer1.0-plugins-good",
}
CODEC_ELEMENTS = {
    "h264": ("appsrc", "x264enc", "rtph264pay"),
    "h265": ("appsrc", "x265enc", "rtph265pay"),
}


def cell_size(width: int) -> tuple[int, int]:
    """(cell width, cell height) in pixels for a frame `width` pixels wide."""
    cell_w = width // COLUMNS
    return cell_w, max(MIN_CELL_HEIGHT, 2 * cell_w)


def check_size(width: int, height: int) -> str | None:
    """Why a frame of this size cannot carry the time code, or None when it can."""
    cell_w, cell_h = cell_size(width)
    if width % 2 or height % 2:
        return f"{width}x{height}: width and height must be even (I420)"
    if cell_w < 4:
        return f"{width}x{height}: at least {4 * COLUMNS} pixels wide for the time code"
    if height < 2 * cell_h + 16:
        return f"{width}x{height}: at least {2 * cell_h + 16} pixels high for the time code"
    return None


class Painter:
    """Makes I420 frames of one size with bytes operations only (no numpy)."""

    def __init__(self, width: int, height: int, pattern: str) -> None:
        problem = check_size(width, height)
        if problem:
            raise ValueError(problem)
        self.width, self.height, self.pattern = width, height, pattern
        cell_w, cell_h = cell_size(width)
        self.cell_w, self.cell_h = cell_w, cell_h
        self.band_h = 2 * cell_h  # rows [0, band_h): the band; cells in the middle half
        self.top = cell_h // 2
        self.picture_h = height - self.band_h
        x0 = FIRST_CELL * cell_w
        cells = len(START_GUARD) + BITS + len(END_GUARD)
        self.left = bytes([BAND_LUMA]) * x0
        self.right = bytes([BAND_LUMA]) * (width - x0 - cells * cell_w)
        self.one = bytes([LUMA_ONE]) * cell_w
        self.zero = bytes([LUMA_ZERO]) * cell_w
        self.band_rows_above = bytes([BAND_LUMA]) * (width * self.top)
        self.band_rows_below = bytes([BAND_LUMA]) * (width * (self.band_h - self.top - cell_h))
        chroma_w = width // 2
        self.band_chroma = bytes([NEUTRAL_CHROMA]) * (chroma_w * self.band_h // 2)
        # One period of the bars, twice, so that a shifted row is a slice of it.
        self.bars_y = self._bars(BARS_Y, width) * 2
        self.bars_u = self._bars(BARS_U, chroma_w) * 2
        self.bars_v = self._bars(BARS_V, chroma_w) * 2
        self.step = max(2, width // 160) // 2 * 2  # even: chroma moves by step / 2
        self.bar_h = max(8, cell_h // 2)
        self.white_rows = bytes([LUMA_ONE]) * (width * self.bar_h)
        self.frame_no = 0

    @staticmethod
    def _bars(levels: tuple[int, ...], width: int) -> bytes:
        return bytes(levels[x * len(levels) // width] for x in range(width))

    def timecode_rows(self, ms: int) -> bytes:
        bits = [*START_GUARD, *((ms >> (BITS - 1 - i)) & 1 for i in range(BITS)), *END_GUARD]
        row = self.left + b"".join(self.one if bit else self.zero for bit in bits) + self.right
        return self.band_rows_above + row * self.cell_h + self.band_rows_below

    def frame(self, ms: int) -> bytes:
        """The next I420 frame (Y, then U, then V), its band saying `ms`."""
        width, picture_h = self.width, self.picture_h
        chroma_w, chroma_rows = width // 2, picture_h // 2
        band = self.timecode_rows(ms)
        if self.pattern == "noise":
            y = os.urandom(width * picture_h)
            u = os.urandom(chroma_w * chroma_rows)
            v = os.urandom(chroma_w * chroma_rows)
        else:
            shift = self.frame_no * self.step % width
            row = self.bars_y[shift : shift + width]
            bar_at = self.frame_no * 2 % (picture_h - self.bar_h)
            y = row * bar_at + self.white_rows + row * (picture_h - bar_at - self.bar_h)
            c = shift // 2
            u = self.bars_u[c : c + chroma_w] * chroma_rows
            v = self.bars_v[c : c + chroma_w] * chroma_rows
        self.frame_no += 1
        return b"".join((band, y, self.band_chroma, u, self.band_chroma, v))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A live RTSP test camera whose picture carries its capture time."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0: any free one")
    parser.add_argument("--user", default=DEFAULT_USER)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--no-auth", action="store_true", help="serve without credentials")
    parser.add_argument("--auth", choices=("basic", "digest"), default="basic")
    parser.add_argument("--codec", choices=("h264", "h265"), default="h264")
    parser.add_argument("--bitrate", type=int, default=800, help="kbit/s of /main (800)")
    parser.add_argument("--sub-bitrate", type=int, help="kbit/s of /sub (a quarter of main)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--pattern", choices=("bars", "noise"), default="bars")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument("--check", action="store_true", help="check the elements, then exit")
    args = parser.parse_args(argv)
    if not 1 <= args.fps <= 120:
        parser.error("--fps must be 1..120")
    if not 100 <= args.bitrate <= 100_000:
        parser.error("--bitrate must be 100..100000 kbit/s")
    if args.sub_bitrate is None:
        args.sub_bitrate = max(100, args.bitrate // 4)
    for width, height in sub_sizes(args.width, args.height):
        problem = check_size(width, height)
        if problem:
            parser.error(f"--width/--height: {problem}")
    return args


def sub_sizes(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The sizes of /main and /sub."""
    return (width, height), (width // 4 * 2, height // 4 * 2)


def load_gi() -> tuple[Any, Any, Any, Any]:
    """(GLib, Gst, GstRtsp, GstRtspServer), or exit 2 naming the package to install."""
    try:
        import gi  # type: ignore[import-not-found]

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import (  # type: ignore[import-not-found]
            GLib,
            Gst,
            GstRtsp,
            GstRtspServer,
        )
    except (ImportError, ValueError) as exc:
        fail(f"GObject bindings missing ({exc}): install python3-gi gir1.2-gst-rtsp-server-1.0")
    Gst.init(None)
    return GLib, Gst, GstRtsp, GstRtspServer


def fail(message: str, status: int = 2) -> NoReturn:
    print(f"rtsp_test_camera: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def encoder(codec: str, bitrate: int, fps: int) -> str:
    if codec == "h265":
        return (
            f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={fps}"
            f" bitrate={bitrate} ! video/x-h265,stream-format=byte-stream"
            " ! rtph265pay name=pay0 pt=96 config-interval=-1"
        )
    # threads=1: one slice per frame. zerolatency's sliced threads give several, and
    # rtph264pay config-interval=-1 (GStreamer 1.22) then sends P frames that decode as
    # garbage; one thread is also no frame-threading delay.
    return (
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps}"
        f" bitrate={bitrate} byte-stream=true threads=1"
        " ! rtph264pay name=pay0 pt=96 config-interval=-1"
    )


class Feeder(threading.Thread):
    """Pushes one frame every 1/fps s into a media's appsrc until the media goes away."""

    def __init__(self, gst: Any, appsrc: Any, painter: Painter, fps: int) -> None:
        super().__init__(daemon=True, name=f"feeder-{painter.width}x{painter.height}")
        self.gst, self.appsrc, self.painter, self.period = gst, appsrc, painter, 1.0 / fps
        self.stopping = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        while not self.stopping.is_set():
            ms = int(time.time() * 1000)
            data = self.painter.frame(ms)
            self.appsrc.emit("push-buffer", self.gst.Buffer.new_wrapped(data))
            due += self.period
            delay = due - time.monotonic()
            if delay < -self.period:  # fell behind (a loaded machine): drop, do not burst
                due, delay = time.monotonic(), 0.0
            if delay > 0:
                self.stopping.wait(delay)


class Camera:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.glib, self.gst, self.gst_rtsp, self.rtsp_server = load_gi()
        needed = ELEMENT_PACKAGES if args.check else CODEC_ELEMENTS[args.codec]
        missing = [
            f"{name} ({ELEMENT_PACKAGES[name]})"
            for name in needed
            if self.gst.ElementFactory.find(name) is None
        ]
        if missing:
            fail("GStreamer elements missing: " + ", ".join(missing) + ": install the packages")
        self.feeders: list[Feeder] = []
        self.lock = threading.Lock()

    def factory(self, width: int, height: int, bitrate: int) -> Any:
        args = self.args
        caps = f"video/x-raw,format=I420,width={width},height={height},framerate={args.fps}/1"
        frame_bytes = width * height * 3 // 2
        launch = (
            f"( appsrc name=src is-live=true format=time do-timestamp=true block=false"
            f' caps="{caps}" max-buffers=2 max-bytes={2 * frame_bytes} leaky-type=downstream'
            f" ! {encoder(args.codec, bitrate, args.fps)} )"
        )
        factory = self.rtsp_server.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.connect("media-configure", self.on_media, width, height)
        if not args.no_auth:
            permissions = self.rtsp_server.RTSPPermissions()
            permissions.add_role_from_structure(
                self.gst.Structure.new_from_string(
                    "camera-user, media.factory.access=(boolean)true,"
                    " media.factory.construct=(boolean)true"
                )
            )
            factory.set_permissions(permissions)
        return factory

    def on_media(self, _factory: Any, media: Any, width: int, height: int) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        feeder = Feeder(self.gst, appsrc, Painter(width, height, self.args.pattern), self.args.fps)
        media.connect("unprepared", lambda _media: self.stop_feeder(feeder))
        with self.lock:
            self.feeders.append(feeder)
        feeder.start()

    def stop_feeder(self, feeder: Feeder) -> None:
        feeder.stopping.set()
        with self.lock:
            if feeder in self.feeders:
                self.feeders.remove(feeder)

    def auth(self) -> Any:
        args, server = self.args, self.rtsp_server
        auth = server.RTSPAuth()
        token = server.RTSPToken()
        token.set_string("media.factory.role", "camera-user")
        # One method: PyGObject passes RTSPAuthMethod as an enum, so BASIC | DIGEST
        # (the C API's flags) cannot be set from Python.
        if args.auth == "digest":
            auth.add_digest(args.user, args.password, token)
            auth.set_supported_methods(self.gst_rtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(server.RTSPAuth.make_basic(args.user, args.password), token)
            auth.set_supported_methods(self.gst_rtsp.RTSPAuthMethod.BASIC)
        auth.set_realm("rtsp_test_camera")
        return auth

    def run(self) -> int:
        args = self.args
        server = self.rtsp_server.RTSPServer()
        server.set_address(args.host)
        server.set_service(str(args.port))
        mounts = server.get_mount_points()
        (main_w, main_h), (sub_w, sub_h) = sub_sizes(args.width, args.height)
        mounts.add_factory("/main", self.factory(main_w, main_h, args.bitrate))
        mounts.add_factory("/sub", self.factory(sub_w, sub_h, args.sub_bitrate))
        if not args.no_auth:
            server.set_auth(self.auth())
        if server.attach(None) == 0:
            fail(f"cannot listen on {args.host}:{args.port}", status=1)
        port = server.get_bound_port()
        print(json.dumps(ready_line(args, port)), flush=True)

        loop = self.glib.MainLoop()

        def quit_loop(*_: object) -> bool:
            loop.quit()
            return False

        for signum in (signal.SIGTERM, signal.SIGINT):
            self.glib.unix_signal_add(self.glib.PRIORITY_DEFAULT, signum, quit_loop)
        if args.exit_on_stdin_eof:
            self.glib.io_add_watch(
                sys.stdin.fileno(),
                self.glib.PRIORITY_DEFAULT,
                self.glib.IOCondition.IN | self.glib.IOCondition.HUP | self.glib.IOCondition.ERR,
                lambda fd, _cond: quit_loop() if not os.read(fd, 4096) else True,
            )
        loop.run()
        with self.lock:
            feeders = list(self.feeders)
        for feeder in feeders:
            feeder.stopping.set()
        for feeder in feeders:
            feeder.join(timeout=2)
        return 0


def ready_line(args: argparse.Namespace, port: int) -> dict[str, object]:
    host = args.host if ":" not in args.host else f"[{args.host}]"
    if args.host in ("0.0.0.0", "::"):  # noqa: S104 (a wildcard bind: clients use loopback)
        host = "127.0.0.1"
    if args.no_auth:
        userinfo, user, password = "", None, None
    else:
        user, password = args.user, args.password
        quote = urllib.parse.quote
        userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return {
        "port": port,
        "main": f"rtsp://{userinfo}{host}:{port}/main",
        "sub": f"rtsp://{userinfo}{host}:{port}/sub",
        "user": user,
        "password": password,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    camera = Camera(args)
    if args.check:
        print("ok", flush=True)
        return 0
    return camera.run()


if __name__ == "__main__":
    sys.exit(main())
