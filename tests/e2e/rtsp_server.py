"""A real RTSP server for the QR tests: GStreamer's gst-rtsp-server (Debian packages
gir1.2-gst-rtsp-server-1.0, python3-gi) serving an MJPEG AVI file as H.264.

Run with Debian's python3 (the venv has no GObject bindings):
    /usr/bin/python3 rtsp_server.py VIDEO.avi    → prints "ready PORT": rtsp://127.0.0.1:PORT/cam

It binds any free port and says which: a port picked by the caller, released and bound
here later could be taken in between by anyone on a busy machine.
"""

import sys

# Debian's GObject bindings: not in the venv, so mypy finds no module (as in
# cloud_mock/rtsp_test_camera.py)
import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402

Gst.init(None)
video = sys.argv[1]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service("0")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( filesrc location={video} ! avidemux ! jpegdec ! videoconvert"
    " ! x264enc tune=zerolatency speed-preset=ultrafast ! rtph264pay name=pay0 pt=96 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print(f"ready {server.get_bound_port()}", flush=True)
GLib.MainLoop().run()
