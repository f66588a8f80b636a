"""MaskTrack's motion stream: a second network per object that sees optical-flow magnitude instead of colour.

The paper (MaskTrack+Flow) runs its network a second time with the flow field's magnitude, as a
three-channel image, in place of the RGB frame, fine-tunes that copy online on the annotated
frame's flow magnitude, and averages the two streams' outputs. Here the motion image of a frame is
the magnitude of its backward optical flow (the one ``masktrack.propagate.flow`` warps masks with)
less the frame's median flow, so that an object the camera follows, still in the frame while the
background moves, stands out as brightly as one moving before a still camera; it is scaled by its
99th percentile to [0, 255]. An annotated frame's motion image uses the flow to the previous frame,
or for the first frame the flow to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from masktrack.data.sources import Sequence
from masktrack.propagate.flow import StreamFlow, gray_frame


@dataclass
class MotionConfig:
    """The motion stream's settings; ``weight = 0`` leaves it off."""

    weight: float = 0.0  # share of the motion networks in each object's probabilities, the RGB networks have the rest
    steps: int = 100  # online fine-tuning steps of the motion networks (the other fine-tuning settings are the RGB networks')

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight < 1.0:
            raise ValueError(f"motion weight must be in [0, 1), got {self.weight}")
        if self.steps < 0:
            raise ValueError(f"motion steps must be >= 0, got {self.steps}")


def motion_image(flow: np.ndarray) -> np.ndarray:
    """``(h, w, 2)`` flow -> ``(h, w, 3)`` uint8 grey image of its magnitude relative to the median flow."""
    relative = flow.reshape(-1, 2) - np.median(flow.reshape(-1, 2), axis=0)
    magnitude = np.linalg.norm(relative, axis=1).reshape(flow.shape[:2])
    scale = max(float(np.percentile(magnitude, 99)), 1.0)
    grey = (np.clip(magnitude / scale, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def motion_image_between(image: np.ndarray, other: np.ndarray, size: tuple[int, int], preset: str) -> np.ndarray:
    """The motion image of ``image`` at ``size`` from its optical flow to the frame ``other``."""
    stream = StreamFlow(preset)
    stream.backward_flow(gray_frame(other, size))
    return motion_image(stream.backward_flow(gray_frame(image, size)))


def annotated_motion_image(sequence: Sequence, index: int, size: tuple[int, int], preset: str) -> np.ndarray:
    """The motion image of frame ``index`` at ``size``: its flow to the previous frame, or to the next for frame 0
    (black for a one-frame sequence)."""
    other = index - 1 if index > 0 else index + 1
    if other >= len(sequence):
        return np.zeros((*size, 3), dtype=np.uint8)
    return motion_image_between(sequence.read_frame(index), sequence.read_frame(other), size, preset)
