"""The Python API: a Predictor segments objects through a video, a Tracker frame by frame.

    import masktrack
    predictor = masktrack.Predictor()                  # the shipped model, preset "default"
    for index, labels in predictor.segment("clip.mp4", masks={0: "first.png"}):
        ...                                            # labels: (H, W) uint8, ids as in the mask

    first = predictor.propose(frame, [masktrack.ObjectPrompt(1, box=(x, y, w, h))])   # a first mask from a box
    session = predictor.session("clip.mp4")            # corrections that re-propagate (masktrack.api.session)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from collections.abc import Sequence as SequenceOf
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from masktrack.api.config import SegmentConfig, segment_config
from masktrack.api.inputs import MaskInput, Video, check_frame, open_video
from masktrack.api.parents import for_parent, load_parents
from masktrack.api.session import Session
from masktrack.data.masks import read_mask
from masktrack.data.sources import Sequence
from masktrack.devices import choose_device
from masktrack.errors import InputError
from masktrack.model.inputs import processing_size
from masktrack.model.precision import require_bf16
from masktrack.online.finetune import StepCallback, finetune_parents, training_steps
from masktrack.propagate.motion import annotated_motion_image, motion_image_between
from masktrack.prompt import ObjectPrompt, ProposalConfig, propose_mask
from masktrack.propagate.propagate import FrameResult, Propagator

Networks = dict[int, nn.Module]


class Predictor:
    """A parent network (or an ensemble) and the settings to fine-tune and propagate it with.

    ``weights``: a checkpoint path, several (an ensemble), or None for the shipped model. ``preset``: ``fast``,
    ``default`` or ``best`` (``masktrack.api.config.PRESETS``). ``config``: a YAML settings file over the preset.
    ``overrides``: sections over both, e.g. ``finetune={"steps": 100}, propagate={"flow": True}, seed=1``.
    ``device``: ``cpu``, ``cuda`` or ``cuda:N`` (default: CUDA when available).
    """

    def __init__(self, weights: str | Path | SequenceOf[str | Path] | None = None, preset: str | None = None,
                 device: str | None = None, *, config: str | Path | None = None, progress: bool = False,
                 **overrides: Any) -> None:
        self.device = choose_device(device)
        paths = [weights] if isinstance(weights, (str, Path)) else weights
        self.parents, self.metadata = load_parents(paths, self.device)
        settings = segment_config(preset, Path(config) if config is not None else None, overrides)
        self.config: SegmentConfig = for_parent(settings, self.metadata)
        self.settings = settings  # as given, before the parent's offline settings fill what is unset
        self.progress = progress
        if self.config.finetune.amp or self.config.propagate.amp:
            require_bf16(self.device)

    def segment(self, video: Video, masks: Mapping[int, MaskInput] | MaskInput) -> Iterator[tuple[int, np.ndarray]]:
        """Fine-tune on the given masks, then yield ``(frame index, (H, W) uint8 labels)`` for every frame, streaming.

        ``video``: a video file, a frame folder, or an iterable of ``(H, W, 3)`` uint8 RGB arrays. ``masks``: frame
        index -> mask PNG path or label array; objects may first appear at a later frame.
        """
        sequence, appearances = open_video(video, masks)
        networks = self.finetune(sequence, appearances)
        for result in self.propagate(sequence, appearances, networks):
            yield result.index, result.labels

    def finetune(self, sequence: Sequence, appearances: Mapping[int, np.ndarray],
                 on_step: StepCallback | None = None) -> tuple[Networks, Networks | None]:
        """Each object's fine-tuned network, and its motion network when the motion stream is on; ``on_step`` is
        called after each of the :meth:`finetune_steps` steps."""
        config = self.config
        annotations = [(sequence.read_frame(index), labels) for index, labels in sorted(appearances.items())]
        networks = finetune_parents(self.parents, annotations, config.finetune, self.device, config.seed, self.progress, on_step)
        if config.motion.weight == 0:
            return networks, None
        size, preset = config.propagate.size, config.propagate.flow_preset
        motion = [(annotated_motion_image(sequence, index, processing_size(labels.shape, size), preset), labels)
                  for index, labels in sorted(appearances.items())]
        return networks, self.finetune_motion(motion, on_step)

    def finetune_steps(self, objects: int) -> int:
        """How many steps :meth:`finetune` takes for ``objects`` objects, over all parents and both streams."""
        config = self.config
        steps = training_steps(config.finetune, objects)
        if config.motion.weight > 0:
            steps += training_steps(replace(config.finetune, steps=config.motion.steps), objects)
        return steps * len(self.parents)

    def propagate(self, sequence: Sequence, appearances: Mapping[int, np.ndarray],
                  networks: tuple[Networks, Networks | None]) -> Iterator[FrameResult]:
        """Segment ``sequence``'s frames one by one with the fine-tuned ``networks``."""
        models, motion = networks
        propagator = Propagator(models, self.config.propagate, self.device, motion, self.config.motion.weight)
        for index, image in enumerate(sequence.frames()):
            yield propagator.step(image, appearances.get(index))

    def propose(self, frame: np.ndarray, prompts: SequenceOf[ObjectPrompt]) -> np.ndarray:
        """A first mask from prompts: ``(H, W)`` uint8 labels of ``frame`` (``(H, W, 3)`` uint8 RGB), one object per
        :class:`~masktrack.prompt.ObjectPrompt` (a box and/or clicks), ids as the prompts say."""
        frame = check_frame(frame, 0)
        return propose_mask(self.parents[0], frame, prompts, self.config.propagate.size, ProposalConfig())

    def session(self, video: str | Path) -> Session:
        """A :class:`~masktrack.api.session.Session` of a video file or frame folder: masks given or corrected on any
        frame, re-propagated from there."""
        return Session(self, video)

    def tracker(self) -> Tracker:
        """A :class:`Tracker` for frames that arrive one at a time (a camera, a stream)."""
        return Tracker(self)

    def finetune_motion(self, annotations: list[tuple[np.ndarray, np.ndarray]], on_step: StepCallback | None = None) -> Networks:
        """Motion networks fine-tuned on ``(motion image, labels)`` pairs (``masktrack.propagate.motion``)."""
        config = self.config
        settings = replace(config.finetune, steps=config.motion.steps)
        return finetune_parents(self.parents, annotations, settings, self.device, config.seed, self.progress, on_step)


