"""A video a camera could have recorded: grey frames, then a QR card held up to it."""

from __future__ import annotations

from pathlib import Path


def video_with_card(path: Path, card_png: Path, blank_seconds: float, card_frames: int) -> None:
    """An MJPEG AVI at 10 fps: a grey 640x480 frame for `blank_seconds`, then the card,
    scaled to 80 % of the frame, for `card_frames` frames."""
    import cv2
    import numpy as np

    card = cv2.imread(str(card_png))
    if card is None:
        raise ValueError(f"{card_png} is not an image")
    height, width = 480, 640
    frame = np.full((height, width, 3), 200, np.uint8)
    scale = min(height, width) * 0.8 / max(card.shape[:2])
    card = cv2.resize(card, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    y, x = (height - card.shape[0]) // 2, (width - card.shape[1]) // 2
    with_card = frame.copy()
    with_card[y : y + card.shape[0], x : x + card.shape[1]] = card
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (width, height))
    for _ in range(int(blank_seconds * 10)):
        writer.write(frame)
    for _ in range(card_frames):
        writer.write(with_card)
    writer.release()
