"""Video files through PyAV: streaming decoding, cheap probing, atomic MP4 writing; mask overlays."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from masktrack.atomic import atomic_file
from masktrack.data.masks import DAVIS_PALETTE
from masktrack.errors import InputError

CONTOUR_PX_PER_240 = 1  # overlay contour thickness per 240 pixels of the shorter image side


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, learned without decoding more than its first frame."""

    frames: int  # as the container declares them (else the frames in the file)
    height: int  # as displayed (after the container's rotation)
    width: int
    fps: float | None
    present: int  # frames whose data is in the file: fewer than ``frames`` when the file is truncated


class VideoDecodeError(InputError):
    """A frame of a video does not decode (a damaged or truncated file)."""


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count (container header) and the frames present in the file (counted packets, nothing decoded),
    display size and rate."""
    path = Path(path)
    with _open_video(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else None
        declared = stream.frames
        try:
            first = next(container.decode(stream), None)
            if first is None:
                raise InputError(f"{path}: video has no frames")
            height, width = _upright(first).shape[:2]
            container.seek(0)
            present = sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as error:
            raise InputError(f"{path}: cannot read video ({error})") from None
    return VideoInfo(frames=declared if declared > 0 else present, height=height, width=width, fps=fps, present=present)


def read_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video lazily, one ``(H, W, 3)`` uint8 RGB frame at a time, upright; VideoDecodeError when a frame
    does not decode."""
    path = Path(path)
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames, None)
            except av.FFmpegError as error:
                raise VideoDecodeError(f"{path}: cannot decode video ({error})") from None
            if frame is None:
                return
            yield _upright(frame)


def _open_video(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise InputError(f"{path}: cannot read video ({error})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: file has no video stream")
    return container


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """RGB pixels turned as the container's display matrix asks (e.g. portrait phone videos)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class VideoWriter:
    """Write RGB uint8 frames to an H.264 (or MPEG-4 part 2) yuv420p MP4, atomically.

    Use as a context manager; the file appears under ``path`` only when the block ends
    without error. Odd frame sizes are padded to even by repeating the last row/column.
    """

    def __init__(self, path: str | Path, fps: float = 24.0) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self._stack = ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        self._temporary = self._stack.enter_context(atomic_file(self.path))
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame; every frame must have the first one's size."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        if self._size is None:
            self._size = frame.shape[:2]
            self._open(*self._size)
        elif frame.shape[:2] != self._size:
            raise ValueError(f"frame size {frame.shape[:2]} differs from the first frame's {self._size}")
        pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
        if any(after for _, after in pad):
            frame = np.pad(frame, pad, mode="edge")
        self._mux(av.VideoFrame.from_ndarray(frame, format="rgb24"))

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            self._finish(complete=exc_type is None)
        except BaseException as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        self._stack.__exit__(exc_type, exc, traceback)

    def _finish(self, complete: bool) -> None:
        try:
            if complete:
                if self._container is None:
                    raise ValueError(f"{self.path}: no frames were written")
                self._mux(None)
        finally:
            if self._container is not None:
                self._container.close()

    def _open(self, height: int, width: int) -> None:
        container_format = _format_for(self.path)
        options = {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}
        self._container = av.open(str(self._temporary), "w", format=container_format, options=options)
        rate = Fraction(self.fps).limit_denominator(1001)
        if "libx264" in av.codecs_available:
            stream = self._container.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "fast"})
        else:
            stream = self._container.add_stream("mpeg4", rate=rate)
            stream.bit_rate = int(0.3 * width * height * self.fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        self._stream = stream

    def _mux(self, frame: av.VideoFrame | None) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


def _format_for(path: Path) -> str:
    """Container format from the final name: QuickTime or Matroska when asked, else MP4."""
    return {".mov": "mov", ".mkv": "matroska"}.get(path.suffix.lower(), "mp4")


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Tint each object of ``labels`` in its DAVIS palette colour over ``image`` and outline it."""
    image = np.asarray(image)
    labels = np.asarray(labels, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3 or labels.shape != image.shape[:2]:
        raise ValueError(f"image {image.shape} and label mask {labels.shape} do not match")
    colours = DAVIS_PALETTE[labels]
    objects = labels > 0
    result = image.copy()
    result[objects] = np.rint((1 - alpha) * image[objects] + alpha * colours[objects]).astype(np.uint8)
    thickness = max(1, round(CONTOUR_PX_PER_240 * min(labels.shape) / 240))
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    edges = (cv2.erode(labels, kernel) != labels) | (cv2.dilate(labels, kernel) != labels)
    contour = objects & edges
    result[contour] = colours[contour]
    return result
