"""QR cards: making them and reading them from images, video files, cameras and streams."""

import os

# OpenCV and the FFmpeg inside it print their own warnings on stderr ("[ WARN:0@0.018]
# global cap.cpp:212 open VIDEOIO(FFMPEG)...", "moov atom not found") before the one line
# that says what went wrong. Both read these at their first use, so they are set here,
# before any `import cv2` (all in this package); a value given by the user wins.
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
