"""Segment one sequence end to end: fine-tune on its given masks, propagate, write outputs."""

from __future__ import annotations

import time
from collections.abc import Sequence as SequenceOf
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from masktrack.augment.deform import DeformConfig
from masktrack.augment.recompose import RecomposeConfig
from masktrack.augment.transforms import AugmentConfig
from masktrack.data.sources import Sequence, first_appearances
from masktrack.errors import InputError
from masktrack.online.finetune import FinetuneConfig, finetune_parents
from masktrack.propagate.crf import CRFConfig
from masktrack.propagate.motion import MotionConfig, annotated_motion_image
from masktrack.propagate.outputs import SequenceTiming, SequenceWriter
from masktrack.propagate.propagate import PropagateConfig, processing_size, propagate
from masktrack.settings import as_mapping, build, check_keys, plain

DEFAULT_FPS = 24.0

# Each section of a segment config: its settings class and the nested settings classes within it.
SECTIONS: dict[str, tuple[type, dict[str, type]]] = {
    "finetune": (FinetuneConfig, {"augment": AugmentConfig, "deform": DeformConfig, "recompose": RecomposeConfig}),
    "propagate": (PropagateConfig, {"crf": CRFConfig}),
    "motion": (MotionConfig, {}),
}


@dataclass
class SegmentConfig:
    """Everything `masktrack segment` tunes: fine-tuning, propagation, the motion stream and the random seed."""

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    propagate: PropagateConfig = field(default_factory=PropagateConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> SegmentConfig:
        """Build from nested plain values (e.g. a YAML file); unknown keys and bad values raise InputError.

        A ``run:`` section (what a run folder's ``config.yaml`` records about the run) is ignored.
        """
        values = {key: value for key, value in values.items() if key != "run"}
        check_keys(values, cls, source)
        try:
            sections = {}
            for name, (kind, nested) in SECTIONS.items():
                section = dict(as_mapping(values.get(name) or {}, f"{source}: {name}"))
                for key, nested_kind in nested.items():
                    if section.get(key) is not None:
                        section[key] = build(nested_kind, as_mapping(section[key], f"{source}: {name}.{key}"), f"{source}: {name}.{key}")
                sections[name] = build(kind, section, f"{source}: {name}")
            return cls(
                **sections,
                seed=int(values.get("seed", 0)),
            )
        except (TypeError, ValueError) as error:
            raise InputError(f"{source}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested values (tuples as lists), ready for YAML."""
        return plain(asdict(self))


def motion_annotations(sequence: Sequence, appearances: dict[int, np.ndarray],
                       config: SegmentConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(motion image, labels)`` for each annotated frame, the motion image at the propagation's network size."""
    size, preset = config.propagate.size, config.propagate.flow_preset
    return [(annotated_motion_image(sequence, index, processing_size(labels.shape, size), preset), labels)
            for index, labels in sorted(appearances.items())]


def segment_sequence(
    parents: SequenceOf[nn.Module],
    sequence: Sequence,
    config: SegmentConfig,
    run_dir: Path,
    device: torch.device | str = "cpu",
    overlay: bool = False,
    save_probabilities: bool = False,
    progress: bool = True,
) -> SequenceTiming:
    """Fine-tune ``parents`` on ``sequence``'s given masks, propagate, write ``run_dir/<name>/``.

    With several parents, each object's fine-tuned networks run as one ensemble (probabilities averaged).
    With ``config.motion.weight > 0``, each parent is also fine-tuned on the annotated frames' motion
    images, and those networks run as the motion stream (``masktrack.propagate.motion``).
    """
    appearances = first_appearances(sequence, first_frame_only=False)
    if not any(labels.any() for labels in appearances.values()):
        raise InputError(f"{sequence.name}: the given masks contain no object")
    start = time.perf_counter()
    annotations = [(sequence.read_frame(index), labels) for index, labels in sorted(appearances.items())]
    models = finetune_parents(parents, annotations, config.finetune, device, config.seed, progress=progress)
    motion_models = None
    if config.motion.weight > 0:
        motion_models = finetune_parents(parents, motion_annotations(sequence, appearances, config),
                                         replace(config.finetune, steps=config.motion.steps), device, config.seed, progress=progress)
    del annotations
    finetune_s = time.perf_counter() - start
    start = time.perf_counter()
    fps = getattr(sequence, "fps", None) or DEFAULT_FPS
    writer = SequenceWriter(run_dir, sequence.name, list(sequence.frame_names), fps if overlay else None, save_probabilities)
    frames = 0
    with writer:
        stream = propagate(sequence.frames(), models, appearances, config.propagate, device, motion_models,
                           config.motion.weight, config.motion.feedback)
        for result in tqdm(stream, total=len(sequence), desc=f"segment {sequence.name}", unit="frame", disable=not progress, leave=False):
            writer.write(result)
            frames += 1
    return SequenceTiming(frames=frames, finetune_s=round(finetune_s, 3), propagate_s=round(time.perf_counter() - start, 3))

