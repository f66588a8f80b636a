"""What a user hands the Predictor: a video (file, frame folder or RGB arrays) and masks by frame index."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import chain, islice
from pathlib import Path
from typing import Union

import numpy as np

from masktrack.data.sources import Sequence, open_input
from masktrack.errors import InputError

Video = Union[str, Path, Iterable[np.ndarray]]
MaskInput = Union[str, Path, np.ndarray]


class FrameStream(Sequence):
    """Frames from an iterable of ``(H, W, 3)`` uint8 RGB arrays, read once; the first ``kept`` are held so that
    fine-tuning can read the annotated frames (``len`` counts only those)."""

    def __init__(self, frames: Iterable[np.ndarray], kept: int, name: str = "frames") -> None:
        self._rest = iter(frames)
        self._kept = [check_frame(frame, k) for k, frame in enumerate(islice(self._rest, kept))]
        if not self._kept:
            raise InputError(f"{name}: no frames")
        super().__init__(name, [f"{index:05d}" for index in range(len(self._kept))], {})

    @property
    def size(self) -> tuple[int, int]:
        return self._kept[0].shape[:2]

    def frames(self) -> Iterator[np.ndarray]:
        """The held frames, then the rest of the stream (checked to be the same size)."""
        count = len(self._kept)
        rest = (check_frame(frame, count + k, self.size) for k, frame in enumerate(self._rest))
        return chain(self._kept, rest)

    def read_frame(self, index: int) -> np.ndarray:
        self._check_index(index)
        return self._kept[index]


def check_frame(frame: np.ndarray, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """``frame`` if it is an ``(H, W, 3)`` uint8 RGB array (of ``size`` when given), else InputError."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"frame {index}: expected an (H, W, 3) uint8 RGB array, got {frame.dtype} {frame.shape}")
    if size is not None and frame.shape[:2] != tuple(size):
        raise InputError(f"frame {index}: {frame.shape[1]}x{frame.shape[0]}, the first frame is {size[1]}x{size[0]}")
    return frame


def open_video(video: Video, masks: Mapping[int, MaskInput] | MaskInput) -> tuple[Sequence, dict[int, np.ndarray]]:
    """The sequence to segment and its first appearances (``{frame index: mask of the objects new there}``).

    ``masks`` maps frame indices to mask PNG paths or label arrays; a single path or array belongs to frame 0.
    """
    masks = dict(masks) if isinstance(masks, Mapping) else {0: masks}
    if not masks:
        raise InputError("no masks: give the first frame's mask, e.g. masks={0: 'first.png'}")
    sequence = open_file(video) if isinstance(video, (str, Path)) else FrameStream(video, max(masks) + 2)
    labels = {index: frame_mask(sequence, index, mask) for index, mask in sorted(masks.items())}
    return sequence, first_objects(labels)


def open_file(video: str | Path) -> Sequence:
    """The one sequence of a video file or frame folder."""
    sequences = open_input(Path(video), [])
    if len(sequences) != 1:
        raise InputError(f"{video}: holds {len(sequences)} sequences; give one video or frame folder")
    return sequences[0]


def frame_mask(sequence: Sequence, index: int, mask: MaskInput) -> np.ndarray:
    """The label mask given for frame ``index`` of ``sequence`` at its frame size."""
    if isinstance(index, np.integer):
        index = int(index)
    if not isinstance(index, int) or not 0 <= index < len(sequence):
        raise InputError(f"masks: frame index {index!r} is not a frame of {sequence.name}")
    if isinstance(mask, (str, Path)):
        sequence.annotation_files[index] = Path(mask)
        return sequence.read_annotation(index)
    labels = np.asarray(mask)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if labels.shape != tuple(sequence.size) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 254:
        raise InputError(f"masks[{index}]: expected an {sequence.size} label array of ids 0..254, got {labels.dtype} {labels.shape}")
    return labels.astype(np.uint8)


def first_objects(labels: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """``{frame index: the objects first given there}`` from label masks by frame (later masks' known ids dropped)."""
    seen: set[int] = set()
    appearances: dict[int, np.ndarray] = {}
    for index, mask in sorted(labels.items()):
        new = [int(i) for i in np.unique(mask) if i != 0 and int(i) not in seen]
        if new:
            appearances[index] = np.where(np.isin(mask, new), mask, 0).astype(np.uint8)
            seen.update(new)
    if not appearances:
        raise InputError("the given masks contain no object")
    return appearances

