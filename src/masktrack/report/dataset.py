"""Input frames and ground-truth masks of a run, looked up in a DAVIS-layout dataset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from masktrack.data.sources import open_davis


class DatasetFrames:
    """Frames and annotations of a DAVIS root, by sequence and frame name, resized to the predictions.

    Sequence and frame names come from the run's prediction files; a frame or mask the
    dataset lacks gives ``None``.
    """

    def __init__(self, root: Path) -> None:
        self.sequences = {sequence.name: sequence for sequence in open_davis(root)}
        self._indices = {name: {frame: i for i, frame in enumerate(s.frame_names)} for name, s in self.sequences.items()}

    def image(self, sequence: str, frame: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The RGB frame resized to ``shape`` (H, W), or ``None``."""
        index = self._indices.get(sequence, {}).get(frame)
        if index is None:
            return None
        return _resize(self.sequences[sequence].read_frame(index), shape, cv2.INTER_AREA)

    def ground_truth(self, sequence: str, frame: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The label mask resized (nearest) to ``shape`` (H, W), or ``None``."""
        index = self._indices.get(sequence, {}).get(frame)
        if index is None or index not in self.sequences[sequence].annotation_files:
            return None
        return _resize(self.sequences[sequence].read_annotation(index), shape, cv2.INTER_NEAREST)


def _resize(array: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    return array if array.shape[:2] == shape else cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)
