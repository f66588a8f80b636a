"""The open video's frames as JPEG bytes (decoded once, so that scrubbing is fast) and overlay views."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from masktrack.data.sources import Sequence, open_input
from masktrack.data.video import overlay
from masktrack.errors import InputError

JPEG_QUALITY = 88
DEFAULT_FPS = 24.0


def encode_jpeg(image: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 RGB as JPEG bytes."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes as ``(H, W, 3)`` uint8 RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class Frames:
    """Every frame of a video file or frame folder, kept as JPEG bytes for the page."""

    def __init__(self, path: Path) -> None:
        sequences = open_input(path)
        if len(sequences) != 1:
            raise InputError(f"{path}: holds {len(sequences)} sequences; open one video or frame folder")
        sequence: Sequence = sequences[0]
        self.path = Path(path)
        self.name = sequence.name
        self.fps = float(getattr(sequence, "fps", None) or DEFAULT_FPS)
        self.jpegs = [encode_jpeg(frame) for frame in sequence.frames()]
        if not self.jpegs:
            raise InputError(f"{path}: no frames")
        self.height, self.width = decode_jpeg(self.jpegs[0]).shape[:2]

    def __len__(self) -> int:
        return len(self.jpegs)

    def decoded(self) -> Iterator[np.ndarray]:
        """The frames as decoded from the source, in order (for the overlay video)."""
        return open_input(self.path)[0].frames()

    def jpeg(self, index: int) -> bytes:
        """Frame ``index`` as JPEG (IndexError outside the video)."""
        if not 0 <= index < len(self.jpegs):
            raise IndexError(index)
        return self.jpegs[index]

    def view(self, index: int, labels: np.ndarray | None) -> bytes:
        """Frame ``index`` with ``labels`` tinted over it, as JPEG; the plain frame without labels."""
        data = self.jpeg(index)
        if labels is None or not labels.any():
            return data
        return encode_jpeg(overlay(decode_jpeg(data), labels))
