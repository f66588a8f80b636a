"""The frames a report draws: predicted masks over the input frames, and each object's area per frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from masktrack.data.masks import read_mask
from masktrack.data.sources import Sequence, open_input
from masktrack.data.video import read_video_frames
from masktrack.errors import InputError
from masktrack.report.dataset import DatasetFrames
from masktrack.report.figures import render_labels
from masktrack.report.run import Run


class RenderedFrames:
    """Each sequence's predicted masks drawn over its frames, taken from the first source that has them: the run's
    overlay video, the dataset given (``--images``), the input recorded in ``config.yaml``; else on black."""

    def __init__(self, run: Run, dataset: DatasetFrames | None, recorded_input: Path | None) -> None:
        self.run, self.dataset = run, dataset
        self.inputs = _open_recorded(recorded_input, run)

    def has_frames(self, sequence: str) -> bool:
        """Whether ``sequence``'s masks are drawn over its frames (not on black)."""
        return (self.run.overlay_video(sequence) is not None or sequence in self.inputs
                or (self.dataset is not None and sequence in self.dataset.sequences))

    def rendered(self, sequence: str, frames: list[str]) -> Iterator[np.ndarray]:
        """The RGB rendering of each of ``frames`` (names of predicted frames, in order), one at a time."""
        video = self.run.overlay_video(sequence)
        if video is not None:
            return _picked(read_video_frames(video), self.run.sequences[sequence], frames)
        inputs = self.inputs.get(sequence)
        images = _picked(inputs.frames(), inputs.frame_names, frames) if inputs else (None for _ in frames)
        return (self._draw(sequence, name, image) for name, image in zip(frames, images))

    def _draw(self, sequence: str, frame: str, image: np.ndarray | None) -> np.ndarray:
        labels = read_mask(self.run.prediction_path(sequence, frame))
        if image is None and self.dataset is not None:
            image = self.dataset.image(sequence, frame, labels.shape)
        return render_labels(labels, image if image is not None and image.shape[:2] == labels.shape else None)


def object_areas(run: Run, sequence: str) -> dict[int, list[float]]:
    """Each predicted object's area per frame of ``sequence``, as a fraction of the frame (0 where it is absent)."""
    areas: dict[int, list[float]] = {}
    frames = run.sequences[sequence]
    for index, frame in enumerate(frames):
        labels = read_mask(run.prediction_path(sequence, frame))
        counts = np.bincount(labels.ravel(), minlength=256) / labels.size
        for object_id in np.flatnonzero(counts[1:]) + 1:
            areas.setdefault(int(object_id), [0.0] * len(frames))[index] = float(counts[object_id])
    return dict(sorted(areas.items()))


def _picked(images: Iterator[np.ndarray], names: list[str], wanted: list[str]) -> Iterator[np.ndarray]:
    """The ``images`` (one per name of ``names``, in order) of the ``wanted`` names, decoding no further than needed."""
    remaining = set(wanted)
    for name, image in zip(names, images):
        if name in remaining:
            yield image
            remaining.discard(name)
            if not remaining:
                return


def _open_recorded(path: Path | None, run: Run) -> dict[str, Sequence]:
    """The run's sequences in the input it recorded, when that input is still there with the predicted frames."""
    if path is None or not path.exists():
        return {}
    try:
        sequences = open_input(path)
    except InputError:
        return {}
    return {sequence.name: sequence for sequence in sequences
            if sequence.name in run.sequences and set(run.sequences[sequence.name]) <= set(sequence.frame_names)}
