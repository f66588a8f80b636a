"""Parent networks: the shipped model or checkpoints, and the offline settings they were trained with."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from masktrack.api.config import SegmentConfig
from masktrack.augment.deform import DeformConfig
from masktrack.augment.transforms import AugmentConfig
from masktrack.errors import InputError
from masktrack.model.checkpoint import load_checkpoint
from masktrack.propagate.propagate import DILATION_FACTOR
from masktrack.settings import from_dict

SHIPPED_WEIGHTS = "weights/default.safetensors"  # package data of masktrack


def shipped_model() -> Path | None:
    """The shipped parent model (package data), or None when this install has none."""
    shipped = resources.files("masktrack").joinpath(SHIPPED_WEIGHTS)
    return Path(str(shipped)) if shipped.is_file() else None


def load_parents(weights: SequenceOf[str | Path] | None, device: str) -> tuple[list[torch.nn.Module], dict[str, Any]]:
    """The parent networks from ``weights`` (several: an ensemble; none: the shipped model) on ``device``, in eval
    mode, and the first one's metadata (all of them are fine-tuned with its offline settings)."""
    if not weights:
        shipped = shipped_model()
        if shipped is None:
            raise InputError(f"no shipped model at masktrack/{SHIPPED_WEIGHTS}: pass weights (--weights CKPT on the command line; train one with `masktrack train`)")
        weights = [shipped]
    loaded = [load_checkpoint(Path(path), map_location=device) for path in weights]
    return [model.eval() for model, _ in loaded], loaded[0][1]


@dataclass(frozen=True)
class TrainedWith:
    """What a parent's offline training recorded that its fine-tuning and propagation follow."""

    augment: AugmentConfig
    deform: DeformConfig
    height: int | None  # the training samples' height


def trained_settings(metadata: dict[str, Any]) -> TrainedWith | None:
    """The settings a parent was trained with, or None when it records none.

    Settings that this version no longer has (a checkpoint may be older) are passed over.
    """
    offline = metadata.get("train_config")
    if not isinstance(offline, dict):
        return None
    source = "the parent checkpoint's train_config"
    height = offline.get("height")
    return TrainedWith(known_settings(AugmentConfig, offline.get("augment") or {}, f"{source}: augment"),
                       known_settings(DeformConfig, offline.get("deform") or {}, f"{source}: deform"),
                       height if isinstance(height, int) and not isinstance(height, bool) and height >= 16 else None)


def known_settings(kind: type, values: dict[str, Any], source: str) -> Any:
    """``kind`` from the keys of ``values`` that are its fields."""
    names = {item.name for item in dataclasses.fields(kind)}
    return from_dict(kind, {key: value for key, value in values.items() if key in names}, source)


def for_parent(config: SegmentConfig, metadata: dict[str, Any]) -> SegmentConfig:
    """``config`` with its unset (None) augmentation, deformation, dilation and size settings taken from the parent's
    training.

    The network runs at the height it was trained at (frames are resized; masks come back at frame size). Previous masks are dilated twice as far as the parent's training deformations dilated (``DILATION_FACTOR``); a
    parent trained without dilated masks (``dilate_prob`` 0) propagates undilated masks.
    """
    trained = trained_settings(metadata)
    if trained is None:
        default = DILATION_FACTOR * DeformConfig().dilate_radius
        dilation = default if config.propagate.dilate_previous is None else config.propagate.dilate_previous
        return replace(config, propagate=replace(config.propagate, dilate_previous=dilation))
    deform = config.finetune.deform or trained.deform
    finetune = replace(config.finetune, augment=config.finetune.augment or trained.augment, deform=deform,
                       size=config.finetune.size or trained.height)
    dilation = config.propagate.dilate_previous
    if dilation is None:
        dilation = DILATION_FACTOR * trained.deform.dilate_radius if trained.deform.dilate_prob > 0 else 0.0
    propagate = replace(config.propagate, dilate_previous=dilation, size=config.propagate.size or trained.height)
    return replace(config, finetune=finetune, propagate=propagate)