class Tracker:
    """Frame-by-frame segmentation: ``labels = tracker.step(frame, mask)`` with the first frame's mask, then
    ``tracker.step(frame)`` for each next frame. A mask given later adds its new objects (fine-tuned on that
    frame) and resets the tracked ones it holds."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        config = predictor.config
        self.propagator = Propagator({}, config.propagate, predictor.device, None, config.motion.weight)
        self.waiting_motion: list[tuple[np.ndarray, np.ndarray]] = []  # annotated frames whose motion needs the next
        self.last_frame: np.ndarray | None = None

    def step(self, frame: np.ndarray, mask: MaskInput | None = None) -> np.ndarray:
        """The ``(H, W)`` uint8 labels of ``frame``; ``mask``: a label array or PNG path of objects given here."""
        frame = check_frame(frame, self.propagator.index, None if self.last_frame is None else self.last_frame.shape[:2])
        if self.waiting_motion:
            self._add_motion([(image, labels, frame) for image, labels in self.waiting_motion])
            self.waiting_motion = []
        given = None if mask is None else self._given(frame, mask)
        if given is not None:
            self._add_objects(frame, given)
        elif self.propagator.index == 0:
            raise InputError("the first frame needs a mask: tracker.step(frame, mask)")
        self.last_frame = frame
        return self.propagator.step(frame, given).labels

    def _given(self, frame: np.ndarray, mask: MaskInput) -> np.ndarray:
        labels = read_mask(mask) if isinstance(mask, (str, Path)) else np.asarray(mask)
        if labels.shape != frame.shape[:2]:
            raise InputError(f"mask: {labels.shape[1]}x{labels.shape[0]}, the frame is {frame.shape[1]}x{frame.shape[0]}")
        return labels.astype(np.uint8)

    def _add_objects(self, frame: np.ndarray, given: np.ndarray) -> None:
        """Fine-tune networks for the objects of ``given`` that are not tracked yet."""
        new_ids = sorted({int(i) for i in np.unique(given)} - set(self.propagator.models) - {0})
        if not new_ids:
            return
        labels = np.where(np.isin(given, new_ids), given, 0).astype(np.uint8)
        predictor, config = self.predictor, self.predictor.config
        networks = finetune_parents(predictor.parents, [(frame, labels)], config.finetune, predictor.device, config.seed,
                                    predictor.progress)
        self.propagator.add_objects(networks)
        if config.motion.weight > 0:
            if self.last_frame is None:
                self.waiting_motion.append((frame, labels))
            else:
                self._add_motion([(frame, labels, self.last_frame)])

    def _add_motion(self, annotated: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Motion networks for objects given on frames ``(image, labels, the neighbouring frame)``."""
        config = self.predictor.config
        size = processing_size(annotated[0][0].shape[:2], config.propagate.size)
        motion = [(motion_image_between(image, other, size, config.propagate.flow_preset), labels)
                  for image, labels, other in annotated]
        self.propagator.add_objects({}, self.predictor.finetune_motion(motion))
