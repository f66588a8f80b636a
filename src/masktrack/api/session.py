"""Interactive segmentation of one video: masks given or corrected on any frame, re-propagated from there.

    session = predictor.session("clip.mp4")
    session.add_mask(0, first)                       # (H, W) uint8 labels, e.g. from predictor.propose(...)
    labels = dict(session.propagate())               # every frame
    session.add_mask(37, corrected)                  # a frame that went wrong, corrected (objects may be new)
    labels.update(session.propagate())               # frames 37.. again

MaskTrack's input is the previous frame's mask, so a corrected mask at frame k restarts propagation at k.
Objects seen for the first time are fine-tuned on the frame where they are first given; the networks of
objects already tracked are kept. A given mask is taken as it is on its frame: every later propagation
passes through it again, and an object left out of it is not tracked past it until it is given again.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from masktrack.api.inputs import MaskInput, frame_mask, open_file
from masktrack.data.masks import object_ids
from masktrack.model.runtime import for_runtime, resolve_runtime
from masktrack.online.finetune import StepCallback
from masktrack.propagate.propagate import Propagator

if TYPE_CHECKING:
    from masktrack.api.predictor import Networks, Predictor


class Session:
    """One video file or frame folder, its given masks by frame, and the networks fine-tuned for its objects."""

    def __init__(self, predictor: Predictor, video: str | Path) -> None:
        self.predictor = predictor
        self.sequence = open_file(video)
        self.given: dict[int, np.ndarray] = {}  # frame index -> the labels given there
        self.networks: Networks = {}  # converted for the propagation runtime once, used by every pass
        self.motion: Networks | None = None if predictor.config.motion.weight == 0 else {}
        propagate = predictor.config.propagate
        self.runtime = resolve_runtime(propagate.runtime, str(predictor.device), propagate.amp)
        self.start: int | None = None  # the earliest frame given a mask since the last propagation

    @property
    def frame_count(self) -> int:
        return len(self.sequence)

    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``(H, W, 3)`` uint8 RGB."""
        return self.sequence.read_frame(index)

    def add_mask(self, index: int, mask: MaskInput) -> None:
        """Give (or correct) frame ``index``'s labels: a label array or PNG path of every object on that frame."""
        self.given[index] = frame_mask(self.sequence, index, mask)
        self.start = index if self.start is None else min(self.start, index)

    def new_objects(self) -> dict[int, np.ndarray]:
        """``{frame index: labels of the objects first given there}`` for the objects that have no network yet."""
        appearances: dict[int, np.ndarray] = {}
        seen = set(self.networks)
        for index, labels in sorted(self.given.items()):
            new = [i for i in object_ids(labels) if i not in seen]
            if new:
                appearances[index] = np.where(np.isin(labels, new), labels, 0).astype(np.uint8)
                seen.update(new)
        return appearances

    def finetune_steps_pending(self) -> int:
        """Fine-tuning steps the next :meth:`propagate` takes (for its new objects)."""
        objects = sum(len(object_ids(labels)) for labels in self.new_objects().values())
        return self.predictor.finetune_steps(objects) if objects else 0

    def propagate(self, on_step: StepCallback | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Fine-tune networks for new objects, then yield ``(index, labels)`` from the earliest frame given a mask since
        the last call to the end (nothing when no mask was given since). ``on_step``: called after each fine-tuning step."""
        if self.start is None:
            return
        new = self.new_objects()
        if new:
            models, motion = self.predictor.finetune(self.sequence, new, on_step)
            self.networks.update(for_runtime(models, self.runtime))
            if self.motion is not None and motion is not None:
                self.motion.update(for_runtime(motion, self.runtime))
        start, self.start = self.start, None
        propagator = None
        for index, image in enumerate(islice(self.sequence.frames(), start, None), start):
            given = self.given.get(index)
            if propagator is None or given is not None:  # a given mask restarts propagation from itself
                propagator = self._propagator()
            yield index, propagator.step(image, given).labels

    def _propagator(self) -> Propagator:
        """A fresh propagator of every object's networks."""
        config = self.predictor.config
        return Propagator(self.networks, config.propagate, self.predictor.device, self.motion, config.motion.weight)
